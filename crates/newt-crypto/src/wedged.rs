//! The devices whose Olm session broke (REC-01), listed apart so each
//! round of requests finds them without scanning every device.

use crate::store::{StoreError, StoreTxn};
use ruma::{OwnedDeviceId, OwnedUserId};

const KEY: &str = "wedged_devices";

type Device = (OwnedUserId, OwnedDeviceId);

/// The listed devices.
pub(crate) fn list(txn: &mut impl StoreTxn) -> Result<Vec<Device>, StoreError> {
    Ok(txn
        .get_value(KEY)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

fn save(txn: &mut impl StoreTxn, devices: &[Device]) -> Result<(), StoreError> {
    let text = serde_json::to_string(devices).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    txn.set_value(KEY, &text)
}

/// Lists a device.
pub(crate) fn add(txn: &mut impl StoreTxn, device: Device) -> Result<(), StoreError> {
    let mut devices = list(txn)?;
    if !devices.contains(&device) {
        devices.push(device);
        save(txn, &devices)?;
    }
    Ok(())
}

/// Unlists a device.
pub(crate) fn remove(txn: &mut impl StoreTxn, device: &Device) -> Result<(), StoreError> {
    let mut devices = list(txn)?;
    let before = devices.len();
    devices.retain(|d| d != device);
    if devices.len() != before {
        save(txn, &devices)?;
    }
    Ok(())
}

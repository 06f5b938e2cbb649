//! Checking another device's keys: the only way to get a
//! [`VerifiedDeviceKeys`] (TRK-06, TRK-07, TRK-09).

use crate::signing::{SignatureError, verify_json};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value;
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};

/// Why a device's keys were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceKeysError {
    /// A required field is absent or has the wrong type.
    #[error("device keys lack a valid `{0}` field")]
    MissingField(&'static str),
    /// TRK-07: the object names another user or device than the map key
    /// it was listed under.
    #[error("device keys are listed under {expected} but name {found}")]
    IdMismatch {
        /// Where the response listed the object.
        expected: String,
        /// What the object itself says.
        found: String,
    },
    /// A key is not valid base64 or has the wrong length.
    #[error("device key `{0}` is malformed")]
    MalformedKey(String),
    /// TRK-06: the self-signature does not verify.
    #[error("device self-signature invalid: {0}")]
    BadSignature(#[from] SignatureError),
    /// The object as received does not parse as JSON.
    #[error("device keys are not valid JSON")]
    NotJson,
}

/// Device keys whose self-signature verified over the JSON as received and
/// whose IDs matched where they were listed. Only [`verify_device_keys`]
/// makes one; code that trusts a device's keys takes one of these.
///
/// The Ed25519 key is kept as text and parsed (a point decompression)
/// only where a signature is checked, and the signed JSON is kept as
/// received text: the hot paths that only encrypt never pay for either.
#[derive(Clone, PartialEq)]
pub struct VerifiedDeviceKeys {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    ed25519: String,
    /// The parsed key, when the proof was made just now.
    parsed: Option<Ed25519PublicKey>,
    curve25519: Curve25519PublicKey,
    algorithms: Vec<String>,
    display_name: Option<String>,
    json: String,
}

impl std::fmt::Debug for VerifiedDeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedDeviceKeys")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("ed25519", &self.ed25519)
            .field("curve25519", &self.curve25519.to_base64())
            .finish_non_exhaustive()
    }
}

impl VerifiedDeviceKeys {
    /// The owning user.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }
    /// The device ID.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }
    /// The device's Ed25519 fingerprint key, if it parses (it did when the
    /// proof was made).
    pub fn ed25519(&self) -> Option<Ed25519PublicKey> {
        self.parsed
            .or_else(|| crate::signing::parse_ed25519_key(&self.ed25519))
    }

    /// The parsed key if it was parsed when the proof was made.
    pub(crate) fn parsed_ed25519(&self) -> Option<Ed25519PublicKey> {
        self.parsed
    }

    /// The device's Ed25519 key as unpadded base64.
    pub fn ed25519_base64(&self) -> &str {
        &self.ed25519
    }
    /// The device's Curve25519 identity key.
    pub fn curve25519(&self) -> Curve25519PublicKey {
        self.curve25519
    }
    /// Advertised algorithms.
    pub fn algorithms(&self) -> &[String] {
        &self.algorithms
    }
    /// `unsigned.device_display_name`: not covered by the signature, so for
    /// display only (TRK-09).
    pub fn untrusted_display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }
    /// The signed object as received.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

fn str_field<'a>(json: &'a Value, field: &'static str) -> Result<&'a str, DeviceKeysError> {
    json.get(field)
        .and_then(Value::as_str)
        .ok_or(DeviceKeysError::MissingField(field))
}

/// Checks `json`, listed under `user_id`/`device_id` in a response, and
/// returns the proof that it can be trusted to belong to that device.
pub fn verify_device_keys(
    user_id: &UserId,
    device_id: &DeviceId,
    json: &Value,
) -> Result<VerifiedDeviceKeys, DeviceKeysError> {
    verify(user_id, device_id, json, || json.to_string())
}

/// [`verify_device_keys`] for an object received as `text` (one device of
/// a `/keys/query` response): parsed here, on the core that checks it,
/// and kept exactly as received.
pub(crate) fn verify_received_device_keys(
    user_id: &UserId,
    device_id: &DeviceId,
    text: &str,
) -> Result<VerifiedDeviceKeys, DeviceKeysError> {
    let json: Value = serde_json::from_str(text).map_err(|_| DeviceKeysError::NotJson)?;
    verify(user_id, device_id, &json, || text.to_owned())
}

/// The checks; `text` gives the JSON to keep once they pass.
fn verify(
    user_id: &UserId,
    device_id: &DeviceId,
    json: &Value,
    text: impl FnOnce() -> String,
) -> Result<VerifiedDeviceKeys, DeviceKeysError> {
    let found_user = str_field(json, "user_id")?;
    let found_device = str_field(json, "device_id")?;
    // TRK-07: stops a server swapping one device's keys for another's.
    if found_user != user_id.as_str() || found_device != device_id.as_str() {
        return Err(DeviceKeysError::IdMismatch {
            expected: format!("{user_id}/{device_id}"),
            found: format!("{found_user}/{found_device}"),
        });
    }
    let keys = json
        .get("keys")
        .ok_or(DeviceKeysError::MissingField("keys"))?;
    let ed_id = format!("ed25519:{device_id}");
    let curve_id = format!("curve25519:{device_id}");
    let ed25519 = keys
        .get(&ed_id)
        .and_then(Value::as_str)
        .ok_or(DeviceKeysError::MissingField("keys.ed25519"))?;
    let ed25519 = crate::signing::parse_ed25519_key(ed25519)
        .ok_or_else(|| DeviceKeysError::MalformedKey(ed_id.clone()))?;
    let curve25519 = keys
        .get(&curve_id)
        .and_then(Value::as_str)
        .ok_or(DeviceKeysError::MissingField("keys.curve25519"))?;
    let curve25519 = Curve25519PublicKey::from_base64(curve25519)
        .map_err(|_| DeviceKeysError::MalformedKey(curve_id))?;
    // TRK-06: signed by the key the object itself carries.
    verify_json(json, user_id.as_str(), &ed_id, &ed25519)?;
    let algorithms = json
        .get("algorithms")
        .and_then(Value::as_array)
        .ok_or(DeviceKeysError::MissingField("algorithms"))?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let display_name = json
        .pointer("/unsigned/device_display_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(VerifiedDeviceKeys {
        user_id: user_id.to_owned(),
        device_id: device_id.to_owned(),
        ed25519: ed25519.to_base64(),
        parsed: Some(ed25519),
        curve25519,
        algorithms,
        display_name,
        json: text(),
    })
}

impl VerifiedDeviceKeys {
    /// Rebuilds the proof from a stored record. The store holds only
    /// devices that passed [`verify_device_keys`], and it lies inside the
    /// trust boundary, so the signature is not checked again.
    pub(crate) fn from_record(
        record: &crate::store::DeviceRecord,
    ) -> Result<Self, crate::store::StoreError> {
        let corrupt = |what: &str| {
            crate::store::StoreError::Corrupt(format!("device {}: {what}", record.device_id))
        };
        let curve25519 = Curve25519PublicKey::from_base64(&record.curve25519)
            .map_err(|_| corrupt("curve25519"))?;
        Ok(Self {
            user_id: record.user_id.clone(),
            device_id: record.device_id.clone(),
            ed25519: record.ed25519.clone(),
            parsed: None,
            curve25519,
            algorithms: record.algorithms.clone(),
            display_name: record.display_name.clone(),
            json: record.keys_json.clone(),
        })
    }

    /// The record to store for these keys, with fresh local state.
    pub(crate) fn to_record(&self) -> crate::store::DeviceRecord {
        crate::store::DeviceRecord {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            keys_json: self.json.clone(),
            ed25519: self.ed25519.clone(),
            curve25519: self.curve25519.to_base64(),
            algorithms: self.algorithms.clone(),
            display_name: self.display_name.clone(),
            local: crate::store::DeviceLocal::default(),
        }
    }
}

//! The facade: routes each input to the part that owns it.
//!
//! Call order: [`OlmMachine::open`] once; then, each in its own store
//! transaction, [`OlmMachine::receive_sync_changes`] for every sync,
//! [`OlmMachine::outgoing_requests`] to learn what to send, and
//! [`OlmMachine::mark_request_as_sent`] with each 2xx response body.

use crate::account::{OwnAccount, ServerKeyCounts};
use crate::requests::OutgoingRequest;
use crate::store::{AccountRecord, AccountState, StoreError, StoreTxn};
use crate::time::Timestamp;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value;
use std::collections::BTreeMap;
use vodozemac::olm::{Account, IdentityKeys};

/// Why the machine could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds another device's account (DEV-07: keys are never
    /// shared between users or devices).
    #[error("store belongs to {stored_user}/{stored_device}, not {user}/{device}")]
    WrongAccount {
        /// Owner found in the store.
        stored_user: String,
        /// Device found in the store.
        stored_device: String,
        /// Owner asked for.
        user: String,
        /// Device asked for.
        device: String,
    },
}

/// Why a response could not be applied. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No pending request has this ID (already handled, or never made).
    #[error("no pending request with id {0}")]
    UnknownRequest(String),
    /// The body is not the JSON the endpoint returns.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The store has no account; [`OlmMachine::open`] was not called on it.
    #[error("the store holds no account")]
    NoAccount,
}

/// Why sync changes could not be applied. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no account.
    #[error("the store holds no account")]
    NoAccount,
}

/// The E2EE parts of one `/sync` response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncChanges {
    /// `device_one_time_keys_count`, if present.
    pub one_time_key_counts: Option<BTreeMap<String, u64>>,
    /// `device_unused_fallback_key_types`, if present.
    pub unused_fallback_key_types: Option<Vec<String>>,
}

impl SyncChanges {
    /// Reads the E2EE fields from a `/sync` response body.
    pub fn from_sync_json(sync: &Value) -> Self {
        let one_time_key_counts = sync
            .get("device_one_time_keys_count")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let unused_fallback_key_types = sync
            .get("device_unused_fallback_key_types")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        Self {
            one_time_key_counts,
            unused_fallback_key_types,
        }
    }
}

/// The sans-I/O E2EE state machine for one device.
#[derive(Debug)]
pub struct OlmMachine {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    ed25519: String,
    curve25519: String,
}

impl OlmMachine {
    /// Loads the device's account, or creates and persists a new one
    /// together with its first upload (DEV-08: persisted before sent).
    pub fn open(
        txn: &mut impl StoreTxn,
        user_id: &UserId,
        device_id: &DeviceId,
        now: Timestamp,
    ) -> Result<Self, OpenError> {
        let account = match txn.load_account()? {
            Some(record) => {
                let account = OwnAccount::from_record(record);
                if account.state.user_id != user_id || account.state.device_id != device_id {
                    return Err(OpenError::WrongAccount {
                        stored_user: account.state.user_id.to_string(),
                        stored_device: account.state.device_id.to_string(),
                        user: user_id.to_string(),
                        device: device_id.to_string(),
                    });
                }
                account
            }
            None => {
                let mut account = OwnAccount {
                    inner: Account::new(),
                    state: AccountState {
                        user_id: user_id.to_owned(),
                        device_id: device_id.to_owned(),
                        device_keys_published: false,
                        fallback_created_at_ms: None,
                        forget_previous_fallback_at_ms: None,
                        server_otk_count: None,
                        pending_upload: None,
                    },
                };
                account.plan_upload(&ServerKeyCounts::default(), now);
                txn.save_account(&account.to_record())?;
                account
            }
        };
        let keys: IdentityKeys = account.identity_keys();
        Ok(Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            ed25519: keys.ed25519.to_base64(),
            curve25519: keys.curve25519.to_base64(),
        })
    }

    /// Our user ID.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// Our device ID.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// Our Ed25519 fingerprint key, unpadded base64.
    pub fn ed25519_key(&self) -> &str {
        &self.ed25519
    }

    /// Our Curve25519 identity key, unpadded base64.
    pub fn curve25519_key(&self) -> &str {
        &self.curve25519
    }

    fn load(txn: &mut impl StoreTxn) -> Result<Option<OwnAccount>, StoreError> {
        Ok(txn.load_account()?.map(OwnAccount::from_record))
    }

    /// Our signed device keys, as uploaded.
    pub fn device_keys(&self, txn: &mut impl StoreTxn) -> Result<Option<Value>, StoreError> {
        Ok(Self::load(txn)?.map(|a| a.device_keys()))
    }

    /// Applies one sync's E2EE changes: key counts, used fallback keys.
    pub fn receive_sync_changes(
        &self,
        txn: &mut impl StoreTxn,
        changes: &SyncChanges,
        now: Timestamp,
    ) -> Result<(), SyncError> {
        let mut account = Self::load(txn)?.ok_or(SyncError::NoAccount)?;
        let counts = ServerKeyCounts::from_sync(
            changes.one_time_key_counts.as_ref(),
            changes.unused_fallback_key_types.clone(),
        );
        if account.plan_upload(&counts, now) {
            txn.save_account(&account.to_record())?;
        }
        Ok(())
    }

    /// What to send now. A request stays here until its response is
    /// reported, so after a crash it is handed out again, unchanged.
    pub fn outgoing_requests(
        &self,
        txn: &mut impl StoreTxn,
    ) -> Result<Vec<OutgoingRequest>, StoreError> {
        let mut requests = Vec::new();
        if let Some(record) = txn.load_account()?
            && let Some(upload) = record.state.pending_upload
        {
            requests.push(OutgoingRequest::KeysUpload {
                request_id: upload.request_id,
                body: upload.body,
            });
        }
        Ok(requests)
    }

    /// Applies the 2xx response body of the request `request_id`.
    pub fn mark_request_as_sent(
        &self,
        txn: &mut impl StoreTxn,
        request_id: &str,
        body: &str,
        _now: Timestamp,
    ) -> Result<(), ResponseError> {
        let mut account = Self::load(txn)?.ok_or(ResponseError::NoAccount)?;
        match &account.state.pending_upload {
            Some(upload) if upload.request_id == request_id => {
                let response: KeysUploadResponse = serde_json::from_str(body)
                    .map_err(|e| ResponseError::Malformed(e.to_string()))?;
                account.upload_succeeded(&response.one_time_key_counts);
                let record: AccountRecord = account.to_record();
                txn.save_account(&record)?;
                Ok(())
            }
            _ => Err(ResponseError::UnknownRequest(request_id.to_owned())),
        }
    }
}

#[derive(serde::Deserialize)]
struct KeysUploadResponse {
    #[serde(default)]
    one_time_key_counts: BTreeMap<String, u64>,
}

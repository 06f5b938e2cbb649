//! What the store keeps, as plain records the machine builds and reads.

use ruma::{OwnedDeviceId, OwnedUserId};
use serde::{Deserialize, Serialize};
use vodozemac::olm::{Account, AccountPickle};

/// The device's account: secret key material plus public bookkeeping.
pub struct AccountRecord {
    /// The vodozemac account. Secret: stores encrypt it at rest.
    pub pickle: AccountPickle,
    /// Non-secret state kept beside the keys.
    pub state: AccountState,
}

impl AccountRecord {
    /// Builds a record from a live account.
    pub fn new(account: &Account, state: AccountState) -> Self {
        Self {
            pickle: account.pickle(),
            state,
        }
    }
}

impl std::fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { pickle: _, state } = self;
        f.debug_struct("AccountRecord")
            .field("state", state)
            .finish_non_exhaustive()
    }
}

/// Non-secret account state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// Owner of the device (DEV-05, DEV-07).
    pub user_id: OwnedUserId,
    /// The device ID from login (DEV-05).
    pub device_id: OwnedDeviceId,
    /// The signed device keys reached the server (2xx seen).
    pub device_keys_published: bool,
    /// When the current fallback key was made, in ms since the epoch.
    pub fallback_created_at_ms: Option<u64>,
    /// When the previous fallback key may be forgotten (OTK-06).
    pub forget_previous_fallback_at_ms: Option<u64>,
    /// The one-time-key count the server last reported.
    pub server_otk_count: Option<u64>,
    /// The upload in flight, persisted with the keys it carries (DEV-08).
    pub pending_upload: Option<PendingUpload>,
}

/// A `/keys/upload` request that was built and persisted but has not had a
/// 2xx response yet. After a crash it is sent again byte for byte (DEV-08).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpload {
    /// The request ID the driver reports the response under.
    pub request_id: String,
    /// The exact JSON body.
    pub body: String,
}

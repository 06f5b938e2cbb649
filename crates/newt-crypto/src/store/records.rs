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
    /// When the account (this device) was made, in ms.
    #[serde(default)]
    pub created_at_ms: Option<u64>,
}

impl AccountState {
    /// The state of a brand-new account.
    pub fn new(user_id: &ruma::UserId, device_id: &ruma::DeviceId) -> Self {
        Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            device_keys_published: false,
            fallback_created_at_ms: None,
            forget_previous_fallback_at_ms: None,
            server_otk_count: None,
            pending_upload: None,
            created_at_ms: None,
        }
    }
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

/// A user whose devices we follow (TRK-01).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedUser {
    /// The user.
    pub user_id: OwnedUserId,
    /// Whether we still follow the user (TRK-05 stops it).
    pub tracked: bool,
    /// The device list needs a fresh `/keys/query`.
    pub outdated: bool,
    /// Bumped each time the user is marked outdated. A query response
    /// clears `outdated` only if it did not move meanwhile (TRK-04).
    pub generation: u64,
    /// The query in flight for this user: one at a time (TRK-04).
    pub query_in_flight: Option<String>,
    /// Consecutive failures of the user's server (TRK-11).
    pub failures: u32,
    /// No new query before this time, in ms (TRK-11 backoff).
    pub retry_at_ms: Option<u64>,
}

impl TrackedUser {
    /// A newly tracked user, outdated until queried.
    pub fn new(user_id: OwnedUserId) -> Self {
        Self {
            user_id,
            tracked: true,
            outdated: true,
            generation: 1,
            query_in_flight: None,
            failures: 0,
            retry_at_ms: None,
        }
    }
}

/// A device as `/keys/query` listed it, after its checks passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Owner.
    pub user_id: OwnedUserId,
    /// Device ID.
    pub device_id: OwnedDeviceId,
    /// The signed object exactly as received (SIG-07).
    pub keys_json: String,
    /// Ed25519 key (unpadded base64).
    pub ed25519: String,
    /// Curve25519 key (unpadded base64).
    pub curve25519: String,
    /// Advertised algorithms.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// `unsigned.device_display_name` (untrusted, TRK-09).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Local bookkeeping, kept when the server lists the device again.
    pub local: DeviceLocal,
}

/// What we know about a device beyond its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLocal {
    /// TRK-08: the server later listed other keys under this device ID;
    /// they were refused and the device is suspicious.
    pub key_change_refused: bool,
    /// The user blocked the device: nothing is shared with it.
    pub blocked: bool,
    /// CLM-02: consecutive claim failures.
    pub claim_failures: u32,
    /// CLM-02: no new claim before this time, in ms.
    pub claim_retry_at_ms: Option<u64>,
    /// REC-01: our session with it is broken; make a new one.
    pub wants_new_session: bool,
    /// REC-03: when we last made a replacement session, in ms.
    pub new_session_at_ms: Option<u64>,
    /// The user verified this device out of band.
    #[serde(default)]
    pub verified: bool,
    /// WHD-03: an `m.no_olm` notice went out since the last session.
    #[serde(default)]
    pub no_olm_sent: bool,
}

/// An Olm session with one peer device's Curve25519 key.
pub struct OlmSessionRecord {
    /// The peer's Curve25519 identity key (unpadded base64).
    pub sender_key: String,
    /// vodozemac's session ID.
    pub session_id: String,
    /// The ratchet, encoded where the session was used (about 350 bytes
    /// for a new session, where the pickle itself is 3.7 KiB). Secret:
    /// stores encrypt it.
    pub pickle: super::codec::Encoded<vodozemac::olm::SessionPickle>,
    /// When the session was made, in ms.
    pub created_at_ms: u64,
    /// When it last decrypted a message, in ms (CLM-05).
    pub last_received_at_ms: Option<u64>,
    /// Replaced after it broke (REC-01): kept for decrypting, never used
    /// to encrypt.
    pub retired: bool,
}

impl std::fmt::Debug for OlmSessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OlmSessionRecord")
            .field("sender_key", &self.sender_key)
            .field("session_id", &self.session_id)
            .field("created_at_ms", &self.created_at_ms)
            .field("last_received_at_ms", &self.last_received_at_ms)
            .finish_non_exhaustive()
    }
}

/// Public metadata of an Olm session, stored beside the pickle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OlmSessionTimes {
    /// When the session was made, in ms.
    pub created_at_ms: u64,
    /// When it last decrypted a message, in ms.
    pub last_received_at_ms: Option<u64>,
    /// Replaced after it broke; never used to encrypt.
    #[serde(default)]
    pub retired: bool,
}

/// A request handed out and not yet answered. Persisted so it is sent
/// again, unchanged, after a crash (TD-02).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// ID the response is reported under.
    pub request_id: String,
    /// What it is for.
    pub kind: PendingKind,
    /// The exact JSON body. Shared: a `/sendToDevice` body can be
    /// megabytes, and the machine keeps it to hand out.
    pub body: std::sync::Arc<String>,
    /// Order of creation; requests go out in this order.
    pub seq: u64,
}

/// What a pending request is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PendingKind {
    /// `/keys/query` for these users at these generations (TRK-04).
    KeysQuery {
        /// User → generation when the request was made.
        users: std::collections::BTreeMap<OwnedUserId, u64>,
    },
    /// `/keys/claim` for these devices.
    KeysClaim {
        /// The devices.
        devices: Vec<(OwnedUserId, OwnedDeviceId)>,
    },
    /// `/sendToDevice/{event_type}/{txn_id}`.
    ToDevice {
        /// The event type in the path.
        event_type: String,
        /// The transaction ID, the same on every retry (TD-02).
        txn_id: String,
        /// The room whose key it carries, if any (ENC-04). Rows from
        /// before [`PendingKind::RoomKey`] carry room keys this way.
        #[serde(default)]
        room_id: Option<String>,
    },
    /// `/sendToDevice/m.room.encrypted/{txn_id}` carrying a room's key
    /// (ENC-04). Its body (megabytes for a large room) is not stored:
    /// only the machine that made it holds it, and any other rebuilds it
    /// for the same devices under the same transaction ID (the session
    /// cannot advance while its key is pending, so the key is the same).
    RoomKey {
        /// The transaction ID, the same on every retry (TD-02).
        txn_id: String,
        /// The room.
        room_id: String,
        /// The outbound Megolm session whose key it carries.
        session_id: String,
        /// The devices the body has a message for.
        devices: Vec<(OwnedUserId, OwnedDeviceId)>,
    },
}

/// A decrypted to-device event waiting for its sender's device keys
/// (OLM-11). The plaintext is secret (it may hold room keys): stores
/// encrypt it.
#[derive(Clone)]
pub struct QueuedToDevice {
    /// Random ID.
    pub id: String,
    /// Arrival order.
    pub seq: u64,
    /// The event's sender.
    pub sender: OwnedUserId,
    /// The Curve25519 key the Olm session was made with.
    pub sender_key: String,
    /// The decrypted payload.
    pub plaintext: zeroize::Zeroizing<String>,
    /// When it arrived, in ms.
    pub received_at_ms: u64,
}

impl std::fmt::Debug for QueuedToDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedToDevice")
            .field("id", &self.id)
            .field("sender", &self.sender)
            .field("sender_key", &self.sender_key)
            .finish_non_exhaustive()
    }
}

//! Records for encrypted rooms: room state the machine needs, Megolm
//! sessions both ways, replay indices, undecryptable events, withheld
//! notices.

use ruma::{OwnedDeviceId, OwnedUserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member's state in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// Joined.
    Join,
    /// Invited.
    Invite,
    /// Left or kicked.
    Leave,
    /// Banned.
    Ban,
    /// Asked to join.
    Knock,
}

impl Membership {
    /// Parses a `membership` value; unknown values count as left.
    pub fn parse(value: &str) -> Self {
        match value {
            "join" => Self::Join,
            "invite" => Self::Invite,
            "ban" => Self::Ban,
            "knock" => Self::Knock,
            _ => Self::Leave,
        }
    }
}

/// `m.room.encryption` settings (ENC-01).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionSettings {
    /// Always `m.megolm.v1.aes-sha2` once accepted.
    pub algorithm: String,
    /// Rotate after this long (default one week).
    pub rotation_period_ms: u64,
    /// Rotate after this many messages (default 100).
    pub rotation_period_msgs: u64,
}

/// What the machine knows about a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The room.
    pub room_id: String,
    /// Encryption, once on: never turned off (ENC-02).
    pub encryption: Option<EncryptionSettings>,
    /// `m.room.history_visibility` (default `shared`).
    pub history_visibility: String,
    /// Members and their membership.
    pub members: BTreeMap<OwnedUserId, Membership>,
}

impl RoomRecord {
    /// A room with no known state.
    pub fn new(room_id: &str) -> Self {
        Self {
            room_id: room_id.to_owned(),
            encryption: None,
            history_visibility: "shared".to_owned(),
            members: BTreeMap::new(),
        }
    }
}

/// Who got an outbound session, and from which index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAt {
    /// The message index the device can read from.
    pub index: u32,
}

/// Devices that got an outbound session's key: user → device → index.
pub type SharedWith = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, SharedAt>>;
/// Devices told an outbound session's key is withheld: user → device → code.
pub type WithheldFrom = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>;

/// Public state of an outbound Megolm session (ENC-08: persisted so a
/// restart does not rotate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundState {
    /// When it was made, in ms.
    pub created_at_ms: u64,
    /// Messages encrypted with it.
    pub message_count: u64,
    /// History visibility was `shared`/`world_readable` at creation (HIS-01).
    pub shared_history: bool,
    /// A member or device that may have it left: rotate at next send.
    pub invalidated: bool,
    /// Devices that got the key: user → device → index.
    #[serde(default)]
    pub shared_with: SharedWith,
    /// Devices told the key is withheld: user → device → code.
    #[serde(default)]
    pub withheld: WithheldFrom,
    /// Key-share requests not answered yet; no room event is encrypted
    /// until they are (ENC-04).
    #[serde(default)]
    pub pending_requests: Vec<String>,
}

impl OutboundState {
    /// The state without its shared-with and withheld sets (the part an
    /// [`OutboundHead`] holds), copying nothing else large.
    pub fn without_sets(&self) -> Self {
        Self {
            created_at_ms: self.created_at_ms,
            message_count: self.message_count,
            shared_history: self.shared_history,
            invalidated: self.invalidated,
            shared_with: BTreeMap::new(),
            withheld: BTreeMap::new(),
            pending_requests: self.pending_requests.clone(),
        }
    }
}

/// An outbound Megolm session.
pub struct OutboundRecord {
    /// The room.
    pub room_id: String,
    /// The session ID.
    pub session_id: String,
    /// The ratchet. Secret: stores encrypt it.
    pub pickle: vodozemac::megolm::GroupSessionPickle,
    /// Public state.
    pub state: OutboundState,
}

/// What encrypting a room event reads and changes of an outbound session:
/// the record without its shared-with and withheld sets, which stores keep
/// apart (in a room of 1,000 devices they are most of the record, and
/// every room event would read and write them again).
pub struct OutboundHead {
    /// The room.
    pub room_id: String,
    /// The session ID.
    pub session_id: String,
    /// The ratchet. Secret: stores encrypt it.
    pub pickle: vodozemac::megolm::GroupSessionPickle,
    /// The state; its `shared_with` and `withheld` are empty when loaded
    /// and not saved ([`super::StoreTxn::load_outbound`] has them).
    pub state: OutboundState,
}

impl std::fmt::Debug for OutboundHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundHead")
            .field("room_id", &self.room_id)
            .field("session_id", &self.session_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OutboundRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundRecord")
            .field("room_id", &self.room_id)
            .field("session_id", &self.session_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// How an inbound session reached us (MEG-04, MEG-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// Our own outbound session (ENC-05).
    Own,
    /// An `m.room_key` over Olm from the session's creator.
    RoomKey,
    /// An `m.forwarded_room_key`.
    Forwarded,
    /// A key export file or backup.
    Imported,
}

impl KeySource {
    /// Whether the sender binding is authenticated (own or direct).
    pub fn authenticated(self) -> bool {
        matches!(self, Self::Own | Self::RoomKey)
    }
}

/// Public facts stored with an inbound Megolm session (MEG-04).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundInfo {
    /// Curve25519 key of the Olm session that delivered it.
    pub sender_key: String,
    /// The sender's claimed Ed25519 key (`keys.ed25519`).
    pub claimed_ed25519: String,
    /// The owning user, as bound by OLM-10 (unknown for some imports).
    pub sender_user: Option<OwnedUserId>,
    /// The owning device, when known.
    pub sender_device: Option<OwnedDeviceId>,
    /// The first index we can decrypt.
    pub first_known_index: u32,
    /// How it arrived.
    pub source: KeySource,
    /// `shared_history` of the key (HIS-01).
    pub shared_history: bool,
}

/// An inbound Megolm session, stored by `(room_id, session_id)` (MEG-05).
pub struct InboundRecord {
    /// The room.
    pub room_id: String,
    /// The session ID.
    pub session_id: String,
    /// The ratchet. Secret: stores encrypt it.
    pub pickle: vodozemac::megolm::InboundGroupSessionPickle,
    /// Public facts.
    pub info: InboundInfo,
}

impl std::fmt::Debug for InboundRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundRecord")
            .field("room_id", &self.room_id)
            .field("session_id", &self.session_id)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The event that used a message index (MEG-08).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexUse {
    /// Event ID.
    pub event_id: String,
    /// `origin_server_ts`.
    pub origin_server_ts: u64,
}

/// An event we could not decrypt yet (REC-05).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndecryptedEvent {
    /// The room.
    pub room_id: String,
    /// The session it needs.
    pub session_id: String,
    /// Event ID.
    pub event_id: String,
    /// The event as received.
    pub event_json: String,
    /// When we first saw it, in ms.
    pub received_at_ms: u64,
}

/// An `m.room_key.withheld` we received (WHD-05).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldRecord {
    /// The room, or empty for `m.no_olm`.
    pub room_id: String,
    /// The session, or the sender's Curve25519 key for `m.no_olm`.
    pub session_id: String,
    /// The code (WHD-02).
    pub code: String,
    /// Free text.
    pub reason: Option<String>,
    /// Who sent the notice.
    pub sender: OwnedUserId,
    /// The Curve25519 key named in it.
    pub sender_key: String,
}

//! Encrypted rooms: the room state encryption needs, outbound Megolm
//! sessions and their sharing (ENC-*, WHD-*, HIS-01/02), receiving room
//! keys (MEG-01..07) and decrypting room events (MEG-08..11, REC-05).

pub(crate) mod batch;
pub(crate) mod by_session;
pub(crate) mod cache;
pub(crate) mod decide;
pub(crate) mod decrypt;
pub(crate) mod event;
pub(crate) mod explain;
pub(crate) mod export;
pub(crate) mod outbound;
pub(crate) mod quiet;
pub(crate) mod receive;
pub(crate) mod resend;
pub(crate) mod room;
pub(crate) mod sets_cache;
pub(crate) mod share;

use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;

/// How far a decrypted room event can be trusted (MEG-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrustVerdict {
    /// Sent by a device the user marked verified, or by this device.
    Verified,
    /// Sent by a known device of the sender that is not verified.
    UnverifiedDevice,
    /// The device that made the session is unknown or gone.
    UnknownDevice,
    /// The key came from a forward, an import or a backup: the sender
    /// binding is not authenticated.
    AuthenticityNotGuaranteed,
    /// MEG-10: the event's sender is not the owner of the session.
    MismatchedSender,
}

/// A decrypted room event.
#[derive(Clone, PartialEq)]
pub struct DecryptedRoomEvent {
    /// The room.
    pub room_id: String,
    /// The event ID.
    pub event_id: String,
    /// The event's sender.
    pub sender: OwnedUserId,
    /// The device that made the session, when known.
    pub sender_device: Option<OwnedDeviceId>,
    /// `origin_server_ts`.
    pub origin_server_ts: u64,
    /// The inner event type.
    pub event_type: String,
    /// The inner content, with the cleartext `m.relates_to` (ENC-14).
    pub content: Value,
    /// The Megolm session.
    pub session_id: String,
    /// The message index.
    pub message_index: u32,
    /// How far to trust it.
    pub trust: TrustVerdict,
}

impl std::fmt::Debug for DecryptedRoomEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptedRoomEvent")
            .field("room_id", &self.room_id)
            .field("event_id", &self.event_id)
            .field("sender", &self.sender)
            .field("event_type", &self.event_type)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// Why a room event is not (yet) readable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RoomDecryptError {
    /// The event is not the JSON an encrypted event is.
    #[error("malformed encrypted event: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// OLM-13: a redacted event has nothing to decrypt.
    #[error("the event was redacted")]
    Redacted,
    /// Not Megolm.
    #[error("unsupported algorithm {algorithm}")]
    UnsupportedAlgorithm {
        /// The algorithm named.
        algorithm: String,
    },
    /// REC-05: no key for the session yet; kept and retried when it comes.
    #[error("the room key for session {session_id} has not arrived")]
    MissingSession {
        /// The session.
        session_id: String,
    },
    /// WHD-05: the sender told us they withheld the key.
    #[error("the sender withheld the key ({code})")]
    Withheld {
        /// The session.
        session_id: String,
        /// The withheld code.
        code: String,
        /// Free text, if any.
        reason: Option<String>,
    },
    /// We hold the session only from a later index.
    #[error("the key is known from index {first_known} but the message is at {index}")]
    UnknownIndex {
        /// The session.
        session_id: String,
        /// First index we hold.
        first_known: u32,
        /// The message's index.
        index: u32,
    },
    /// MEG-08: another event already used this message index.
    #[error("replayed message index {index} (first used by {first_event_id})")]
    Replay {
        /// The index.
        index: u32,
        /// The event that used it first.
        first_event_id: String,
    },
    /// MEG-09: the payload names another room.
    #[error("the payload belongs to room {payload_room}")]
    WrongRoom {
        /// The room in the payload.
        payload_room: String,
    },
    /// The ciphertext does not decrypt (bad MAC or signature).
    #[error("decryption failed: {detail}")]
    Failed {
        /// What failed.
        detail: String,
    },
}

impl RoomDecryptError {
    /// Whether the event may become readable when a key arrives.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::MissingSession { .. } | Self::Withheld { .. } | Self::UnknownIndex { .. }
        )
    }
}

/// The fate of one encrypted room event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RoomEventOutcome {
    /// The room.
    pub room_id: String,
    /// The event ID.
    pub event_id: String,
    /// The decrypted event or why not.
    pub result: Result<DecryptedRoomEvent, RoomDecryptError>,
    /// An earlier undecryptable event that a new key just opened.
    pub late: bool,
}

impl RoomEventOutcome {
    /// An outcome for an event decrypted outside a sync.
    pub fn new(
        room_id: &str,
        event_id: &str,
        result: Result<DecryptedRoomEvent, RoomDecryptError>,
        late: bool,
    ) -> Self {
        Self {
            room_id: room_id.to_owned(),
            event_id: event_id.to_owned(),
            result,
            late,
        }
    }
}

/// Why a room command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The room is not encrypted (or unknown): nothing to share.
    #[error("room {0} is not encrypted")]
    NotEncrypted(String),
    /// ENC-02: plaintext into an encrypted room is refused.
    #[error("room {0} is encrypted; refusing to send plaintext")]
    PlaintextRefused(String),
    /// ENC-04: the room key must be shared (and its requests answered)
    /// before a room event is encrypted.
    #[error("share the room key of {0} first (ENC-04)")]
    KeyNotShared(String),
}

/// What a key-share run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShareOutcome {
    /// The session in use.
    pub session_id: String,
    /// A new session was made (first send or rotation).
    pub rotated: bool,
    /// Devices that got the key now.
    pub shared_with: Vec<(OwnedUserId, OwnedDeviceId)>,
    /// Devices told the key is withheld now, with the code.
    pub withheld: Vec<(OwnedUserId, OwnedDeviceId, String)>,
}

/// Who gets room keys beyond the defaults (ENC-10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharePolicy {
    /// Share only with devices the user verified; the rest get
    /// `m.room_key.withheld` with `m.unverified`.
    pub only_verified: bool,
}

/// Takes in the room keys and withheld notices among to-device outcomes,
/// and returns the earlier events the new keys opened.
pub(crate) fn absorb_to_device(
    txn: &mut impl crate::store::StoreTxn,
    me: &decrypt::Me<'_>,
    outcomes: &[crate::to_device::ToDeviceOutcome],
) -> Result<Vec<RoomEventOutcome>, crate::store::StoreError> {
    use crate::to_device::ToDeviceOutcome;
    use rayon::prelude::*;
    // Each key's signature check is independent: every core takes some.
    let parsed: Vec<Option<receive::ParsedRoomKey>> = outcomes
        .par_iter()
        .map(|outcome| match outcome {
            ToDeviceOutcome::Decrypted(event) if event.event_type == "m.room_key" => {
                Some(receive::parse_room_key(event))
            }
            _ => None,
        })
        .collect();
    let mut opened = Vec::new();
    for (outcome, parsed) in outcomes.iter().zip(parsed) {
        match (outcome, parsed) {
            (ToDeviceOutcome::Decrypted(event), Some(parsed)) => {
                match receive::room_key(txn, event, parsed)? {
                    Ok(receive::Stored::Updated(room, session)) => {
                        opened.extend(decrypt::retry(txn, me, &room, &session)?);
                    }
                    Ok(receive::Stored::Kept) => {}
                    Err(error) => {
                        tracing::warn!(sender = %event.sender, %error, "room key refused")
                    }
                }
            }
            (ToDeviceOutcome::Decrypted(event), None)
                if event.event_type == "m.room_key.withheld" =>
            {
                receive::withheld(txn, event.sender.as_str(), &event.content)?;
            }
            (
                ToDeviceOutcome::Plain {
                    sender,
                    event_type,
                    content,
                },
                None,
            ) if event_type == "m.room_key.withheld" => {
                receive::withheld(txn, sender, content)?;
            }
            _ => {}
        }
    }
    Ok(opened)
}

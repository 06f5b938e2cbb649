//! Decrypting Olm to-device events (OLM-05..13) and the checks that bind
//! the plaintext to its sender (OLM-09, OLM-10).
//!
//! Nothing is persisted for an event that fails: a session made from its
//! pre-key message and the one-time key it used stay as they were
//! (OLM-07), and the ratchet of an existing session is not advanced.

use super::sessions::{self, LiveSession};
use crate::OLM_ALGORITHM;
use crate::device_keys::verify_device_keys;
use crate::time::Timestamp;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

/// Why a to-device event was discarded. Each names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToDeviceError {
    /// The event is not the JSON the spec describes.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// An `m.room.encrypted` algorithm we do not speak.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// OLM-05: our Curve25519 key is not among the recipients.
    #[error("not encrypted for this device")]
    NotForThisDevice,
    /// OLM-08: a normal message with no session that decrypts it.
    #[error("no Olm session decrypts this message")]
    NoSession,
    /// A message an existing session already consumed.
    #[error("replayed Olm message")]
    Replay,
    /// A pre-key message that could not start a session.
    #[error("could not create an inbound Olm session: {0}")]
    SessionCreation(String),
    /// The plaintext is not a JSON object with `type` and `content`.
    #[error("malformed plaintext: {0}")]
    BadPlaintext(String),
    /// OLM-09.1: plaintext `sender` differs from the event's sender.
    #[error("plaintext sender differs from the event sender")]
    SenderMismatch,
    /// OLM-09.3: plaintext `recipient` is not us.
    #[error("plaintext recipient is not this user")]
    RecipientMismatch,
    /// OLM-09.4: `recipient_keys.ed25519` is not our key.
    #[error("plaintext recipient key is not this device's key")]
    RecipientKeyMismatch,
    /// OLM-09.2: `keys.ed25519` is missing.
    #[error("plaintext lacks keys.ed25519")]
    MissingSenderKey,
    /// OLM-09.5: `sender_device_keys` is inconsistent or unsigned.
    #[error("sender_device_keys invalid: {0}")]
    SenderDeviceKeys(&'static str),
    /// OLM-09.2, OLM-10: the sender's listed device has other keys than the
    /// Olm session and the plaintext claim.
    #[error("sender keys do not match the sender's device")]
    SenderKeyMismatch,
    /// An event type that is only valid encrypted arrived in the clear
    /// (MEG-02).
    #[error("{0} must be Olm-encrypted")]
    MustBeEncrypted(String),
}

/// How sure we are who sent a decrypted to-device event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SenderTrust {
    /// OLM-10: the server lists a device of `sender` with exactly the
    /// session's Curve25519 key and the plaintext's Ed25519 key.
    KnownDevice,
    /// The sender's device list was fetched and has no such device
    /// (OLM-11: accepted, marked unknown).
    UnknownDevice,
}

/// A decrypted to-device event that passed every check.
#[derive(Clone, PartialEq)]
pub struct DecryptedToDevice {
    /// The sender (checked against the plaintext, OLM-09.1).
    pub sender: OwnedUserId,
    /// The sending device, when its keys are known.
    pub sender_device: Option<OwnedDeviceId>,
    /// Curve25519 key of the Olm session.
    pub sender_curve25519: String,
    /// Ed25519 key the plaintext claims (and, if known, the device has).
    pub sender_ed25519: String,
    /// The inner event type.
    pub event_type: String,
    /// The inner content. May hold secrets (room keys).
    pub content: Value,
    /// Sender verdict.
    pub trust: SenderTrust,
}

impl std::fmt::Debug for DecryptedToDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptedToDevice")
            .field("sender", &self.sender)
            .field("sender_device", &self.sender_device)
            .field("event_type", &self.event_type)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// Event types that are only valid inside Olm.
pub(crate) const ENCRYPTED_ONLY: &[&str] = &[
    "m.room_key",
    "m.forwarded_room_key",
    "m.secret.send",
    "m.dummy",
    "m.room_key_bundle",
];

/// Our identity, for the recipient checks.
pub(crate) struct Me<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) ed25519: &'a str,
    pub(crate) curve25519: &'a str,
}

/// A successfully Olm-decrypted payload, before the sender binding.
pub(crate) struct Opened {
    pub(crate) sender: OwnedUserId,
    pub(crate) sender_key: String,
    pub(crate) plaintext: String,
    /// Whether the plaintext was UTF-8 (if not, `plaintext` is empty and
    /// the checks reject it, where a new session can still be undone).
    pub(crate) utf8: bool,
    /// The session to persist (new or advanced).
    pub(crate) session: LiveSession,
    /// Whether a new inbound session was made (the account changed).
    pub(crate) created: bool,
}

/// The parts of the outer event the Olm layer needs.
pub(crate) struct Outer<'a> {
    pub(crate) sender: &'a str,
    pub(crate) content: &'a Value,
}

/// OLM-05..08: decrypts the Olm layer with our sessions, or a new inbound
/// session for a pre-key message. Changes are returned, not stored.
pub(crate) fn open(
    txn: &mut impl crate::store::StoreTxn,
    account: &mut Account,
    me: &Me<'_>,
    outer: &Outer<'_>,
    now: Timestamp,
) -> Result<Result<Opened, ToDeviceError>, crate::store::StoreError> {
    let content = outer.content;
    let algorithm = content
        .get("algorithm")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if algorithm != OLM_ALGORITHM {
        return Ok(Err(ToDeviceError::UnsupportedAlgorithm(
            algorithm.to_owned(),
        )));
    }
    let sender: OwnedUserId = match outer.sender.try_into() {
        Ok(s) => s,
        Err(_) => {
            return Ok(Err(ToDeviceError::Malformed(
                "sender is not a user ID".into(),
            )));
        }
    };
    let Some(sender_key) = content.get("sender_key").and_then(Value::as_str) else {
        return Ok(Err(ToDeviceError::Malformed("no sender_key".into())));
    };
    let Ok(sender_curve) = Curve25519PublicKey::from_base64(sender_key) else {
        return Ok(Err(ToDeviceError::Malformed(
            "sender_key is not a Curve25519 key".into(),
        )));
    };
    let sender_key = sender_curve.to_base64();
    let Some(ours) = content.get("ciphertext").and_then(|c| c.get(me.curve25519)) else {
        return Ok(Err(ToDeviceError::NotForThisDevice));
    };
    let kind = ours.get("type").and_then(Value::as_u64);
    let body = ours.get("body").and_then(Value::as_str).unwrap_or_default();
    let Ok(bytes) = crate::b64::decode(body) else {
        return Ok(Err(ToDeviceError::Malformed(
            "Olm body is not base64".into(),
        )));
    };
    let message = match OlmMessage::from_parts(kind.unwrap_or(u64::MAX) as usize, &bytes) {
        Ok(m) => m,
        Err(e) => return Ok(Err(ToDeviceError::Malformed(format!("Olm message: {e}")))),
    };
    // OLM-06: existing sessions first, for pre-key messages too. A
    // pre-key message names its session: only that one is decoded.
    let known = match &message {
        OlmMessage::PreKey(pre) => txn
            .load_olm_session(&sender_key, &pre.session_id())?
            .map(LiveSession::from_record)
            .transpose()?
            .into_iter()
            .collect(),
        OlmMessage::Normal(_) => sessions::load(txn, &sender_key)?,
    };
    for mut live in known {
        match live.session.decrypt(&message) {
            Ok(plaintext) => {
                live.last_received_at_ms = Some(now.0);
                return Ok(finish(sender, sender_key, plaintext, live, false));
            }
            // The matching session refused it: its key was used already.
            Err(_) if matches!(message, OlmMessage::PreKey(_)) => {
                return Ok(Err(ToDeviceError::Replay));
            }
            Err(_) => {}
        }
    }
    let OlmMessage::PreKey(pre) = &message else {
        return Ok(Err(ToDeviceError::NoSession));
    };
    // OLM-07: vodozemac decrypts while creating; the caller persists the
    // session and the account (one-time key removed) together, or neither.
    match account.create_inbound_session(SessionConfig::version_1(), sender_curve, pre) {
        Ok(created) => {
            let mut live = LiveSession::new(Box::new(created.session), sender_key.clone(), now.0);
            live.last_received_at_ms = Some(now.0);
            Ok(finish(sender, sender_key, created.plaintext, live, true))
        }
        Err(e) => Ok(Err(ToDeviceError::SessionCreation(e.to_string()))),
    }
}

fn finish(
    sender: OwnedUserId,
    sender_key: String,
    plaintext: Vec<u8>,
    session: LiveSession,
    created: bool,
) -> Result<Opened, ToDeviceError> {
    // Never an error here: a pre-key message has already made its session
    // (and used its one-time key), which only the caller can undo (OLM-07).
    let (plaintext, utf8) = match String::from_utf8(plaintext) {
        Ok(text) => (text, true),
        Err(_) => (String::new(), false),
    };
    Ok(Opened {
        sender,
        sender_key,
        plaintext,
        utf8,
        session,
        created,
    })
}

/// The plaintext after the OLM-09 checks that need no device list.
pub(crate) struct Checked {
    pub(crate) event_type: String,
    pub(crate) content: Value,
    pub(crate) claimed_ed25519: String,
}

/// Who an Olm message came from, as far as the Olm layer can tell.
pub(crate) struct Origin<'a> {
    pub(crate) sender: &'a ruma::UserId,
    pub(crate) sender_key: &'a str,
}

impl Opened {
    pub(crate) fn origin(&self) -> Origin<'_> {
        Origin {
            sender: &self.sender,
            sender_key: &self.sender_key,
        }
    }
}

/// OLM-09: every check that needs only the plaintext and our identity.
pub(crate) fn check_plaintext(
    origin: &Origin<'_>,
    plaintext: &str,
    me: &Me<'_>,
) -> Result<Checked, ToDeviceError> {
    let plain: Value =
        serde_json::from_str(plaintext).map_err(|e| ToDeviceError::BadPlaintext(e.to_string()))?;
    let event_type = plain
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ToDeviceError::BadPlaintext("no type".into()))?
        .to_owned();
    let content = plain
        .get("content")
        .filter(|c| c.is_object())
        .cloned()
        .ok_or_else(|| ToDeviceError::BadPlaintext("no content object".into()))?;
    if plain.get("sender").and_then(Value::as_str) != Some(origin.sender.as_str()) {
        return Err(ToDeviceError::SenderMismatch);
    }
    if plain.get("recipient").and_then(Value::as_str) != Some(me.user_id) {
        return Err(ToDeviceError::RecipientMismatch);
    }
    if plain
        .pointer("/recipient_keys/ed25519")
        .and_then(Value::as_str)
        != Some(me.ed25519)
    {
        return Err(ToDeviceError::RecipientKeyMismatch);
    }
    let claimed_ed25519 = plain
        .pointer("/keys/ed25519")
        .and_then(Value::as_str)
        .ok_or(ToDeviceError::MissingSenderKey)?
        .to_owned();
    // MSC4147 names it `sender_device_keys`; accept the unstable name too.
    let device_keys = plain
        .get("sender_device_keys")
        .or_else(|| plain.get("org.matrix.msc4147.device_keys"));
    if let Some(device_keys) = device_keys.filter(|v| !v.is_null()) {
        check_sender_device_keys(device_keys, origin, &claimed_ed25519)?;
    }
    Ok(Checked {
        event_type,
        content,
        claimed_ed25519,
    })
}

/// OLM-09.5.
fn check_sender_device_keys(
    keys: &Value,
    origin: &Origin<'_>,
    claimed_ed25519: &str,
) -> Result<(), ToDeviceError> {
    if keys.get("user_id").and_then(Value::as_str) != Some(origin.sender.as_str()) {
        return Err(ToDeviceError::SenderDeviceKeys("user_id is not the sender"));
    }
    let device_id: OwnedDeviceId = keys
        .get("device_id")
        .and_then(Value::as_str)
        .ok_or(ToDeviceError::SenderDeviceKeys("no device_id"))?
        .into();
    let key = |alg: &str| {
        keys.pointer(&format!("/keys/{alg}:{device_id}"))
            .and_then(Value::as_str)
    };
    if key("curve25519") != Some(origin.sender_key) {
        return Err(ToDeviceError::SenderDeviceKeys(
            "curve25519 is not the session's key",
        ));
    }
    if key("ed25519") != Some(claimed_ed25519) {
        return Err(ToDeviceError::SenderDeviceKeys(
            "ed25519 is not keys.ed25519",
        ));
    }
    verify_device_keys(origin.sender, &device_id, keys)
        .map_err(|_| ToDeviceError::SenderDeviceKeys("self-signature invalid"))?;
    Ok(())
}

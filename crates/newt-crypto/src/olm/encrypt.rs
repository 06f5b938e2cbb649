//! Encrypting to-device payloads (OLM-01..03) and packing them into
//! `/sendToDevice` requests (TD-01, TD-02).

use super::sessions::{self, LiveSession};
use crate::OLM_ALGORITHM;
use crate::device_keys::VerifiedDeviceKeys;
use crate::requests::new_request_id;
use crate::store::{PendingKind, PendingRequest, StoreError, StoreTxn};
use rayon::prelude::*;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use vodozemac::olm::OlmMessage;

/// A request grows until it holds at least this many users and then stops
/// before this many bytes (ENC-12: as few requests as possible, at least
/// 100 users each).
const MIN_USERS_PER_REQUEST: usize = 100;
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The to-device event type of Olm-encrypted messages.
pub const ENCRYPTED_EVENT_TYPE: &str = "m.room.encrypted";

/// What encrypting produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncryptOutcome {
    /// The `/sendToDevice` requests made, to be sent in order.
    pub request_ids: Vec<String>,
    /// Devices that got a message.
    pub sent_to: Vec<(OwnedUserId, OwnedDeviceId)>,
    /// Devices without an Olm session: nothing was encrypted for them.
    pub missing_sessions: Vec<(OwnedUserId, OwnedDeviceId)>,
}

/// Who we are, for the plaintext (OLM-02, OLM-03).
pub(crate) struct Sender<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) device_id: &'a str,
    pub(crate) ed25519: &'a str,
    pub(crate) curve25519: &'a str,
    /// Our signed device keys, sent as `sender_device_keys` (MSC4147).
    pub(crate) device_keys: &'a Value,
}

/// The plaintext for one recipient (OLM-02: sender and recipient identity
/// inside the encryption block unknown-key-share attacks).
fn plaintext(
    sender: &Sender<'_>,
    recipient: &VerifiedDeviceKeys,
    event_type: &str,
    content: &Value,
) -> String {
    json!({
        "type": event_type,
        "content": content,
        "sender": sender.user_id,
        "sender_device": sender.device_id,
        "keys": {"ed25519": sender.ed25519},
        "recipient": recipient.user_id(),
        "recipient_keys": {"ed25519": recipient.ed25519().to_base64()},
        "sender_device_keys": sender.device_keys,
    })
    .to_string()
}

/// Encrypts `content` as `event_type` for every device in `recipients`
/// that has a session, persists the advanced sessions and the requests.
pub(crate) fn encrypt_for_devices(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    event_type: &str,
    content: &Value,
    recipients: &[VerifiedDeviceKeys],
    room_id: Option<&str>,
    next_seq: &mut u64,
) -> Result<EncryptOutcome, StoreError> {
    let mut outcome = EncryptOutcome::default();
    let mut work: Vec<(&VerifiedDeviceKeys, LiveSession)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for device in recipients {
        if !seen.insert((device.user_id().to_owned(), device.device_id().to_owned())) {
            continue;
        }
        match sessions::best(txn, &device.curve25519().to_base64())? {
            Some(session) => work.push((device, session)),
            None => outcome
                .missing_sessions
                .push((device.user_id().to_owned(), device.device_id().to_owned())),
        }
    }
    // The ratchet steps are independent per session: use every core.
    let encrypted: Vec<Option<Value>> = work
        .par_iter_mut()
        .map(|(device, live)| {
            let message = live
                .session
                .encrypt(plaintext(sender, device, event_type, content))
                .ok()?;
            let (kind, body) = match message {
                OlmMessage::PreKey(m) => (0, m.to_base64()),
                OlmMessage::Normal(m) => (1, m.to_base64()),
            };
            Some(json!({
                "algorithm": OLM_ALGORITHM,
                "sender_key": sender.curve25519,
                "ciphertext": {device.curve25519().to_base64(): {"type": kind, "body": body}},
            }))
        })
        .collect();
    let mut messages: BTreeMap<OwnedUserId, Map<String, Value>> = BTreeMap::new();
    for ((device, live), content) in work.iter().zip(encrypted) {
        let id = (device.user_id().to_owned(), device.device_id().to_owned());
        let Some(content) = content else {
            outcome.missing_sessions.push(id);
            continue;
        };
        txn.save_olm_session(&live.to_record())?;
        messages
            .entry(id.0.clone())
            .or_default()
            .insert(id.1.to_string(), content);
        outcome.sent_to.push(id);
    }
    outcome.request_ids = queue_to_device(txn, ENCRYPTED_EVENT_TYPE, messages, room_id, next_seq)?;
    Ok(outcome)
}

/// Persists `/sendToDevice` requests for `messages`, packed (ENC-12).
pub(crate) fn queue_to_device(
    txn: &mut impl StoreTxn,
    event_type: &str,
    messages: BTreeMap<OwnedUserId, Map<String, Value>>,
    room_id: Option<&str>,
    next_seq: &mut u64,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for body in pack(messages) {
        let txn_id = new_request_id();
        let request = PendingRequest {
            request_id: txn_id.clone(),
            kind: PendingKind::ToDevice {
                event_type: event_type.to_owned(),
                txn_id,
                room_id: room_id.map(str::to_owned),
            },
            body,
            seq: *next_seq,
        };
        *next_seq += 1;
        txn.save_pending_request(&request)?;
        ids.push(request.request_id);
    }
    Ok(ids)
}

/// Packs per-user messages into as few request bodies as the size bound
/// allows, each with at least [`MIN_USERS_PER_REQUEST`] users when there
/// are that many.
fn pack(messages: BTreeMap<OwnedUserId, Map<String, Value>>) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut current = Map::new();
    let mut size = 0;
    for (user, devices) in messages {
        let entry = Value::Object(devices);
        let entry_size = entry.to_string().len() + user.as_str().len() + 4;
        if current.len() >= MIN_USERS_PER_REQUEST && size + entry_size > MAX_REQUEST_BYTES {
            bodies.push(json!({"messages": std::mem::take(&mut current)}).to_string());
            size = 0;
        }
        size += entry_size;
        current.insert(user.to_string(), entry);
    }
    if !current.is_empty() {
        bodies.push(json!({"messages": current}).to_string());
    }
    bodies
}

//! Encrypting to-device payloads (OLM-01..03) and packing them into
//! `/sendToDevice` requests (TD-01, TD-02).

use super::cache::OlmCache;
use super::sessions::{self, LiveSession};
use crate::OLM_ALGORITHM;
use crate::device_keys::VerifiedDeviceKeys;
use crate::requests::new_request_id;
use crate::store::{OlmSessionRecord, PendingKind, PendingRequest, StoreError, StoreTxn};
use rayon::prelude::*;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Live sessions from earlier sends.
    pub(crate) cache: &'a OlmCache,
    /// Device lists from earlier inputs.
    pub(crate) devices: &'a crate::device_cache::DeviceCache,
    /// Where queued bodies are kept for handing out.
    pub(crate) bodies: &'a crate::request_bodies::RequestBodies,
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_quoted(&mut out, text);
    out
}

/// Appends `text` as a JSON string literal. IDs and base64 keys need no
/// escaping: they are copied; anything else goes through `serde_json`.
fn push_quoted(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\"")));
    }
}

/// The parts of the plaintext every recipient shares, serialised once.
fn plaintext_prefix(sender: &Sender<'_>, event_type: &str, content: &Value) -> String {
    let object = json!({
        "type": event_type,
        "content": content,
        "sender": sender.user_id,
        "sender_device": sender.device_id,
        "keys": {"ed25519": sender.ed25519},
        "sender_device_keys": sender.device_keys,
    })
    .to_string();
    // Drop the closing brace: the recipient fields follow.
    object[..object.len().saturating_sub(1)].to_owned()
}

/// The plaintext for one recipient (OLM-02: sender and recipient identity
/// inside the encryption block unknown-key-share attacks).
fn plaintext(prefix: &str, recipient: &VerifiedDeviceKeys) -> String {
    let (user, key) = (recipient.user_id().as_str(), recipient.ed25519_base64());
    let mut out = String::with_capacity(prefix.len() + user.len() + key.len() + 48);
    out.push_str(prefix);
    out.push_str(",\"recipient\":");
    push_quoted(&mut out, user);
    out.push_str(",\"recipient_keys\":{\"ed25519\":");
    push_quoted(&mut out, key);
    out.push_str("}}");
    out
}

/// The `m.room.encrypted` content for one device, the message's bytes
/// encoded straight into it. Base64 needs no escaping; `sender_key` comes
/// quoted.
fn encrypted_content(sender_key: &str, key: &str, kind: u8, message: &[u8]) -> String {
    let body = message.len().div_ceil(3) * 4;
    let mut out = String::with_capacity(body + key.len() + sender_key.len() + 96);
    out.push_str("{\"algorithm\":\"");
    out.push_str(OLM_ALGORITHM);
    out.push_str("\",\"sender_key\":");
    out.push_str(sender_key);
    out.push_str(",\"ciphertext\":{");
    push_quoted(&mut out, key);
    out.push_str(":{\"type\":");
    out.push(if kind == 0 { '0' } else { '1' });
    out.push_str(",\"body\":\"");
    crate::b64::encode_into(&mut out, message);
    out.push_str("\"}}}");
    out
}

/// Encrypts `content` as `event_type` for every device in `recipients`
/// that has a session, persists the advanced sessions and the requests.
pub(crate) fn encrypt_for_devices(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    event_type: &str,
    content: &Value,
    recipients: &[&VerifiedDeviceKeys],
    room_id: Option<&str>,
    next_seq: &mut u64,
) -> Result<EncryptOutcome, StoreError> {
    let mut outcome = EncryptOutcome::default();
    let mut devices: Vec<&VerifiedDeviceKeys> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut seen_keys = BTreeSet::new();
    for &device in recipients {
        if !seen.insert((device.user_id(), device.device_id())) {
            continue;
        }
        // One ratchet step per session and batch: two devices claiming one
        // identity key must not both encrypt from the same saved state.
        if !seen_keys.insert(device.curve25519().to_bytes()) {
            outcome
                .missing_sessions
                .push((device.user_id().to_owned(), device.device_id().to_owned()));
            continue;
        }
        devices.push(device);
    }
    let keys: Vec<String> = devices
        .par_iter()
        .map(|d| d.curve25519().to_base64())
        .collect();
    let mut taken = sender.cache.take(txn, &keys)?;
    // Only what the cache lacks comes from the store.
    let missing: Vec<String> = keys
        .iter()
        .zip(&taken.sessions)
        .filter(|(_, cached)| cached.is_none())
        .map(|(key, _)| key.clone())
        .collect();
    let mut stored = txn.load_olm_sessions_of(&missing)?.into_iter();
    let sources: Vec<Source> = std::mem::take(&mut taken.sessions)
        .into_iter()
        .map(|cached| match cached {
            Some(live) => Source::Cached(live),
            None => Source::Stored(stored.next().unwrap_or_default()),
        })
        .collect();
    let prefix = plaintext_prefix(sender, event_type, content);
    let sender_key = quoted(sender.curve25519);
    // Unpickling, the ratchet step and pickling again are independent per
    // session: use every core.
    // Collected by place (rayon's `Result` collect would gather lists of
    // chunks and copy them again); the first error is raised below.
    let encrypted: Vec<Result<Option<Encrypted>, StoreError>> = devices
        .par_iter()
        .zip(&keys)
        .zip(sources)
        .map(|((device, key), source)| {
            let mut live = match source {
                Source::Cached(live) => live,
                Source::Stored(records) => match sessions::pick_best(records) {
                    Some(best) => LiveSession::from_record(best)?,
                    None => return Ok(None),
                },
            };
            let Ok(message) = live.session.encrypt(plaintext(&prefix, device)) else {
                return Ok(None);
            };
            let (kind, body) = match message {
                OlmMessage::PreKey(m) => (0, m.to_bytes()),
                OlmMessage::Normal(m) => (1, m.to_bytes()),
            };
            let content = encrypted_content(&sender_key, key, kind, &body);
            let record = live.to_record()?;
            Ok(Some(Encrypted {
                content,
                record,
                live,
            }))
        })
        .collect();
    let mut messages: Messages = BTreeMap::new();
    let mut advanced = Vec::with_capacity(devices.len());
    let mut live = Vec::with_capacity(devices.len());
    for (device, result) in devices.iter().zip(encrypted) {
        let id = (device.user_id().to_owned(), device.device_id().to_owned());
        let Some(done) = result? else {
            outcome.missing_sessions.push(id);
            continue;
        };
        advanced.push(done.record);
        live.push(done.live);
        messages
            .entry(id.0.clone())
            .or_default()
            .push((id.1.to_string(), done.content));
        outcome.sent_to.push(id);
    }
    txn.save_olm_sessions(&advanced)?;
    sender.cache.keep(txn, &taken, live)?;
    outcome.request_ids = queue_raw(
        txn,
        ENCRYPTED_EVENT_TYPE,
        messages,
        room_id,
        next_seq,
        Some(sender.bodies),
    )?;
    Ok(outcome)
}

/// Where a device's session comes from.
enum Source {
    Cached(LiveSession),
    Stored(Vec<OlmSessionRecord>),
}

/// One device's encrypted content and its advanced session.
struct Encrypted {
    content: String,
    record: OlmSessionRecord,
    live: LiveSession,
}

/// Per user, per device: the content as JSON text.
type Messages = BTreeMap<OwnedUserId, Vec<(String, String)>>;

/// Persists `/sendToDevice` requests for `messages`, packed (ENC-12).
pub(crate) fn queue_to_device(
    txn: &mut impl StoreTxn,
    event_type: &str,
    messages: BTreeMap<OwnedUserId, Map<String, Value>>,
    room_id: Option<&str>,
    next_seq: &mut u64,
) -> Result<Vec<String>, StoreError> {
    let raw: Messages = messages
        .into_iter()
        .map(|(user, devices)| {
            (
                user,
                devices
                    .into_iter()
                    .map(|(d, v)| (d, v.to_string()))
                    .collect(),
            )
        })
        .collect();
    queue_raw(txn, event_type, raw, room_id, next_seq, None)
}

fn queue_raw(
    txn: &mut impl StoreTxn,
    event_type: &str,
    messages: Messages,
    room_id: Option<&str>,
    next_seq: &mut u64,
    bodies: Option<&crate::request_bodies::RequestBodies>,
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
            body: body.into(),
            seq: *next_seq,
        };
        *next_seq += 1;
        txn.save_pending_request(&request)?;
        if let Some(bodies) = bodies {
            bodies.insert(&request.request_id, request.body.clone());
        }
        ids.push(request.request_id);
    }
    Ok(ids)
}

/// One user's part of a body: quoted IDs and contents, and its length.
struct UserEntry {
    user: String,
    devices: Vec<(String, String)>,
    size: usize,
}

/// Packs per-user messages into as few request bodies as the size bound
/// allows, each with at least [`MIN_USERS_PER_REQUEST`] users when there
/// are that many. Bodies are built as text: the contents are JSON already.
/// One pass on one core: per-user pieces built apart and joined cost more
/// in fresh pages than the copy they spread.
fn pack(messages: Messages) -> Vec<String> {
    // Quoted IDs first, so each user's size is known before it is written.
    let users: Vec<UserEntry> = messages
        .into_iter()
        .map(|(user, devices)| {
            let devices: Vec<(String, String)> = devices
                .into_iter()
                .map(|(device, content)| (quoted(&device), content))
                .collect();
            let user = quoted(user.as_str());
            // `"user":{` … `}` and, per device, `"device":content,`.
            let size = user.len()
                + 3
                + devices
                    .iter()
                    .map(|(d, c)| d.len() + c.len() + 2)
                    .sum::<usize>();
            UserEntry {
                user,
                devices,
                size,
            }
        })
        .collect();
    let mut bodies = Vec::new();
    // Reserved up front: a growing megabyte string would be copied often.
    let total: usize = users.iter().map(|u| u.size + 1).sum();
    let capacity = total.min(MAX_REQUEST_BYTES) + 64;
    let mut current = String::with_capacity(capacity);
    let mut count = 0;
    let close = |body: &mut String| {
        body.push_str("}}");
        std::mem::replace(body, String::with_capacity(capacity))
    };
    for UserEntry {
        user,
        devices,
        size,
    } in users
    {
        if count >= MIN_USERS_PER_REQUEST && current.len() + size > MAX_REQUEST_BYTES {
            bodies.push(close(&mut current));
            count = 0;
        }
        current.push_str(if count == 0 { "{\"messages\":{" } else { "," });
        current.push_str(&user);
        current.push_str(":{");
        for (i, (device, content)) in devices.iter().enumerate() {
            if i > 0 {
                current.push(',');
            }
            current.push_str(device);
            current.push(':');
            current.push_str(content);
        }
        current.push('}');
        count += 1;
    }
    if count > 0 {
        bodies.push(close(&mut current));
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_bodies_are_valid_json_with_every_message() {
        let mut messages: Messages = BTreeMap::new();
        for u in 0..250 {
            let user: OwnedUserId = format!("@u{u}:example.org").try_into().unwrap();
            messages.insert(
                user,
                vec![
                    ("D\"1".into(), "{\"x\":1}".into()),
                    ("D2".into(), "{}".into()),
                ],
            );
        }
        let bodies = pack(messages);
        assert_eq!(bodies.len(), 1, "250 small messages fit one request");
        let body: Value = serde_json::from_str(&bodies[0]).unwrap();
        let users = body["messages"].as_object().unwrap();
        assert_eq!(users.len(), 250);
        assert_eq!(users["@u7:example.org"]["D\"1"]["x"], 1);
    }

    #[test]
    fn large_sends_split_by_size_with_at_least_100_users_each() {
        let mut messages: Messages = BTreeMap::new();
        let content = format!("{{\"x\":\"{}\"}}", "a".repeat(20_000));
        for u in 0..500 {
            let user: OwnedUserId = format!("@u{u}:example.org").try_into().unwrap();
            messages.insert(user, vec![("D".into(), content.clone())]);
        }
        let bodies = pack(messages);
        assert!(bodies.len() > 1, "10 MB does not fit one request");
        let mut seen = 0;
        for (i, body) in bodies.iter().enumerate() {
            assert!(body.len() <= MAX_REQUEST_BYTES, "{}", body.len());
            let parsed: Value = serde_json::from_str(body).unwrap();
            let users = parsed["messages"].as_object().unwrap().len();
            // The last request takes what is left.
            assert!(users >= MIN_USERS_PER_REQUEST || i + 1 == bodies.len());
            seen += users;
        }
        assert_eq!(seen, 500);
    }

    #[test]
    fn quoting_matches_serde_json_for_every_kind_of_text() {
        for text in [
            "",
            "@alice:example.org",
            "AbC+/09",
            "say \"hi\"",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "ünïcödé ✓",
            "\u{7f}",
        ] {
            assert_eq!(
                quoted(text),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn encrypted_content_is_the_json_it_describes() {
        let content = encrypted_content("\"SENDER\"", "KEY+/", 0, b"body");
        let value: Value = serde_json::from_str(&content).unwrap();
        assert_eq!(
            value,
            json!({
                "algorithm": OLM_ALGORITHM,
                "sender_key": "SENDER",
                "ciphertext": {"KEY+/": {"type": 0, "body": "Ym9keQ"}},
            })
        );
        let normal: Value =
            serde_json::from_str(&encrypted_content("\"S\"", "K", 1, b"b")).unwrap();
        // The body is what vodozemac's own encoding of the message gives.
        let (alice, mut bob) = (
            vodozemac::olm::Account::new(),
            vodozemac::olm::Account::new(),
        );
        bob.generate_one_time_keys(1);
        let otk = *bob.one_time_keys().values().next().unwrap();
        let mut session = alice
            .create_outbound_session(
                vodozemac::olm::SessionConfig::version_1(),
                bob.curve25519_key(),
                otk,
            )
            .unwrap();
        let OlmMessage::PreKey(message) = session.encrypt("hi").unwrap() else {
            panic!("a new session sends pre-key messages")
        };
        let content: Value =
            serde_json::from_str(&encrypted_content("\"S\"", "K", 0, &message.to_bytes())).unwrap();
        assert_eq!(content["ciphertext"]["K"]["body"], message.to_base64());
        assert_eq!(normal["ciphertext"]["K"]["type"], 1);
    }
}

//! Encrypting to-device payloads (OLM-01..03) and packing them into
//! `/sendToDevice` requests (TD-01, TD-02).

use super::cache::OlmCache;
use super::pack::{self, Entry, Kept, UserEntry, push_quoted, quoted};
use super::sessions::{self, LiveSession};
use crate::OLM_ALGORITHM;
use crate::device_keys::VerifiedDeviceKeys;
use crate::store::{OlmSessionRecord, StoreError, StoreTxn};
use rayon::prelude::*;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Value, json};
use vodozemac::olm::OlmMessage;
use zeroize::Zeroizing;

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
    /// Room records from earlier inputs.
    pub(crate) rooms: &'a crate::room_cache::RoomCache,
    /// Outbound sessions' sets from earlier inputs.
    pub(crate) outbound_sets: &'a crate::megolm::sets_cache::SetsCache,
    /// Rooms whose last share had nothing to do.
    pub(crate) quiet: &'a crate::megolm::quiet::QuietShares,
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
/// inside the encryption block unknown-key-share attacks), written into
/// `out` after the shared prefix already there: one buffer per core, not
/// a fresh copy of the prefix per device.
fn plaintext<'o>(
    out: &'o mut String,
    prefix_len: usize,
    recipient: &VerifiedDeviceKeys,
) -> &'o str {
    let (user, key) = (recipient.user_id().as_str(), recipient.ed25519_base64());
    out.truncate(prefix_len);
    out.push_str(",\"recipient\":");
    push_quoted(out, user);
    out.push_str(",\"recipient_keys\":{\"ed25519\":");
    push_quoted(out, key);
    out.push_str("}}");
    out
}

/// One device's part of a body: `"device":` and its `m.room.encrypted`
/// content, ending in the message's base64, which is written straight
/// into the body. Base64 needs no escaping; `sender_key` comes quoted.
fn encrypted_entry(device: &str, sender_key: &str, key: &str, kind: u8, message: Vec<u8>) -> Entry {
    let mut head = String::with_capacity(device.len() + key.len() + sender_key.len() + 100);
    push_quoted(&mut head, device);
    head.push_str(":{\"algorithm\":\"");
    head.push_str(OLM_ALGORITHM);
    head.push_str("\",\"sender_key\":");
    head.push_str(sender_key);
    head.push_str(",\"ciphertext\":{");
    push_quoted(&mut head, key);
    head.push_str(":{\"type\":");
    head.push(if kind == 0 { '0' } else { '1' });
    head.push_str(",\"body\":\"");
    Entry::encoded(head, message, "\"}}}")
}

/// The room and outbound session whose key a send carries.
#[derive(Clone, Copy)]
pub(crate) struct RoomKeyOf<'a> {
    pub(crate) room_id: &'a str,
    pub(crate) session_id: &'a str,
}

/// Encrypts `content` as `event_type` for every device in `recipients`
/// that has a session, persists the advanced sessions and the requests.
/// A room's key is queued as [`crate::store::PendingKind::RoomKey`].
pub(crate) fn encrypt_for_devices(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    event_type: &str,
    content: &Value,
    recipients: &[&VerifiedDeviceKeys],
    room_key: Option<RoomKeyOf<'_>>,
    next_seq: &mut u64,
) -> Result<EncryptOutcome, StoreError> {
    let (mut outcome, users) = encrypt_entries(txn, sender, event_type, content, recipients)?;
    let kept = match room_key {
        Some(of) => Kept::RoomKey {
            bodies: sender.bodies,
            room_id: of.room_id,
            session_id: of.session_id,
            devices: &outcome.sent_to,
        },
        None => Kept::Held(sender.bodies),
    };
    outcome.request_ids = pack::queue(txn, ENCRYPTED_EVENT_TYPE, users, next_seq, kept)?;
    Ok(outcome)
}

/// Encrypts `content` as `event_type` for every device in `recipients`
/// that has a session and persists the advanced sessions; the messages
/// come as one `/sendToDevice` body, however large, queued nowhere.
pub(crate) fn encrypt_body(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    event_type: &str,
    content: &Value,
    recipients: &[&VerifiedDeviceKeys],
) -> Result<(EncryptOutcome, String), StoreError> {
    let (outcome, users) = encrypt_entries(txn, sender, event_type, content, recipients)?;
    Ok((outcome, pack::single(&users)))
}

/// Encrypts `content` for every device in `recipients` that has a
/// session and persists the advanced sessions: each user's entries, in
/// the order of `sent_to`, for the caller to put into bodies.
fn encrypt_entries(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    event_type: &str,
    content: &Value,
    recipients: &[&VerifiedDeviceKeys],
) -> Result<(EncryptOutcome, Vec<UserEntry>), StoreError> {
    let mut outcome = EncryptOutcome::default();
    let mut devices = distinct(recipients, &mut outcome.missing_sessions);
    // Grouped by user for the body; recipients usually come sorted, and
    // then this is one pass.
    devices.sort_by(|a, b| a.user_id().cmp(b.user_id()));
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
    // Holds the room key (or whatever secret is sent): wiped after.
    let prefix = Zeroizing::new(plaintext_prefix(sender, event_type, content));
    let sender_key = quoted(sender.curve25519);
    // Unpickling, the ratchet step and pickling again are independent per
    // session: use every core.
    // Collected by place (rayon's `Result` collect would gather lists of
    // chunks and copy them again); the first error is raised below.
    let encrypted: Vec<Result<Option<Encrypted>, StoreError>> = devices
        .par_iter()
        .zip(&keys)
        .zip(sources)
        // The plaintext holds the room key: its buffers are wiped.
        .map_init(
            || prefix.clone(),
            |buffer, ((device, key), source)| {
                let mut live = match source {
                    Source::Cached(live) => live,
                    Source::Stored(records) => match sessions::pick_best(records) {
                        Some(best) => LiveSession::from_record(best)?,
                        None => return Ok(None),
                    },
                };
                let text = plaintext(buffer, prefix.len(), device);
                let Ok(message) = live.session.encrypt(text) else {
                    return Ok(None);
                };
                let (kind, body) = match message {
                    OlmMessage::PreKey(m) => (0, m.to_bytes()),
                    OlmMessage::Normal(m) => (1, m.to_bytes()),
                };
                let entry =
                    encrypted_entry(device.device_id().as_str(), &sender_key, key, kind, body);
                let record = live.to_record()?;
                // Made here, on every core, rather than in the gathering
                // loop: it runs alone.
                let (user, device) = (device.user_id(), device.device_id());
                Ok(Some(Encrypted {
                    entry,
                    record,
                    live,
                    id: (user.to_owned(), device.to_owned()),
                    user: UserEntry::new(user.as_str()),
                }))
            },
        )
        .collect();
    let mut users: Vec<UserEntry> = Vec::new();
    let mut last_user = None;
    let mut advanced = Vec::with_capacity(devices.len());
    let mut live = Vec::with_capacity(devices.len());
    for (device, result) in devices.iter().zip(encrypted) {
        let Some(done) = result? else {
            let id = (device.user_id().to_owned(), device.device_id().to_owned());
            outcome.missing_sessions.push(id);
            continue;
        };
        advanced.push(done.record);
        live.push(done.live);
        if last_user != Some(device.user_id()) {
            users.push(done.user);
            last_user = Some(device.user_id());
        }
        if let Some(user) = users.last_mut() {
            user.push(done.entry);
        }
        outcome.sent_to.push(done.id);
    }
    txn.save_olm_sessions(advanced)?;
    sender.cache.keep(txn, &taken, live)?;
    Ok((outcome, users))
}

/// The recipients to encrypt for, in their order: a device listed twice
/// counts once, and one showing an identity key an earlier device has
/// goes to `missing` (one ratchet step per session and batch: two devices
/// claiming one key must not both encrypt from the same saved state).
/// Found by sorting, not by sets: this runs for every device of a send.
fn distinct<'a>(
    recipients: &[&'a VerifiedDeviceKeys],
    missing: &mut Vec<(OwnedUserId, OwnedDeviceId)>,
) -> Vec<&'a VerifiedDeviceKeys> {
    let id = |i: usize| (recipients[i].user_id(), recipients[i].device_id());
    let keys: Vec<[u8; 32]> = recipients
        .iter()
        .map(|d| d.curve25519().to_bytes())
        .collect();
    let mut repeated = vec![false; recipients.len()];
    // Stable sorts: among equals the earliest comes first and is kept.
    let mut by_id: Vec<usize> = (0..recipients.len()).collect();
    by_id.sort_by(|&a, &b| id(a).cmp(&id(b)));
    for pair in by_id.windows(2) {
        if id(pair[0]) == id(pair[1]) {
            repeated[pair[1]] = true;
        }
    }
    let mut shares_key = vec![false; recipients.len()];
    // Keys sorted with their places beside them (no lookup per compare);
    // among equal keys the earliest place comes first and is kept.
    let mut by_key: Vec<([u8; 32], usize)> = keys
        .iter()
        .enumerate()
        .filter(|&(i, _)| !repeated[i])
        .map(|(i, key)| (*key, i))
        .collect();
    by_key.sort_unstable();
    for pair in by_key.windows(2) {
        if pair[0].0 == pair[1].0 {
            shares_key[pair[1].1] = true;
        }
    }
    let mut devices = Vec::with_capacity(recipients.len());
    for (i, &device) in recipients.iter().enumerate() {
        if shares_key[i] {
            missing.push((device.user_id().to_owned(), device.device_id().to_owned()));
        } else if !repeated[i] {
            devices.push(device);
        }
    }
    devices
}

/// Where a device's session comes from.
enum Source {
    Cached(LiveSession),
    Stored(Vec<OlmSessionRecord>),
}

/// One device's part of the body and its advanced session.
struct Encrypted {
    entry: Entry,
    record: OlmSessionRecord,
    live: LiveSession,
    /// The device, for the outcome.
    id: (OwnedUserId, OwnedDeviceId),
    /// Its user's part of the body, if the device is the user's first.
    user: UserEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_content_is_the_json_it_describes() {
        // An entry is one member of the user's object.
        let content = |entry: Entry| -> Value {
            let mut text = String::new();
            entry.push_to(&mut text);
            let object: Value = serde_json::from_str(&format!("{{{text}}}")).unwrap();
            object["DEV\"ICE"].clone()
        };
        let value = content(encrypted_entry(
            "DEV\"ICE",
            "\"SENDER\"",
            "KEY+/",
            0,
            b"body".to_vec(),
        ));
        assert_eq!(
            value,
            json!({
                "algorithm": OLM_ALGORITHM,
                "sender_key": "SENDER",
                "ciphertext": {"KEY+/": {"type": 0, "body": "Ym9keQ"}},
            })
        );
        let normal = content(encrypted_entry("DEV\"ICE", "\"S\"", "K", 1, b"b".to_vec()));
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
        let pre_key = content(encrypted_entry(
            "DEV\"ICE",
            "\"S\"",
            "K",
            0,
            message.to_bytes(),
        ));
        assert_eq!(pre_key["ciphertext"]["K"]["body"], message.to_base64());
        assert_eq!(normal["ciphertext"]["K"]["type"], 1);
    }

    fn device(
        user: &str,
        device: &str,
        key: &vodozemac::Curve25519PublicKey,
    ) -> VerifiedDeviceKeys {
        VerifiedDeviceKeys::from_record(&crate::store::DeviceRecord {
            user_id: user.try_into().unwrap(),
            device_id: device.into(),
            keys_json: "{}".into(),
            ed25519: String::new(),
            curve25519: key.to_base64(),
            algorithms: Vec::new(),
            display_name: None,
            local: Default::default(),
        })
        .unwrap()
    }

    /// A device listed twice counts once; a later device showing an
    /// earlier one's identity key gets nothing; the order is kept.
    #[test]
    fn distinct_keeps_the_first_of_each_device_and_key() {
        let keys: Vec<_> = (0..3)
            .map(|_| vodozemac::olm::Account::new().curve25519_key())
            .collect();
        let list = [
            device("@b:x", "B1", &keys[0]),
            device("@a:x", "A1", &keys[1]),
            device("@b:x", "B1", &keys[0]),
            device("@a:x", "A2", &keys[0]),
            device("@c:x", "C1", &keys[2]),
            device("@a:x", "A1", &keys[1]),
        ];
        let refs: Vec<&VerifiedDeviceKeys> = list.iter().collect();
        let mut missing = Vec::new();
        let kept: Vec<String> = distinct(&refs, &mut missing)
            .iter()
            .map(|d| format!("{}/{}", d.user_id(), d.device_id()))
            .collect();
        assert_eq!(kept, ["@b:x/B1", "@a:x/A1", "@c:x/C1"]);
        let missing: Vec<String> = missing.iter().map(|(u, d)| format!("{u}/{d}")).collect();
        assert_eq!(missing, ["@a:x/A2"]);
    }
}

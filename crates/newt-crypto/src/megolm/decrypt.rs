//! Decrypting room events (MEG-08..11, ENC-14) and keeping the ones that
//! cannot be read yet for a retry when their key arrives (REC-05).

use super::{DecryptedRoomEvent, RoomDecryptError, RoomEventOutcome, TrustVerdict};
use crate::store::{InboundInfo, IndexUse, StoreError, StoreTxn, UndecryptedEvent};
use crate::time::Timestamp;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;
use vodozemac::megolm::{DecryptionError, InboundGroupSession, MegolmMessage};

fn malformed(detail: &str) -> RoomDecryptError {
    RoomDecryptError::Malformed {
        detail: detail.to_owned(),
    }
}

/// Who we are, for the trust verdict of our own messages.
pub(crate) struct Me<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) device_id: &'a str,
    /// Sessions and device facts already loaded in this input: a sync
    /// decrypts many events of few sessions. Decrypting never changes a
    /// stored inbound session, so the copies stay right for the input
    /// (and, through `megolm::cache`, for later ones).
    pub(crate) cache: std::cell::RefCell<BatchCache>,
}

/// Room, session and ciphertext of a message decrypted ahead.
type AheadKey = (String, String, String);
/// A message decrypted ahead with its plaintext parsed (`None`: not
/// JSON), or why not.
type AheadResult = Result<(vodozemac::megolm::DecryptedMessage, Option<Value>), String>;

/// What one input has loaded already.
#[derive(Default)]
pub(crate) struct BatchCache {
    pub(crate) sessions: super::cache::Sessions,
    /// Results of decrypting ahead, in parallel, by session and ciphertext.
    decrypted: std::collections::BTreeMap<AheadKey, AheadResult>,
    /// MEG-08 index uses known in this input (`None`: none recorded),
    /// loaded per session for the indices decrypted ahead and kept
    /// current by this input's own saves.
    index_uses: std::collections::BTreeMap<(String, String, u32), Option<IndexUse>>,
    devices: std::collections::BTreeMap<(OwnedUserId, OwnedDeviceId, String, String), Option<bool>>,
}

impl<'a> Me<'a> {
    pub(crate) fn new(user_id: &'a str, device_id: &'a str) -> Self {
        Self {
            user_id,
            device_id,
            cache: Default::default(),
        }
    }
}

/// MEG-10, MEG-11: how far an event can be trusted.
fn verdict(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    sender: &OwnedUserId,
    info: &InboundInfo,
) -> Result<TrustVerdict, StoreError> {
    if info
        .sender_user
        .as_ref()
        .is_some_and(|owner| owner != sender)
    {
        return Ok(TrustVerdict::MismatchedSender);
    }
    if !info.source.authenticated() {
        return Ok(TrustVerdict::AuthenticityNotGuaranteed);
    }
    let Some(device_id) = &info.sender_device else {
        return Ok(TrustVerdict::UnknownDevice);
    };
    if sender.as_str() == me.user_id && device_id.as_str() == me.device_id {
        return Ok(TrustVerdict::Verified);
    }
    let key = (
        sender.clone(),
        device_id.clone(),
        info.sender_key.clone(),
        info.claimed_ed25519.clone(),
    );
    let cached = me.cache.borrow().devices.get(&key).copied();
    let verified = match cached {
        Some(found) => found,
        None => {
            let found = txn
                .load_devices(sender)?
                .into_iter()
                .find(|d| {
                    d.device_id == *device_id
                        && d.curve25519 == info.sender_key
                        && d.ed25519 == info.claimed_ed25519
                })
                .map(|d| d.local.verified);
            me.cache.borrow_mut().devices.insert(key, found);
            found
        }
    };
    Ok(match verified {
        None => TrustVerdict::UnknownDevice,
        Some(true) => TrustVerdict::Verified,
        Some(false) => TrustVerdict::UnverifiedDevice,
    })
}

/// Decrypts one `m.room.encrypted` room event. Events that may become
/// readable later are stored for a retry.
pub(crate) fn decrypt(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    event: &Value,
    now: Timestamp,
) -> Result<Result<DecryptedRoomEvent, RoomDecryptError>, StoreError> {
    let result = attempt(txn, me, room_id, event)?;
    if let Err(error) = &result
        && error.is_retryable()
        && let (Some(event_id), Some(session_id)) = (
            event.get("event_id").and_then(Value::as_str),
            event.pointer("/content/session_id").and_then(Value::as_str),
        )
        && txn.load_undecrypted_event(room_id, event_id)?.is_none()
    {
        txn.save_undecrypted(&UndecryptedEvent {
            room_id: room_id.to_owned(),
            session_id: session_id.to_owned(),
            event_id: event_id.to_owned(),
            event_json: event.to_string(),
            received_at_ms: now.0,
        })?;
    }
    Ok(result)
}

pub(crate) fn attempt(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    event: &Value,
) -> Result<Result<DecryptedRoomEvent, RoomDecryptError>, StoreError> {
    let content = event.get("content").and_then(Value::as_object);
    // OLM-13: a redacted event has empty content.
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        return Ok(Err(RoomDecryptError::Redacted));
    };
    let text = |name: &str| content.get(name).and_then(Value::as_str);
    let algorithm = text("algorithm").unwrap_or_default();
    if algorithm != crate::MEGOLM_ALGORITHM {
        return Ok(Err(RoomDecryptError::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        }));
    }
    let (Some(session_id), Some(ciphertext)) = (text("session_id"), text("ciphertext")) else {
        return Ok(Err(malformed("session_id or ciphertext missing")));
    };
    let Some(event_id) = event.get("event_id").and_then(Value::as_str) else {
        return Ok(Err(malformed("no event_id")));
    };
    // MEG-10: a sender that is not even a user ID fails decryption.
    let Some(sender) = event
        .get("sender")
        .and_then(Value::as_str)
        .and_then(|s| OwnedUserId::try_from(s).ok())
    else {
        return Ok(Err(malformed("sender is not a user ID")));
    };
    let ts = event
        .get("origin_server_ts")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let ahead_key = (
        room_id.to_owned(),
        session_id.to_owned(),
        ciphertext.to_owned(),
    );
    // Decrypted ahead: the ciphertext parsed then. Otherwise parse it now.
    let ahead = match me.cache.borrow_mut().decrypted.remove(&ahead_key) {
        Some(Ok(done)) => Some(done),
        _ => None,
    };
    let message = match &ahead {
        Some(_) => None,
        None => match MegolmMessage::from_base64(ciphertext) {
            Ok(message) => Some(message),
            Err(_) => return Ok(Err(malformed("ciphertext is not a Megolm message"))),
        },
    };
    // MEG-05: looked up by room and session, never by sender key.
    let cache_key = (room_id.to_owned(), session_id.to_owned());
    let cached = me.cache.borrow_mut().sessions.remove(&cache_key);
    let loaded = match cached {
        Some(hit) => Some(hit),
        None => txn.load_inbound(room_id, session_id)?.map(|r| {
            (
                InboundGroupSession::from_pickle(r.pickle),
                r.info,
                r.room_id,
            )
        }),
    };
    let Some((mut session, info, record_room)) = loaded else {
        if let Some(notice) = txn.load_withheld(room_id, session_id)? {
            return Ok(Err(RoomDecryptError::Withheld {
                session_id: session_id.to_owned(),
                code: notice.code,
                reason: notice.reason,
            }));
        }
        // WHD-05: an `m.no_olm` from the sending device covers this too.
        if let Some(sender_key) = text("sender_key")
            && let Some(notice) = txn.load_withheld("", sender_key)?
        {
            return Ok(Err(RoomDecryptError::Withheld {
                session_id: session_id.to_owned(),
                code: notice.code,
                reason: notice.reason,
            }));
        }
        return Ok(Err(RoomDecryptError::MissingSession {
            session_id: session_id.to_owned(),
        }));
    };
    let (attempt, parsed) = match (ahead, message) {
        (Some((done, parsed)), _) => (Ok(done), parsed),
        // Failures are decrypted again here, to keep their exact reason.
        (None, Some(message)) => (session.decrypt(&message), None),
        (None, None) => return Ok(Err(malformed("ciphertext is not a Megolm message"))),
    };
    let (record_room, info) = (record_room.clone(), info.clone());
    me.cache
        .borrow_mut()
        .sessions
        .insert(cache_key, (session, info.clone(), record_room.clone()));
    let decrypted = match attempt {
        Ok(d) => d,
        Err(DecryptionError::UnknownMessageIndex(first_known, index)) => {
            return Ok(Err(RoomDecryptError::UnknownIndex {
                session_id: session_id.to_owned(),
                first_known,
                index,
            }));
        }
        Err(e) => {
            return Ok(Err(RoomDecryptError::Failed {
                detail: e.to_string(),
            }));
        }
    };
    let index = decrypted.message_index;
    // MEG-08: an index belongs to one event; the same event may be
    // decrypted again.
    let this_use = IndexUse {
        event_id: event_id.to_owned(),
        origin_server_ts: ts,
    };
    let use_key = (room_id.to_owned(), session_id.to_owned(), index);
    let known = me.cache.borrow().index_uses.get(&use_key).cloned();
    let recorded = match known {
        Some(known) => known,
        None => txn.load_index_use(room_id, session_id, index)?,
    };
    match recorded {
        Some(first) if first != this_use => {
            return Ok(Err(RoomDecryptError::Replay {
                index,
                first_event_id: first.event_id,
            }));
        }
        Some(_) => {}
        None => {
            txn.save_index_use(room_id, session_id, index, &this_use)?;
            me.cache
                .borrow_mut()
                .index_uses
                .insert(use_key, Some(this_use.clone()));
        }
    }
    let parsed = parsed.or_else(|| serde_json::from_slice::<Value>(&decrypted.plaintext).ok());
    let Some(mut plain) = parsed else {
        return Ok(Err(malformed("plaintext is not JSON")));
    };
    // MEG-09: the server cannot move a message to another room.
    let payload_room = plain
        .get("room_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if payload_room != room_id || record_room != room_id {
        return Ok(Err(RoomDecryptError::WrongRoom {
            payload_room: payload_room.to_owned(),
        }));
    }
    let event_type = plain
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut inner = plain
        .get_mut("content")
        .map(Value::take)
        .unwrap_or(Value::Object(Default::default()));
    // ENC-14: the relation in the clear counts; one inside is ignored.
    if let Some(inner) = inner.as_object_mut() {
        inner.remove("m.relates_to");
        if let Some(relates_to) = content.get("m.relates_to") {
            inner.insert("m.relates_to".into(), relates_to.clone());
        }
    }
    let trust = verdict(txn, me, &sender, &info)?;
    let sender_device: Option<OwnedDeviceId> = info.sender_device.clone();
    Ok(Ok(DecryptedRoomEvent {
        room_id: room_id.to_owned(),
        event_id: event_id.to_owned(),
        sender,
        sender_device,
        origin_server_ts: ts,
        event_type,
        content: inner,
        session_id: session_id.to_owned(),
        message_index: index,
        trust,
    }))
}

/// Decrypts a batch of events ahead of [`decrypt`], one session per core:
/// the per-event checks that follow stay in order, in one thread.
pub(crate) fn decrypt_ahead(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    events: &[&Value],
) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for event in events {
        let content = event.get("content");
        let field = |name: &str| content.and_then(|c| c.get(name)).and_then(Value::as_str);
        if let (Some(session_id), Some(ciphertext)) = (field("session_id"), field("ciphertext")) {
            groups
                .entry(session_id.to_owned())
                .or_default()
                .push(ciphertext.to_owned());
        }
    }
    let mut work = Vec::new();
    for (session_id, ciphertexts) in groups {
        let key = (room_id.to_owned(), session_id.clone());
        let cached = me.cache.borrow_mut().sessions.remove(&key);
        let entry = match cached {
            Some(entry) => Some(entry),
            None => txn.load_inbound(room_id, &session_id)?.map(|record| {
                let session = InboundGroupSession::from_pickle(record.pickle);
                (session, record.info, record.room_id)
            }),
        };
        if let Some(entry) = entry {
            work.push((key, entry, ciphertexts));
        }
    }
    // Each core advances its own sessions; they go back to the cache
    // advanced, which changes no result: earlier indices stay readable.
    let results: Vec<_> = work
        .into_par_iter()
        .map(|(key, mut entry, ciphertexts)| {
            let decrypted: Vec<(AheadKey, AheadResult)> = ciphertexts
                .into_iter()
                .map(|ciphertext| {
                    // The plaintext is parsed here too, on this core.
                    let result = MegolmMessage::from_base64(&ciphertext)
                        .map_err(|e| e.to_string())
                        .and_then(|m| entry.0.decrypt(&m).map_err(|e| e.to_string()))
                        .map(|done| {
                            let parsed = serde_json::from_slice(&done.plaintext).ok();
                            (done, parsed)
                        });
                    ((key.0.clone(), key.1.clone(), ciphertext), result)
                })
                .collect();
            (key, entry, decrypted)
        })
        .collect();
    for (key, entry, decrypted) in results {
        // MEG-08: one query for the indices this batch will check.
        let indices: Vec<u32> = decrypted
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|(d, _)| d.message_index))
            .collect();
        let found = txn.load_index_uses(&key.0, &key.1, &indices)?;
        let mut cache = me.cache.borrow_mut();
        for index in indices {
            cache
                .index_uses
                .insert((key.0.clone(), key.1.clone(), index), None);
        }
        for (index, used) in found {
            cache
                .index_uses
                .insert((key.0.clone(), key.1.clone(), index), Some(used));
        }
        cache.sessions.insert(key, entry);
        cache.decrypted.extend(decrypted);
    }
    Ok(())
}

/// REC-05: retries the events waiting for `(room_id, session_id)`.
pub(crate) fn retry(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    session_id: &str,
) -> Result<Vec<RoomEventOutcome>, StoreError> {
    let mut out = Vec::new();
    for waiting in txn.load_undecrypted(room_id, session_id)? {
        let Ok(event) = serde_json::from_str::<Value>(&waiting.event_json) else {
            txn.delete_undecrypted(room_id, &waiting.event_id)?;
            continue;
        };
        let result = attempt(txn, me, room_id, &event)?;
        if result.as_ref().is_err_and(RoomDecryptError::is_retryable) {
            continue;
        }
        txn.delete_undecrypted(room_id, &waiting.event_id)?;
        out.push(RoomEventOutcome {
            room_id: room_id.to_owned(),
            event_id: waiting.event_id,
            result,
            late: true,
        });
    }
    Ok(out)
}

//! Decrypting room events (MEG-08..11, ENC-14) and keeping the ones that
//! cannot be read yet for a retry when their key arrives (REC-05).

use super::batch::{AheadError, AheadResult, BatchCache};
use super::cache::Entry;
use super::event::{EncryptedEvent, Payload};
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

/// Who we are, for the trust verdict of our own messages, and what this
/// input has loaded already.
pub(crate) struct Me<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) device_id: &'a str,
    pub(crate) cache: BatchCache,
}

impl<'a> Me<'a> {
    pub(crate) fn new(user_id: &'a str, device_id: &'a str) -> Self {
        Self {
            user_id,
            device_id,
            cache: BatchCache::default(),
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
    let cached = me.cache.devices.borrow().get(&key).copied();
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
            me.cache.devices.borrow_mut().insert(key, found);
            found
        }
    };
    Ok(match verified {
        None => TrustVerdict::UnknownDevice,
        Some(true) => TrustVerdict::Verified,
        Some(false) => TrustVerdict::UnverifiedDevice,
    })
}

/// The verdict for an event of this session: computed once per session
/// and sender in an input (it depends on nothing else that can change
/// while a timeline is read).
fn session_verdict(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    session_id: &str,
    sender: &OwnedUserId,
    info: &InboundInfo,
) -> Result<TrustVerdict, StoreError> {
    let known = me
        .cache
        .verdicts
        .borrow()
        .get(room_id, session_id)
        .and_then(|(for_sender, verdict)| (for_sender == sender).then_some(*verdict));
    if let Some(verdict) = known {
        return Ok(verdict);
    }
    let verdict = verdict(txn, me, sender, info)?;
    me.cache
        .verdicts
        .borrow_mut()
        .insert(room_id, session_id, (sender.clone(), verdict));
    Ok(verdict)
}

/// Why there is no session: withheld (WHD-04, WHD-05) or simply missing.
fn missing(
    txn: &mut impl StoreTxn,
    room_id: &str,
    session_id: &str,
    sender_key: Option<&str>,
) -> Result<Result<DecryptedRoomEvent, RoomDecryptError>, StoreError> {
    let withheld = |notice: crate::store::WithheldRecord| {
        Ok(Err(RoomDecryptError::Withheld {
            session_id: session_id.to_owned(),
            code: notice.code,
            reason: notice.reason,
        }))
    };
    if let Some(notice) = txn.load_withheld(room_id, session_id)? {
        return withheld(notice);
    }
    // WHD-05: an `m.no_olm` from the sending device covers this too.
    if let Some(sender_key) = sender_key
        && let Some(notice) = txn.load_withheld("", sender_key)?
    {
        return withheld(notice);
    }
    Ok(Err(RoomDecryptError::MissingSession {
        session_id: session_id.to_owned(),
    }))
}

/// MEG-08: an index belongs to one event; the same event may be decrypted
/// again. Records this use if it is the first; returns the first event's
/// ID if another event used the index.
fn check_index(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    session_id: &str,
    index: u32,
    event_id: &str,
    ts: u64,
) -> Result<Option<String>, StoreError> {
    let same = |first: &IndexUse| first.event_id == event_id && first.origin_server_ts == ts;
    // Some(None): known unused; None: not known in this input.
    let known: Option<Option<Result<(), String>>> = me
        .cache
        .index_uses
        .borrow()
        .get(room_id, session_id)
        .and_then(|uses| uses.get(&index))
        .map(|first| {
            first.as_ref().map(|first| {
                if same(first) {
                    Ok(())
                } else {
                    Err(first.event_id.clone())
                }
            })
        });
    let recorded = match known {
        Some(known) => known,
        None => txn
            .load_index_use(room_id, session_id, index)?
            .map(|first| {
                if same(&first) {
                    Ok(())
                } else {
                    Err(first.event_id)
                }
            }),
    };
    match recorded {
        Some(Ok(())) => Ok(None),
        Some(Err(first_event_id)) => Ok(Some(first_event_id)),
        None => {
            let this_use = IndexUse {
                event_id: event_id.to_owned(),
                origin_server_ts: ts,
            };
            match me.cache.deferred_uses.borrow_mut().as_mut() {
                Some(uses) => uses.push((session_id.to_owned(), index, this_use.clone())),
                None => crate::store::redoable(txn, |txn| {
                    txn.save_index_use(room_id, session_id, index, &this_use)
                })?,
            }
            let mut uses = me.cache.index_uses.borrow_mut();
            match uses.get_mut(room_id, session_id) {
                Some(held) => {
                    held.insert(index, Some(this_use));
                }
                None => {
                    uses.insert(room_id, session_id, [(index, Some(this_use))].into());
                }
            }
            Ok(None)
        }
    }
}

/// Decrypts one `m.room.encrypted` room event. Events that may become
/// readable later are stored for a retry.
pub(crate) fn decrypt(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    event: &EncryptedEvent<'_>,
    now: Timestamp,
    ahead: Option<AheadResult>,
) -> Result<Result<DecryptedRoomEvent, RoomDecryptError>, StoreError> {
    let result = attempt(txn, me, room_id, event, ahead)?;
    if let Err(error) = &result
        && error.is_retryable()
        && let (Some(event_id), Some(session_id)) = (event.event_id, event.session_id)
        && txn.load_undecrypted_event(room_id, event_id)?.is_none()
    {
        txn.save_undecrypted(&UndecryptedEvent {
            room_id: room_id.to_owned(),
            session_id: session_id.to_owned(),
            event_id: event_id.to_owned(),
            event_json: event.raw.to_string(),
            received_at_ms: now.0,
        })?;
    }
    Ok(result)
}

/// `ahead`: this event's own result of decrypting ahead, if it has one.
pub(crate) fn attempt(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    event: &EncryptedEvent<'_>,
    ahead: Option<AheadResult>,
) -> Result<Result<DecryptedRoomEvent, RoomDecryptError>, StoreError> {
    // OLM-13: a redacted event has empty content.
    if event.content.is_none_or(|c| c.is_empty()) {
        return Ok(Err(RoomDecryptError::Redacted));
    }
    let algorithm = event.algorithm.unwrap_or_default();
    if algorithm != crate::MEGOLM_ALGORITHM {
        return Ok(Err(RoomDecryptError::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        }));
    }
    let (Some(session_id), Some(ciphertext)) = (event.session_id, event.ciphertext) else {
        return Ok(Err(malformed("session_id or ciphertext missing")));
    };
    let Some(event_id) = event.event_id else {
        return Ok(Err(malformed("no event_id")));
    };
    // MEG-10: a sender that is not even a user ID fails decryption.
    let Some(sender) = event.sender.and_then(|s| OwnedUserId::try_from(s).ok()) else {
        return Ok(Err(malformed("sender is not a user ID")));
    };
    let ts = event.origin_server_ts.unwrap_or(0);
    // Decrypted ahead (its failure kept too), from this very event's
    // session and ciphertext. Otherwise parse it now.
    let ahead = match ahead {
        Some(Err(AheadError::NotMegolm)) => {
            return Ok(Err(malformed("ciphertext is not a Megolm message")));
        }
        other => other,
    };
    let message = match &ahead {
        Some(_) => None,
        None => match MegolmMessage::from_base64(ciphertext) {
            Ok(message) => Some(message),
            Err(_) => return Ok(Err(malformed("ciphertext is not a Megolm message"))),
        },
    };
    // MEG-05: looked up by room and session, never by sender key.
    let cached = me
        .cache
        .sessions
        .borrow()
        .get(room_id, session_id)
        .is_some();
    if !cached && let Some(record) = txn.load_inbound(room_id, session_id)? {
        let entry = Entry::from_record(record);
        me.cache
            .sessions
            .borrow_mut()
            .insert(room_id, session_id, entry);
    }
    let mut sessions = me.cache.sessions.borrow_mut();
    let Some(entry) = sessions.get_mut(room_id, session_id) else {
        drop(sessions);
        return missing(txn, room_id, session_id, event.sender_key);
    };
    let (attempt, parsed) = match (ahead, message) {
        (Some(Ok((done, parsed))), _) => (Ok(done), parsed),
        (Some(Err(AheadError::Decrypt(e))), _) => (Err(e), None),
        (Some(Err(AheadError::NotMegolm)), _) | (None, None) => {
            return Ok(Err(malformed("ciphertext is not a Megolm message")));
        }
        (None, Some(message)) => match entry.session.as_mut() {
            Some(session) => (session.decrypt(&message), None),
            // Lent to a chunk decrypting ahead (every event checked then
            // has its result, so this is only a safe fallback): a fresh
            // copy from the store reads the same message.
            None => match txn.load_inbound(room_id, session_id)? {
                Some(record) => {
                    let mut copy = InboundGroupSession::from_pickle(record.pickle);
                    (copy.decrypt(&message), None)
                }
                None => {
                    drop(sessions);
                    return missing(txn, room_id, session_id, event.sender_key);
                }
            },
        },
    };
    let info = std::sync::Arc::clone(&entry.info);
    let record_room_matches = entry.record_room == room_id;
    drop(sessions);
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
    if let Some(first_event_id) = check_index(txn, me, room_id, session_id, index, event_id, ts)? {
        return Ok(Err(RoomDecryptError::Replay {
            index,
            first_event_id,
        }));
    }
    let parsed = parsed.or_else(|| Payload::parse(&decrypted.plaintext, room_id));
    let Some(payload) = parsed else {
        return Ok(Err(malformed("plaintext is not JSON")));
    };
    // MEG-09: the server cannot move a message to another room.
    if payload.other_room.is_some() || !record_room_matches {
        return Ok(Err(RoomDecryptError::WrongRoom {
            payload_room: payload.other_room.unwrap_or_else(|| room_id.to_owned()),
        }));
    }
    let event_type = payload.event_type;
    let mut inner = payload.content;
    // ENC-14: the relation in the clear counts; one inside is ignored.
    if let Some(inner) = inner.as_object_mut() {
        inner.remove("m.relates_to");
        if let Some(relates_to) = event.relates_to {
            inner.insert("m.relates_to".into(), relates_to.clone());
        }
    }
    let trust = session_verdict(txn, me, room_id, session_id, &sender, &info)?;
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
        let result = attempt(txn, me, room_id, &EncryptedEvent::of(&event), None)?;
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

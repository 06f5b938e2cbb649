//! What one input has loaded and decrypted already: a sync decrypts many
//! events of few sessions, so sessions, MEG-08 index uses and trust facts
//! are loaded once per input, and large timelines are decrypted ahead on
//! every core before the in-order checks.

use super::TrustVerdict;
use super::by_session::BySession;
use super::cache::{Entry, Sessions};
use crate::store::{IndexUse, StoreError, StoreTxn};
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use vodozemac::megolm::{DecryptedMessage, MegolmMessage};

/// A message decrypted ahead with its plaintext parsed (`None`: not
/// JSON), or why not.
pub(crate) type AheadResult = Result<(DecryptedMessage, Option<Value>), String>;

/// A result of decrypting ahead and the session it came from.
pub(crate) struct Ahead {
    /// Room and session ID, shared by the session's messages.
    origin: Rc<(String, String)>,
    result: AheadResult,
}

/// Per input. Decrypting never changes a stored inbound session, so the
/// copies stay right for the input (and, through `megolm::cache`, for
/// later ones); device facts do not change while a timeline is read.
/// Separate cells: a lookup in one may stay borrowed while another fills.
#[derive(Default)]
pub(crate) struct BatchCache {
    pub(crate) sessions: RefCell<Sessions>,
    /// Results of decrypting ahead, by ciphertext. Hashed: ciphertexts
    /// share long prefixes, which made ordered lookups slow; never
    /// iterated, so the order cannot leak anywhere.
    #[allow(clippy::disallowed_types)]
    decrypted: RefCell<std::collections::HashMap<String, Ahead>>,
    /// Results whose ciphertext was held already.
    collided: RefCell<Vec<(String, Ahead)>>,
    /// MEG-08 index uses known in this input (`None`: none recorded),
    /// loaded per session for the indices decrypted ahead and kept
    /// current by this input's own saves.
    pub(crate) index_uses: RefCell<BySession<BTreeMap<u32, Option<IndexUse>>>>,
    /// Whether a sender's device is verified (`None`: unknown device).
    pub(crate) devices: RefCell<DeviceFacts>,
    /// The verdict last given for a session, and for which sender.
    pub(crate) verdicts: RefCell<BySession<(OwnedUserId, TrustVerdict)>>,
}

/// By user, device, Curve25519 and Ed25519 key.
pub(crate) type DeviceFacts = BTreeMap<(OwnedUserId, OwnedDeviceId, String, String), Option<bool>>;

impl BatchCache {
    /// The result of decrypting `ciphertext` ahead for this room and
    /// session, taken out; `None` if there is none.
    pub(crate) fn take_ahead(
        &self,
        room_id: &str,
        session_id: &str,
        ciphertext: &str,
    ) -> Option<AheadResult> {
        // The same bytes under another session are not this message.
        let ours = |ahead: &Ahead| ahead.origin.0 == room_id && ahead.origin.1 == session_id;
        let mut decrypted = self.decrypted.borrow_mut();
        if decrypted.get(ciphertext).is_some_and(ours) {
            return decrypted.remove(ciphertext).map(|ahead| ahead.result);
        }
        drop(decrypted);
        let mut collided = self.collided.borrow_mut();
        let at = collided
            .iter()
            .position(|(text, ahead)| text == ciphertext && ours(ahead))?;
        Some(collided.swap_remove(at).1.result)
    }

    /// Keeps a result; one whose ciphertext is held already (a replay, or
    /// a copy under another session) goes beside it, not over it.
    fn put_ahead(&self, ciphertext: String, ahead: Ahead) {
        match self.decrypted.borrow_mut().entry(ciphertext) {
            std::collections::hash_map::Entry::Occupied(held) => {
                self.collided.borrow_mut().push((held.key().clone(), ahead));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(ahead);
            }
        }
    }
}

/// Decrypts a batch of events ahead of `decrypt::decrypt`, one session
/// per core: the per-event checks that follow stay in order, in one
/// thread.
pub(crate) fn decrypt_ahead(
    txn: &mut impl StoreTxn,
    cache: &BatchCache,
    room_id: &str,
    events: &[&Value],
) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for event in events {
        let content = event.get("content");
        let field = |name: &str| content.and_then(|c| c.get(name)).and_then(Value::as_str);
        if let (Some(session_id), Some(ciphertext)) = (field("session_id"), field("ciphertext")) {
            groups.entry(session_id).or_default().push(ciphertext);
        }
    }
    let mut work = Vec::new();
    for (session_id, ciphertexts) in groups {
        let cached = cache.sessions.borrow_mut().remove(room_id, session_id);
        let entry = match cached {
            Some(entry) => Some(entry),
            None => txn
                .load_inbound(room_id, session_id)?
                .map(Entry::from_record),
        };
        if let Some(entry) = entry {
            work.push((session_id, entry, ciphertexts));
        }
    }
    // Each core advances its own sessions; they go back to the cache
    // advanced, which changes no result: earlier indices stay readable.
    let results: Vec<_> = work
        .into_par_iter()
        .map(|(session_id, mut entry, ciphertexts)| {
            let decrypted: Vec<(String, AheadResult)> = ciphertexts
                .into_iter()
                .map(|ciphertext| {
                    // The plaintext is parsed here too, on this core.
                    let result = MegolmMessage::from_base64(ciphertext)
                        .map_err(|e| e.to_string())
                        .and_then(|m| entry.session.decrypt(&m).map_err(|e| e.to_string()))
                        .map(|done| {
                            let parsed = serde_json::from_slice(&done.plaintext).ok();
                            (done, parsed)
                        });
                    (ciphertext.to_owned(), result)
                })
                .collect();
            (session_id, entry, decrypted)
        })
        .collect();
    for (session_id, entry, decrypted) in results {
        // MEG-08: one query for the indices this batch will check.
        let indices: Vec<u32> = decrypted
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|(d, _)| d.message_index))
            .collect();
        let found = txn.load_index_uses(room_id, session_id, &indices)?;
        let mut known: BTreeMap<u32, Option<IndexUse>> =
            indices.iter().map(|i| (*i, None)).collect();
        for (index, used) in found {
            known.insert(index, Some(used));
        }
        let mut uses = cache.index_uses.borrow_mut();
        match uses.get_mut(room_id, session_id) {
            Some(held) => held.extend(known),
            None => {
                uses.insert(room_id, session_id, known);
            }
        }
        cache
            .sessions
            .borrow_mut()
            .insert(room_id, session_id, entry);
        let origin = Rc::new((room_id.to_owned(), session_id.to_owned()));
        for (ciphertext, result) in decrypted {
            let origin = Rc::clone(&origin);
            cache.put_ahead(ciphertext, Ahead { origin, result });
        }
    }
    Ok(())
}

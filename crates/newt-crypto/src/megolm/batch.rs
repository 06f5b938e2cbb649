//! What one input has loaded and decrypted already: a sync decrypts many
//! events of few sessions, so sessions, MEG-08 index uses and trust facts
//! are loaded once per input, and large timelines are decrypted ahead on
//! every core before the in-order checks.

use super::TrustVerdict;
use super::by_session::BySession;
use super::cache::{Entry, Sessions};
use super::event::{EncryptedEvent, Payload};
use crate::store::{IndexUse, StoreError, StoreTxn};
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use vodozemac::megolm::{DecryptedMessage, DecryptionError, InboundGroupSession, MegolmMessage};

/// A message decrypted ahead with its plaintext parsed (`None`: not
/// JSON; the plaintext is kept only then), or why not.
pub(crate) type AheadResult = Result<(DecryptedMessage, Option<Payload>), AheadError>;

/// Why a message could not be decrypted ahead.
#[derive(Debug)]
pub(crate) enum AheadError {
    /// The ciphertext is not a Megolm message.
    NotMegolm,
    /// The session refused it.
    Decrypt(DecryptionError),
}

/// Per input. Decrypting never changes a stored inbound session, so the
/// copies stay right for the input (and, through `megolm::cache`, for
/// later ones); device facts do not change while a timeline is read.
/// Separate cells: a lookup in one may stay borrowed while another fills.
#[derive(Default)]
pub(crate) struct BatchCache {
    pub(crate) sessions: RefCell<Sessions>,
    /// MEG-08 index uses known in this input (`None`: none recorded),
    /// loaded per session for the indices decrypted ahead and kept
    /// current by this input's own saves.
    pub(crate) index_uses: RefCell<BySession<BTreeMap<u32, Option<IndexUse>>>>,
    /// MEG-08 uses recorded while a timeline is decrypted ahead, saved at
    /// once after the timeline (`None`: each use is saved as it is made):
    /// the store then writes one run per session, not one row per event.
    /// `index_uses` holds them too, so no check misses one.
    pub(crate) deferred_uses: RefCell<Option<Vec<(String, u32, IndexUse)>>>,
    /// Whether a sender's device is verified (`None`: unknown device).
    pub(crate) devices: RefCell<DeviceFacts>,
    /// The verdict last given for a session, and for which sender.
    pub(crate) verdicts: RefCell<BySession<(OwnedUserId, TrustVerdict)>>,
}

/// By user, device, Curve25519 and Ed25519 key.
pub(crate) type DeviceFacts = BTreeMap<(OwnedUserId, OwnedDeviceId, String, String), Option<bool>>;

/// Fewer encrypted events than this are decrypted one by one.
const AHEAD_MIN: usize = 32;
/// Events per step of the pipeline.
const CHUNK: usize = 128;
/// Events in the pipeline's last step at most: it is checked alone.
const LAST_CHUNK: usize = 32;

/// An event's session and its parsed ciphertext.
struct Parsed<'e> {
    /// The event's place in the timeline.
    at: usize,
    session_id: &'e str,
    message: Result<MegolmMessage, AheadError>,
}

/// An event's place and what parsing its ciphertext gave.
type Message = (usize, Result<MegolmMessage, AheadError>);

/// One session's messages of a chunk, with its live session lent out.
struct Lent<'e> {
    session_id: &'e str,
    session: InboundGroupSession,
    messages: Vec<Message>,
}

/// Decrypts the encrypted timeline events of one room and runs `check`
/// on each, in order, on this thread. Large batches are decrypted ahead,
/// one session per core, in chunks: while one chunk is checked here, the
/// next decrypts on the other cores.
pub(crate) fn decrypt_timeline<T: StoreTxn>(
    txn: &mut T,
    cache: &BatchCache,
    room_id: &str,
    events: &[&Value],
    mut check: impl FnMut(&mut T, &EncryptedEvent<'_>, Option<AheadResult>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if events.len() < AHEAD_MIN {
        return events
            .iter()
            .try_for_each(|event| check(txn, &EncryptedEvent::of(event), None));
    }
    *cache.deferred_uses.borrow_mut() = Some(Vec::new());
    let decrypted = decrypt_ahead(txn, cache, room_id, events, check)
        .and_then(|()| save_deferred_uses(txn, cache, room_id));
    *cache.deferred_uses.borrow_mut() = None;
    decrypted
}

/// Saves the MEG-08 uses deferred over a timeline, at once.
fn save_deferred_uses(
    txn: &mut impl StoreTxn,
    cache: &BatchCache,
    room_id: &str,
) -> Result<(), StoreError> {
    let uses = cache
        .deferred_uses
        .borrow_mut()
        .as_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    if uses.is_empty() {
        return Ok(());
    }
    // MEG-08 records are redone by decrypting the events again.
    crate::store::redoable(txn, |txn| txn.save_index_uses(room_id, &uses))
}

/// The pipeline of [`decrypt_timeline`].
fn decrypt_ahead<'e, T: StoreTxn>(
    txn: &mut T,
    cache: &BatchCache,
    room_id: &str,
    events: &[&'e Value],
    mut check: impl FnMut(&mut T, &EncryptedEvent<'_>, Option<AheadResult>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    // One vector for both: a thousand events' worth is fresh memory, so
    // it is not copied into two more.
    let mut items = parse_all(events);
    let named = preload_sessions(txn, cache, room_id, items.iter().map(|(_, parsed)| parsed))?;
    let chunks = chunk_bounds(items.len());
    let take = |items: &mut [(EncryptedEvent<'e>, Option<Parsed<'e>>)], n: usize| {
        let Some(range) = chunks.get(n) else {
            return Vec::new();
        };
        items[range.clone()]
            .iter_mut()
            .map(|(_, parsed)| parsed.take())
            .collect::<Vec<_>>()
    };
    // The first chunk decrypts while the MEG-08 uses load: the checks
    // need them, the decryptions do not.
    let first = lend(cache, room_id, take(&mut items, 0));
    let mut ready = Vec::new();
    let mut loaded = Ok(());
    rayon::in_place_scope(|scope| {
        scope.spawn(|_| ready = compute(room_id, first));
        loaded = preload_uses(txn, cache, room_id, &named);
    });
    loaded?;
    for (n, range) in chunks.iter().enumerate() {
        // Each event is handed its own result, found by its place.
        let mut results = install(cache, room_id, ready, range.start, range.len());
        let work = (n + 1 < chunks.len()).then(|| lend(cache, room_id, take(&mut items, n + 1)));
        let chunk = &items[range.clone()];
        let mut run = |txn: &mut T| {
            chunk
                .iter()
                .zip(results.iter_mut())
                .try_for_each(|((event, _), result)| check(txn, event, result.take()))
        };
        let Some(work) = work else {
            return run(txn);
        };
        let mut computed = Vec::new();
        let mut checked = Ok(());
        rayon::in_place_scope(|scope| {
            scope.spawn(|_| computed = compute(room_id, work));
            checked = run(txn);
        });
        checked?;
        ready = computed;
    }
    Ok(())
}

/// The pipeline's chunks: [`CHUNK`] events each, but the last one split
/// so that at most [`LAST_CHUNK`] events are checked with nothing
/// decrypting beside them.
fn chunk_bounds(len: usize) -> Vec<Range<usize>> {
    let mut bounds: Vec<Range<usize>> = (0..len)
        .step_by(CHUNK)
        .map(|start| start..(start + CHUNK).min(len))
        .collect();
    if let Some(last) = bounds.pop() {
        if last.len() > LAST_CHUNK {
            let split = last.end - LAST_CHUNK;
            bounds.push(last.start..split);
            bounds.push(split..last.end);
        } else {
            bounds.push(last);
        }
    }
    bounds
}

/// Every event read and its session and message parsed, on every core.
fn parse_all<'e>(events: &[&'e Value]) -> Vec<(EncryptedEvent<'e>, Option<Parsed<'e>>)> {
    use rayon::prelude::*;
    events
        .par_iter()
        .enumerate()
        .map(|(at, event)| {
            let event = EncryptedEvent::of(event);
            let parsed = event
                .session_id
                .zip(event.ciphertext)
                .map(|(session_id, ciphertext)| {
                    let message =
                        MegolmMessage::from_base64(ciphertext).map_err(|_| AheadError::NotMegolm);
                    Parsed {
                        at,
                        session_id,
                        message,
                    }
                });
            (event, parsed)
        })
        .collect()
}

/// The indices each session's messages name, by session. They are the
/// unauthenticated ones, only to fill the caches; the check uses the
/// decrypted index and loads what the cache lacks.
type Named<'e> = BTreeMap<&'e str, Vec<u32>>;

/// Caches every session of the batch; returns the indices its messages
/// name, by session, for [`preload_uses`].
fn preload_sessions<'p, 'e: 'p>(
    txn: &mut impl StoreTxn,
    cache: &BatchCache,
    room_id: &str,
    parsed: impl Iterator<Item = &'p Option<Parsed<'e>>>,
) -> Result<Named<'e>, StoreError> {
    let mut indices: Named<'e> = BTreeMap::new();
    for item in parsed.flatten() {
        let index = item.message.as_ref().ok().map(MegolmMessage::message_index);
        let listed = indices.entry(item.session_id).or_default();
        listed.extend(index);
    }
    for session_id in indices.keys() {
        let cached = cache.sessions.borrow().get(room_id, session_id).is_some();
        if !cached {
            let Some(record) = txn.load_inbound(room_id, session_id)? else {
                continue;
            };
            let entry = Entry::from_record(record);
            cache
                .sessions
                .borrow_mut()
                .insert(room_id, session_id, entry);
        }
    }
    Ok(indices)
}

/// MEG-08: caches the uses recorded for the indices the batch's messages
/// name, one query per session for the batch.
fn preload_uses(
    txn: &mut impl StoreTxn,
    cache: &BatchCache,
    room_id: &str,
    indices: &Named<'_>,
) -> Result<(), StoreError> {
    for (session_id, indices) in indices {
        let found = txn.load_index_uses(room_id, session_id, indices)?;
        let mut known: BTreeMap<u32, Option<IndexUse>> =
            indices.iter().map(|i| (*i, None)).collect();
        known.extend(found.into_iter().map(|(index, used)| (index, Some(used))));
        let mut uses = cache.index_uses.borrow_mut();
        match uses.get_mut(room_id, session_id) {
            Some(held) => held.extend(known),
            None => {
                uses.insert(room_id, session_id, known);
            }
        }
    }
    Ok(())
}

/// Takes the chunk's sessions out of their cache entries (which stay, for
/// the checks of the chunk before), grouped with their messages.
fn lend<'e>(cache: &BatchCache, room_id: &str, chunk: Vec<Option<Parsed<'e>>>) -> Vec<Lent<'e>> {
    let mut groups: BTreeMap<&str, Vec<Message>> = BTreeMap::new();
    for item in chunk.into_iter().flatten() {
        groups
            .entry(item.session_id)
            .or_default()
            .push((item.at, item.message));
    }
    let mut sessions = cache.sessions.borrow_mut();
    groups
        .into_iter()
        .filter_map(|(session_id, messages)| {
            let session = sessions.get_mut(room_id, session_id)?.session.take()?;
            Some(Lent {
                session_id,
                session,
                messages,
            })
        })
        .collect()
}

/// A chunk decrypted: each session, advanced, with its results.
type Computed<'e> = Vec<(&'e str, InboundGroupSession, Vec<(usize, AheadResult)>)>;

/// Decrypts a chunk, one session per core. Sessions advance, which
/// changes no result: earlier indices stay readable.
fn compute<'e>(room_id: &str, work: Vec<Lent<'e>>) -> Computed<'e> {
    use rayon::prelude::*;
    work.into_par_iter()
        .map(|mut lent| {
            let results = lent
                .messages
                .into_iter()
                .map(|(at, message)| {
                    let result = message.and_then(|m| {
                        let mut done = lent.session.decrypt(&m).map_err(AheadError::Decrypt)?;
                        // The plaintext is parsed here too, on this core,
                        // and freed here once it is.
                        let parsed = Payload::parse(&done.plaintext, room_id);
                        if parsed.is_some() {
                            done.plaintext = Vec::new();
                        }
                        Ok((done, parsed))
                    });
                    (at, result)
                })
                .collect();
            (lent.session_id, lent.session, results)
        })
        .collect()
}

/// Returns a chunk's sessions to their entries; its results, by place
/// in the chunk that starts at `start`.
fn install(
    cache: &BatchCache,
    room_id: &str,
    computed: Computed<'_>,
    start: usize,
    len: usize,
) -> Vec<Option<AheadResult>> {
    let mut results: Vec<Option<AheadResult>> = (0..len).map(|_| None).collect();
    for (session_id, session, done) in computed {
        if let Some(entry) = cache.sessions.borrow_mut().get_mut(room_id, session_id) {
            entry.session = Some(session);
        }
        for (at, result) in done {
            if let Some(slot) = at.checked_sub(start).and_then(|i| results.get_mut(i)) {
                *slot = Some(result);
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks cover every event once, in order, none larger than a
    /// step, and the last one checked alone is small.
    #[test]
    fn chunks_cover_the_timeline_and_end_small() {
        for len in [0, 1, 31, 32, 33, 127, 128, 129, 160, 161, 1000, 1024] {
            let bounds = chunk_bounds(len);
            let mut next = 0;
            for range in &bounds {
                assert_eq!(range.start, next, "{len}: {bounds:?}");
                assert!(
                    !range.is_empty() && range.len() <= CHUNK,
                    "{len}: {bounds:?}"
                );
                next = range.end;
            }
            assert_eq!(next, len, "{len}: {bounds:?}");
            if let Some(last) = bounds.last() {
                assert!(last.len() <= LAST_CHUNK, "{len}: {bounds:?}");
            }
        }
    }
}

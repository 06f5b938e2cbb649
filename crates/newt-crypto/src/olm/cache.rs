//! Live Olm sessions kept between inputs, so sending to a device does not
//! decode the session the previous send encoded. Valid at the store's Olm
//! revision (see `revision_cache`); a save of other peers' sessions since
//! drops only those peers, when the store lists them.

use super::sessions::LiveSession;
use crate::revision_cache::RevisionCache;
use crate::store::{StoreError, StoreTxn};
use std::collections::BTreeMap;

/// Sessions kept at most; past this the cache starts over (about 4 KiB
/// each).
const CAPACITY: usize = 4096;

/// Committed live sessions by peer identity key: the one to encrypt with.
/// A taken session leaves its slot empty, and keeping it fills the slot
/// again: a send of a thousand sessions then neither rebuilds the map nor
/// copies a key.
#[derive(Debug, Default)]
pub(crate) struct OlmCache(RevisionCache<BTreeMap<String, Option<LiveSession>>>);

/// What [`OlmCache::take`] found, to hand back to [`OlmCache::keep`].
pub(crate) struct Taken {
    /// The store's revision when the sessions were taken.
    before: Option<u64>,
    /// Per requested key, the cached session if there was a current one.
    pub(crate) sessions: Vec<Option<LiveSession>>,
}

impl OlmCache {
    /// Removes and returns the cached sessions for `keys`.
    pub(crate) fn take(
        &self,
        txn: &mut impl StoreTxn,
        keys: &[String],
    ) -> Result<Taken, StoreError> {
        let before = txn.olm_revision()?;
        // Saves since the cache's revision (a received message, another
        // process) drop only the peers they touched, when the store can
        // list them; otherwise `current` empties the cache.
        if let (Some(stamp), Some(now)) = (self.0.stamp(), before)
            && stamp != now
            && let Some(changed) = txn.olm_changes_since(stamp)?
        {
            self.0.advance(stamp, now, |live| {
                for key in &changed {
                    live.remove(key);
                }
            });
        }
        let sessions = self.0.current(before, |live| {
            keys.iter()
                .map(|k| live.get_mut(k).and_then(Option::take))
                .collect()
        });
        Ok(Taken { before, sessions })
    }

    /// Call right after saving `sessions` (and nothing else): once the
    /// transaction commits they are cached at the revision the save made,
    /// unless the cache moved on meanwhile.
    pub(crate) fn keep(
        &self,
        txn: &mut impl StoreTxn,
        taken: &Taken,
        sessions: Vec<LiveSession>,
    ) -> Result<(), StoreError> {
        let after = txn.olm_revision()?;
        self.0.after_commit(txn, taken.before, after, move |live| {
            for session in sessions {
                match live.get_mut(&session.sender_key) {
                    Some(slot) => *slot = Some(session),
                    None => {
                        // Full: start over (slots count, empty or not).
                        if live.len() >= CAPACITY {
                            live.clear();
                        }
                        live.insert(session.sender_key.clone(), Some(session));
                    }
                }
            }
        });
        Ok(())
    }
}

//! Live Olm sessions kept between inputs, so sending to a device does not
//! decode the session the previous send encoded.
//!
//! A stale ratchet state would encrypt two messages with one message key,
//! so the cache holds committed states only (filled by
//! `StoreTxn::after_commit`), stamped with the store's Olm revision. Any
//! save of any Olm session, by any path or process, changes that revision,
//! and an entry is used only while the store still shows its stamp.

use super::sessions::LiveSession;
use crate::store::{StoreError, StoreTxn};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Sessions kept at most; past this the cache starts over (about 4 KiB
/// each).
const CAPACITY: usize = 4096;

#[derive(Default)]
struct Inner {
    /// The store's Olm revision the entries are valid at.
    revision: Option<u64>,
    /// Per peer identity key: the session to encrypt with.
    live: BTreeMap<String, LiveSession>,
}

/// Committed live sessions by peer identity key.
#[derive(Default, Clone)]
pub(crate) struct OlmCache(Arc<Mutex<Inner>>);

impl std::fmt::Debug for OlmCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OlmCache").finish_non_exhaustive()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic elsewhere cannot leave an entry half-written: inserts and
    // removals are single map operations.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What [`OlmCache::take`] found, to hand back to [`OlmCache::keep`].
pub(crate) struct Taken {
    /// The store's revision when the sessions were taken.
    before: Option<u64>,
    /// Per requested key, the cached session if there was a current one.
    pub(crate) sessions: Vec<Option<LiveSession>>,
}

impl OlmCache {
    /// Removes and returns the cached sessions for `keys`; a cache that
    /// is not current with the store is emptied first.
    pub(crate) fn take(
        &self,
        txn: &mut impl StoreTxn,
        keys: &[String],
    ) -> Result<Taken, StoreError> {
        let before = txn.olm_revision()?;
        let mut inner = lock(&self.0);
        if before.is_none() || inner.revision != before {
            inner.live.clear();
            inner.revision = before;
        }
        let sessions = keys.iter().map(|k| inner.live.remove(k)).collect();
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
        let (Some(before), Some(after)) = (taken.before, after) else {
            return Ok(());
        };
        let inner = Arc::clone(&self.0);
        txn.after_commit(Box::new(move || {
            let mut inner = lock(&inner);
            if inner.revision != Some(before) {
                return;
            }
            inner.revision = Some(after);
            if inner.live.len() + sessions.len() > CAPACITY {
                inner.live.clear();
            }
            for session in sessions {
                inner.live.insert(session.sender_key.clone(), session);
            }
        }));
        Ok(())
    }
}

//! Inbound Megolm sessions kept between inputs, their ratchets advanced,
//! so a sync neither decodes them again nor re-advances them from their
//! first index. The scheme is the Olm cache's (`olm::cache`): entries
//! enter after commit only, and hold while the store's inbound revision
//! (changed by every inbound session save, by any process) is unchanged,
//! so a session that was replaced or re-imported is never used stale.

use crate::store::{InboundInfo, StoreError, StoreTxn};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use vodozemac::megolm::InboundGroupSession;

/// Sessions kept at most; a larger set is not kept at all.
const CAPACITY: usize = 4096;

/// A live session, its facts, and the room its record names.
pub(crate) type Entry = (InboundGroupSession, InboundInfo, String);
/// Live sessions by room and session ID.
pub(crate) type Sessions = BTreeMap<(String, String), Entry>;

#[derive(Default)]
struct Inner {
    revision: Option<u64>,
    sessions: Sessions,
}

/// Committed inbound sessions, by room and session ID.
#[derive(Default, Clone)]
pub(crate) struct InboundCache(Arc<Mutex<Inner>>);

impl std::fmt::Debug for InboundCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundCache").finish_non_exhaustive()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Entries are replaced whole: a panic elsewhere leaves none half-made.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InboundCache {
    /// Takes every cached session, for one input; a cache that is not
    /// current with the store is emptied first. Returns the revision seen.
    pub(crate) fn take(
        &self,
        txn: &mut impl StoreTxn,
    ) -> Result<(Option<u64>, Sessions), StoreError> {
        let before = txn.inbound_revision()?;
        let mut inner = lock(&self.0);
        if before.is_none() || inner.revision != before {
            inner.sessions.clear();
            inner.revision = before;
        }
        Ok((before, std::mem::take(&mut inner.sessions)))
    }

    /// At the end of the input: unless an inbound session was saved since
    /// [`Self::take`], `sessions` are cached again once the transaction
    /// commits.
    pub(crate) fn keep(
        &self,
        txn: &mut impl StoreTxn,
        before: Option<u64>,
        sessions: Sessions,
    ) -> Result<(), StoreError> {
        let Some(before) = before else {
            return Ok(());
        };
        if txn.inbound_revision()? != Some(before) || sessions.len() > CAPACITY {
            return Ok(());
        }
        let inner = Arc::clone(&self.0);
        txn.after_commit(Box::new(move || {
            let mut inner = lock(&inner);
            if inner.revision == Some(before) {
                inner.sessions = sessions;
            }
        }));
        Ok(())
    }
}

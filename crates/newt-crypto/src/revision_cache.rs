//! The mechanism both session caches share: a value that holds only
//! committed state, stamped with a store revision.
//!
//! A stale session would be wrong (a stale Olm ratchet would encrypt two
//! messages with one message key), so: the value changes only from
//! `StoreTxn::after_commit`, never on rollback, and only while the stamp
//! is still the revision the change started from; it is read only while
//! the store still shows its stamp, and emptied otherwise. Every save of
//! what a revision covers, by any path or process, changes it to a fresh
//! random value (see `StoreTxn::olm_revision`).

use crate::shared::lock;
use crate::store::StoreTxn;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Stamped<T> {
    revision: Option<u64>,
    value: T,
}

/// A value valid at one store revision; clones share it.
pub(crate) struct RevisionCache<T>(Arc<Mutex<Stamped<T>>>);

impl<T: Default> Default for RevisionCache<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Stamped {
            revision: None,
            value: T::default(),
        })))
    }
}

impl<T> std::fmt::Debug for RevisionCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionCache").finish_non_exhaustive()
    }
}

impl<T: Default + Send + 'static> RevisionCache<T> {
    /// Runs `f` on the value, first emptied and restamped unless it is
    /// current at `revision` (the store's, read in this transaction).
    pub(crate) fn current<R>(&self, revision: Option<u64>, f: impl FnOnce(&mut T) -> R) -> R {
        let mut stamped = lock(&self.0);
        if revision.is_none() || stamped.revision != revision {
            stamped.value = T::default();
            stamped.revision = revision;
        }
        f(&mut stamped.value)
    }

    /// The revision the value is stamped with.
    pub(crate) fn stamp(&self) -> Option<u64> {
        lock(&self.0).revision
    }

    /// Brings a value stamped `from` to revision `to` by `drop_changed`,
    /// which must remove everything saved between the two (the store
    /// listed it). Does nothing if the stamp moved meanwhile.
    pub(crate) fn advance(&self, from: u64, to: u64, drop_changed: impl FnOnce(&mut T)) {
        let mut stamped = lock(&self.0);
        if stamped.revision == Some(from) {
            drop_changed(&mut stamped.value);
            stamped.revision = Some(to);
        }
    }

    /// Once `txn` commits, and only if the value is still stamped
    /// `before`: restamps it `after` and applies `change`. `before` and
    /// `after` must bracket exactly the saves `change` reflects.
    pub(crate) fn after_commit(
        &self,
        txn: &mut impl StoreTxn,
        before: Option<u64>,
        after: Option<u64>,
        change: impl FnOnce(&mut T) + Send + 'static,
    ) {
        let (Some(before), Some(after)) = (before, after) else {
            return;
        };
        let shared = Arc::clone(&self.0);
        txn.after_commit(Box::new(move || {
            let mut stamped = lock(&shared);
            if stamped.revision == Some(before) {
                stamped.revision = Some(after);
                change(&mut stamped.value);
            }
        }));
    }
}

impl<K: Ord + Send + 'static, V: Send + 'static> RevisionCache<BTreeMap<K, V>> {
    /// Once `txn` commits, adds `entries` read (not written) at
    /// `revision`: stamped with it, so any later save of what it covers
    /// (this transaction's too) retires them. Past `capacity` entries the
    /// map starts over.
    pub(crate) fn keep_read(
        &self,
        txn: &mut impl StoreTxn,
        revision: Option<u64>,
        entries: Vec<(K, V)>,
        capacity: usize,
    ) {
        self.after_commit(txn, revision, revision, move |known| {
            if known.len() + entries.len() > capacity {
                known.clear();
            }
            known.extend(entries);
        });
    }
}

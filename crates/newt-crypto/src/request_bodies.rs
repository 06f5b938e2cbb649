//! Bodies of the `/sendToDevice` requests this machine queued, kept so
//! that handing them out does not read back the megabytes it just wrote.
//! A request's body never changes (TD-02) and its ID is never reused, so
//! an entry is right for as long as its request exists, committed or not:
//! one from a rolled-back transaction is never asked for, and entries
//! whose requests are gone are dropped whenever the pending list is read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bodies kept at most; past this the cache starts over.
const CAPACITY: usize = 64;

#[derive(Default)]
pub(crate) struct RequestBodies(Mutex<BTreeMap<String, Arc<String>>>);

impl std::fmt::Debug for RequestBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBodies").finish_non_exhaustive()
    }
}

impl RequestBodies {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<String>>> {
        // Every change is one map operation: a panic elsewhere cannot
        // leave the map half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, request_id: &str, body: Arc<String>) {
        let mut bodies = self.lock();
        if bodies.len() >= CAPACITY {
            bodies.clear();
        }
        bodies.insert(request_id.to_owned(), body);
    }

    pub(crate) fn holds(&self, request_id: &str) -> bool {
        self.lock().contains_key(request_id)
    }

    pub(crate) fn get(&self, request_id: &str) -> Option<Arc<String>> {
        self.lock().get(request_id).cloned()
    }

    pub(crate) fn remove(&self, request_id: &str) {
        self.lock().remove(request_id);
    }

    /// Drops the bodies of requests not in `pending`.
    pub(crate) fn retain(&self, pending: &BTreeSet<&str>) {
        self.lock().retain(|id, _| pending.contains(id.as_str()));
    }
}

//! Bodies of the `/sendToDevice` requests this machine queued, kept so
//! that handing them out does not read back the megabytes it just wrote.
//! A request's body never changes (TD-02) and its ID is never reused, so
//! an entry is right for as long as its request exists, committed or not:
//! one from a rolled-back transaction is never asked for, and entries
//! whose requests are gone are dropped whenever the pending list is read.
//! A room key's body is kept nowhere else (`PendingKind::RoomKey`): it is
//! pinned, never dropped to make room, since making it again costs an
//! encryption per device.

use crate::shared::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Unpinned bodies kept at most; past this they are dropped.
const CAPACITY: usize = 64;

/// A body, and whether it is pinned.
type Body = (Arc<String>, bool);

#[derive(Default)]
pub(crate) struct RequestBodies(Arc<Mutex<BTreeMap<String, Body>>>);

impl std::fmt::Debug for RequestBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBodies").finish_non_exhaustive()
    }
}

impl RequestBodies {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Body>> {
        lock(&self.0)
    }

    /// Keeps a body its stored request also has.
    pub(crate) fn insert(&self, request_id: &str, body: Arc<String>) {
        let mut bodies = self.lock();
        if bodies.values().filter(|(_, pinned)| !pinned).count() >= CAPACITY {
            bodies.retain(|_, (_, pinned)| *pinned);
        }
        bodies.insert(request_id.to_owned(), (body, false));
    }

    /// Keeps a body that is stored nowhere else, until its request goes.
    pub(crate) fn pin(&self, request_id: &str, body: Arc<String>) {
        self.lock().insert(request_id.to_owned(), (body, true));
    }

    /// [`Self::pin`] once `txn` commits: a body made again advanced Olm
    /// sessions in `txn`, and must never go out if their state is lost.
    pub(crate) fn pin_on_commit(
        &self,
        txn: &mut impl crate::store::StoreTxn,
        request_id: &str,
        body: Arc<String>,
    ) {
        let (shared, id) = (Arc::clone(&self.0), request_id.to_owned());
        txn.after_commit(Box::new(move || {
            lock(&shared).insert(id, (body, true));
        }));
    }

    pub(crate) fn holds(&self, request_id: &str) -> bool {
        self.lock().contains_key(request_id)
    }

    pub(crate) fn get(&self, request_id: &str) -> Option<Arc<String>> {
        self.lock()
            .get(request_id)
            .map(|(body, _)| Arc::clone(body))
    }

    pub(crate) fn remove(&self, request_id: &str) {
        self.lock().remove(request_id);
    }

    /// Drops the bodies of requests not in `pending`.
    pub(crate) fn retain(&self, pending: &BTreeSet<&str>) {
        self.lock().retain(|id, _| pending.contains(id.as_str()));
    }
}

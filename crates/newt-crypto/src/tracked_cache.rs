//! Users known to be tracked, kept between inputs: a client tracks a
//! room's members before every message it sends (TRK-01), and nearly all
//! of them already are. Valid at the store's tracking revision (see
//! `revision_cache`): any save of a tracking record, by any path or
//! process, retires what is known.

use crate::revision_cache::RevisionCache;
use crate::store::{StoreError, StoreTxn};
use crate::tracking;
use ruma::OwnedUserId;
use std::collections::BTreeMap;

/// Users kept at most; past this the set starts over.
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct TrackedCache(RevisionCache<BTreeMap<OwnedUserId, ()>>);

impl TrackedCache {
    /// Starts tracking `users` (see [`tracking::track`]); the store is
    /// asked only about those not known to be tracked.
    pub(crate) fn track(
        &self,
        txn: &mut impl StoreTxn,
        users: &[OwnedUserId],
    ) -> Result<(), StoreError> {
        let revision = txn.tracking_revision()?;
        let unknown: Vec<OwnedUserId> = self.0.current(revision, |known| {
            let found = crate::sorted::lookup_all(known, users);
            users
                .iter()
                .zip(found)
                .filter(|(_, known)| known.is_none())
                .map(|(user, _)| user.clone())
                .collect()
        });
        if unknown.is_empty() {
            return Ok(());
        }
        let untracked = txn.untracked_users(&unknown)?;
        if !untracked.is_empty() {
            // Saves change the revision: the next call learns them all.
            return tracking::track(txn, &untracked);
        }
        let keep = unknown.into_iter().map(|user| (user, ())).collect();
        self.0.keep_read(txn, revision, keep, CAPACITY);
        Ok(())
    }
}

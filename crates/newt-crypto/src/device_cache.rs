//! Device records with their keys parsed, kept between inputs: every room
//! message checks who must get the room key, which reads every device in
//! the room. Valid at the store's device revision (see `revision_cache`).

use crate::device_keys::VerifiedDeviceKeys;
use crate::revision_cache::RevisionCache;
use crate::store::{DeviceRecord, StoreError, StoreTxn};
use rayon::prelude::*;
use ruma::OwnedUserId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Devices kept at most (about 2 KiB each); past this the cache starts
/// over.
const CAPACITY: usize = 20_000;

/// One user's devices as stored, in the store's order.
pub(crate) type UserDevices = Arc<Vec<(VerifiedDeviceKeys, DeviceRecord)>>;

/// One device of a cached list.
pub(crate) struct Picked {
    list: UserDevices,
    at: usize,
}

impl Picked {
    /// Every device of `list` (the only way to make one: `at` is always
    /// in range).
    pub(crate) fn each(list: &UserDevices) -> impl Iterator<Item = Picked> + '_ {
        (0..list.len()).map(|at| Self {
            list: Arc::clone(list),
            at,
        })
    }

    pub(crate) fn keys(&self) -> &VerifiedDeviceKeys {
        &self.list[self.at].0
    }

    pub(crate) fn record(&self) -> &DeviceRecord {
        &self.list[self.at].1
    }
}

/// Committed device lists by user.
#[derive(Debug, Default)]
pub(crate) struct DeviceCache(RevisionCache<BTreeMap<OwnedUserId, UserDevices>>);

impl DeviceCache {
    /// The devices of each user, in the order of `users`: from the cache
    /// when it is current, the rest loaded (and kept once `txn` commits).
    pub(crate) fn devices_of(
        &self,
        txn: &mut impl StoreTxn,
        users: &[OwnedUserId],
    ) -> Result<Vec<UserDevices>, StoreError> {
        let revision = txn.device_revision()?;
        let mut found: Vec<Option<UserDevices>> = self.0.current(revision, |known| {
            crate::sorted::lookup_all(known, users)
                .into_iter()
                .map(Option::<&UserDevices>::cloned)
                .collect()
        });
        let missing: Vec<OwnedUserId> = users
            .iter()
            .zip(&found)
            .filter(|(_, hit)| hit.is_none())
            .map(|(user, _)| user.clone())
            .collect();
        if missing.is_empty() {
            return Ok(found.into_iter().flatten().collect());
        }
        // Parsing the keys is independent per device: use every core.
        let loaded: Vec<UserDevices> = txn
            .load_devices_of(&missing)?
            .into_par_iter()
            .map(|records| {
                records
                    .into_iter()
                    .map(|record| Ok((VerifiedDeviceKeys::from_record(&record)?, record)))
                    .collect::<Result<Vec<_>, StoreError>>()
                    .map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        let mut fresh = loaded.iter();
        for slot in found.iter_mut().filter(|slot| slot.is_none()) {
            *slot = Some(fresh.next().cloned().unwrap_or_default());
        }
        // Read, not written: stamped with the revision they were read at,
        // so any later device save (this transaction's too) retires them.
        let keep: Vec<(OwnedUserId, UserDevices)> = missing.into_iter().zip(loaded).collect();
        self.0
            .after_commit(txn, revision, revision, move |known| add(known, keep));
        Ok(found.into_iter().flatten().collect())
    }

    /// Call before saving a `/keys/query` response's devices: the revision
    /// the saves start from, with the cache brought to it.
    pub(crate) fn before_saves(&self, txn: &mut impl StoreTxn) -> Result<Option<u64>, StoreError> {
        let revision = txn.device_revision()?;
        self.0.current(revision, |_| ());
        Ok(revision)
    }

    /// Call right after the saves (and no other device save) with each
    /// user's whole list as the store now holds it: once `txn` commits the
    /// lists are cached at the revision the saves made, so the share and
    /// the claim that follow a query read no device from the store.
    pub(crate) fn saved(
        &self,
        txn: &mut impl StoreTxn,
        before: Option<u64>,
        lists: Vec<(OwnedUserId, Vec<(VerifiedDeviceKeys, DeviceRecord)>)>,
    ) -> Result<(), StoreError> {
        let after = txn.device_revision()?;
        let keep: Vec<(OwnedUserId, UserDevices)> = lists
            .into_iter()
            .map(|(user, list)| (user, Arc::new(list)))
            .collect();
        self.0
            .after_commit(txn, before, after, move |known| add(known, keep));
        Ok(())
    }
}

/// Adds lists to the cache, starting over past [`CAPACITY`].
fn add(known: &mut BTreeMap<OwnedUserId, UserDevices>, lists: Vec<(OwnedUserId, UserDevices)>) {
    let held: usize = known.values().map(|d| d.len()).sum();
    let adding: usize = lists.iter().map(|(_, d)| d.len()).sum();
    if held + adding > CAPACITY {
        known.clear();
    }
    known.extend(lists);
}

//! Rooms whose last key share found nothing to do. A client shares before
//! every message, and in a room of a thousand devices that share walks
//! every device to find, nearly always, that all have the key.
//!
//! What a share decides from lives in the room record (members, history
//! setting), the device records (keys, blocked, verified) and the
//! outbound session's sets (who has the key, who was told it is
//! withheld). Each has a store revision that every save of it moves to a
//! fresh value; a quiet share is remembered with all three and the
//! session and policy it ran for, and only a share that finds all five
//! unchanged is quiet again without looking. Rotation by age and count is
//! checked every time (ENC-06, ENC-07): it needs only the session's head.

use super::SharePolicy;
use crate::shared::lock;
use crate::store::{StoreError, StoreTxn};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Rooms kept at most; past this the set starts over.
const CAPACITY: usize = 256;

/// What a quiet share ran against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quiet {
    pub(crate) session_id: String,
    pub(crate) policy: SharePolicy,
    /// The room, device and outbound-sets revisions.
    pub(crate) revisions: [u64; 3],
}

/// By room: the last share that had nothing to do.
#[derive(Debug, Default)]
pub(crate) struct QuietShares(Arc<Mutex<BTreeMap<String, Quiet>>>);

impl QuietShares {
    /// The revisions a share reads, if the store tracks all three.
    pub(crate) fn revisions(txn: &mut impl StoreTxn) -> Result<Option<[u64; 3]>, StoreError> {
        let (room, devices, sets) = (
            txn.room_revision()?,
            txn.device_revision()?,
            txn.outbound_sets_revision()?,
        );
        Ok(room.zip(devices).zip(sets).map(|((r, d), s)| [r, d, s]))
    }

    /// Whether a share in `room_id` against `now` would be quiet again.
    pub(crate) fn holds(&self, room_id: &str, now: &Quiet) -> bool {
        lock(&self.0).get(room_id) == Some(now)
    }

    /// Once `txn` commits: the share in `room_id` against `quiet` had
    /// nothing to do.
    pub(crate) fn remember(&self, txn: &mut impl StoreTxn, room_id: &str, quiet: Quiet) {
        let (rooms, room_id) = (Arc::clone(&self.0), room_id.to_owned());
        txn.after_commit(Box::new(move || {
            let mut rooms = lock(&rooms);
            if rooms.len() >= CAPACITY && !rooms.contains_key(&room_id) {
                rooms.clear();
            }
            rooms.insert(room_id, quiet);
        }));
    }
}

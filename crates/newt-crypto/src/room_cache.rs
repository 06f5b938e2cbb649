//! Room records kept between inputs: a room's key is shared, and its
//! recipients listed, before every message, and a large room's member
//! list is thousands of entries to read and decode each time. Valid at
//! the store's room revision (see `revision_cache`).

use crate::revision_cache::RevisionCache;
use crate::store::{RoomRecord, StoreError, StoreTxn};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Rooms kept at most; past this the cache starts over.
const CAPACITY: usize = 256;

/// Committed room records by room ID.
#[derive(Debug, Default)]
pub(crate) struct RoomCache(RevisionCache<BTreeMap<String, Arc<RoomRecord>>>);

impl RoomCache {
    /// The room `room_id`: from the cache when it is current, or loaded
    /// (and kept once `txn` commits).
    pub(crate) fn room(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
    ) -> Result<Option<Arc<RoomRecord>>, StoreError> {
        let revision = txn.room_revision()?;
        if let Some(hit) = self
            .0
            .current(revision, |known| known.get(room_id).cloned())
        {
            return Ok(Some(hit));
        }
        let Some(room) = txn.load_room(room_id)? else {
            return Ok(None);
        };
        let room = Arc::new(room);
        let keep = vec![(room_id.to_owned(), Arc::clone(&room))];
        self.0.keep_read(txn, revision, keep, CAPACITY);
        Ok(Some(room))
    }
}

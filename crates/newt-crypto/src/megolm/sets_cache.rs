//! Outbound sessions' shared-with and withheld sets kept between inputs:
//! the share before every message walks the room's set (a thousand
//! entries in a large room) to find who lacks the key. Valid at the
//! store's outbound sets revision (see `revision_cache`), which only a
//! whole outbound save moves: a room event saves the head alone.

use crate::revision_cache::RevisionCache;
use crate::store::{SharedWith, StoreError, StoreTxn, WithheldFrom};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An outbound session's sets.
pub(crate) type Sets = (SharedWith, WithheldFrom);

/// Rooms kept at most; past this the cache starts over.
const CAPACITY: usize = 256;

/// By room: the session the sets belong to, and the sets.
#[derive(Debug, Default)]
pub(crate) struct SetsCache(RevisionCache<BTreeMap<String, (String, Arc<Sets>)>>);

impl SetsCache {
    /// The sets of the room's outbound session `session_id`: from the
    /// cache when current, else loaded (and kept once `txn` commits).
    /// `None` if the store's session is no longer that one.
    pub(crate) fn load(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<Arc<Sets>>, StoreError> {
        let revision = txn.outbound_sets_revision()?;
        let hit = self.0.current(revision, |known| {
            known
                .get(room_id)
                .filter(|(session, _)| session == session_id)
                .map(|(_, sets)| Arc::clone(sets))
        });
        if hit.is_some() {
            return Ok(hit);
        }
        let Some(record) = txn.load_outbound(room_id)? else {
            return Ok(None);
        };
        if record.session_id != session_id {
            return Ok(None);
        }
        let sets = Arc::new((record.state.shared_with, record.state.withheld));
        let keep = vec![(room_id.to_owned(), (record.session_id, Arc::clone(&sets)))];
        self.0.keep_read(txn, revision, keep, CAPACITY);
        Ok(Some(sets))
    }
}

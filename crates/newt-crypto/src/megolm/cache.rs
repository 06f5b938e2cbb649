//! Inbound Megolm sessions kept between inputs, their ratchets advanced,
//! so a sync neither decodes them again nor re-advances them from their
//! first index. Valid at the store's inbound revision (see
//! `revision_cache`), so a session replaced or re-imported is never used
//! stale.

use super::by_session::BySession;
use crate::revision_cache::RevisionCache;
use crate::store::{InboundInfo, InboundRecord, StoreError, StoreTxn};
use std::sync::Arc;
use vodozemac::megolm::InboundGroupSession;

/// Sessions kept at most; a larger set is not kept at all.
const CAPACITY: usize = 4096;

/// A live session, its facts, and the room its record names.
pub(crate) struct Entry {
    /// `None` while lent to a chunk being decrypted ahead.
    pub(crate) session: Option<InboundGroupSession>,
    /// Shared: every event of the session hands it on.
    pub(crate) info: Arc<InboundInfo>,
    pub(crate) record_room: String,
}

impl Entry {
    pub(crate) fn from_record(record: InboundRecord) -> Self {
        Self {
            session: Some(InboundGroupSession::from_pickle(record.pickle)),
            info: Arc::new(record.info),
            record_room: record.room_id,
        }
    }
}

/// Live sessions by room and session ID.
pub(crate) type Sessions = BySession<Entry>;

/// Committed inbound sessions, by room and session ID.
#[derive(Debug, Default)]
pub(crate) struct InboundCache(RevisionCache<Sessions>);

impl InboundCache {
    /// Takes every cached session, for one input. Returns the revision
    /// seen.
    pub(crate) fn take(
        &self,
        txn: &mut impl StoreTxn,
    ) -> Result<(Option<u64>, Sessions), StoreError> {
        let before = txn.inbound_revision()?;
        Ok((before, self.0.current(before, std::mem::take)))
    }

    /// At the end of the input: unless an inbound session was saved since
    /// [`Self::take`], `sessions` are cached again once the transaction
    /// commits.
    pub(crate) fn keep(
        &self,
        txn: &mut impl StoreTxn,
        before: Option<u64>,
        mut sessions: Sessions,
    ) -> Result<(), StoreError> {
        // A session still lent out (an input that failed midway) is not
        // kept without its ratchet.
        sessions.retain(|entry| entry.session.is_some());
        if txn.inbound_revision()? != before || sessions.len() > CAPACITY {
            return Ok(());
        }
        self.0
            .after_commit(txn, before, before, move |kept| *kept = sessions);
        Ok(())
    }
}

//! Loading, choosing and saving Olm sessions.

use crate::store::{OlmSessionRecord, StoreError, StoreTxn};
use vodozemac::olm::Session;

/// A live session with its stored metadata.
pub(crate) struct LiveSession {
    pub(crate) session: Session,
    pub(crate) sender_key: String,
    pub(crate) created_at_ms: u64,
    pub(crate) last_received_at_ms: Option<u64>,
}

impl LiveSession {
    pub(crate) fn new(session: Session, sender_key: String, now_ms: u64) -> Self {
        Self {
            session,
            sender_key,
            created_at_ms: now_ms,
            last_received_at_ms: None,
        }
    }

    fn from_record(record: OlmSessionRecord) -> Self {
        Self {
            session: Session::from_pickle(record.pickle),
            sender_key: record.sender_key,
            created_at_ms: record.created_at_ms,
            last_received_at_ms: record.last_received_at_ms,
        }
    }

    pub(crate) fn to_record(&self) -> OlmSessionRecord {
        OlmSessionRecord {
            sender_key: self.sender_key.clone(),
            session_id: self.session.session_id(),
            pickle: self.session.pickle(),
            created_at_ms: self.created_at_ms,
            last_received_at_ms: self.last_received_at_ms,
        }
    }

    /// CLM-05: the most recent of last receipt and creation.
    fn freshness(&self) -> u64 {
        self.last_received_at_ms
            .unwrap_or(0)
            .max(self.created_at_ms)
    }
}

/// Every session with `sender_key`.
pub(crate) fn load(
    txn: &mut impl StoreTxn,
    sender_key: &str,
) -> Result<Vec<LiveSession>, StoreError> {
    Ok(txn
        .load_olm_sessions(sender_key)?
        .into_iter()
        .map(LiveSession::from_record)
        .collect())
}

/// The session to encrypt with (CLM-05): the one that most recently
/// received a message, a never-used one counting from its creation.
pub(crate) fn best(
    txn: &mut impl StoreTxn,
    sender_key: &str,
) -> Result<Option<LiveSession>, StoreError> {
    Ok(load(txn, sender_key)?.into_iter().max_by(|a, b| {
        a.freshness()
            .cmp(&b.freshness())
            .then_with(|| a.session.session_id().cmp(&b.session.session_id()))
    }))
}

/// Whether any session with `sender_key` exists.
pub(crate) fn exists(txn: &mut impl StoreTxn, sender_key: &str) -> Result<bool, StoreError> {
    Ok(!txn.load_olm_sessions(sender_key)?.is_empty())
}

//! The last recipients found to need no Olm session, kept at the store's
//! device revision: a client asks before every message, and in a room of
//! a thousand devices the answer is nearly always the same "none".
//!
//! Why it is safe (CLM-03): sessions are never deleted, so a device that
//! had one keeps it; everything else the answer rests on lives in device
//! records (keys, blocked, a broken session's `wants_new_session`, the
//! claim backoff), whose every save moves the device revision. An answer
//! is kept only when no device was left out for time or for a claim in
//! flight, the two inputs a revision does not cover.

use crate::Recipients;
use crate::revision_cache::RevisionCache;
use crate::store::{StoreError, StoreTxn};

/// Lists kept at most (a client sends into a few rooms in turn); past
/// this the oldest goes.
const KEPT: usize = 16;

/// Recipient lists that needed no session, valid at one device revision.
#[derive(Debug, Default)]
pub(crate) struct Settled(RevisionCache<Vec<Recipients>>);

impl Settled {
    /// The store's device revision, to hand to [`Self::remember`].
    pub(crate) fn revision(txn: &mut impl StoreTxn) -> Result<Option<u64>, StoreError> {
        txn.device_revision()
    }

    /// Whether `recipients` were found to need no session at `revision`.
    pub(crate) fn holds(&self, revision: Option<u64>, recipients: &Recipients) -> bool {
        revision.is_some()
            && self
                .0
                .current(revision, |kept| kept.iter().any(|k| k == recipients))
    }

    /// Once `txn` commits: `recipients`, read at `revision`, needed none.
    pub(crate) fn remember(
        &self,
        txn: &mut impl StoreTxn,
        revision: Option<u64>,
        recipients: &Recipients,
    ) {
        let recipients = recipients.clone();
        self.0.after_commit(txn, revision, revision, move |kept| {
            if kept.len() >= KEPT {
                kept.remove(0);
            }
            kept.push(recipients);
        });
    }
}

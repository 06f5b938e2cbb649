//! Peers known to have an Olm session with us. Sessions are never
//! deleted (a broken one is retired, and kept), so once a session is
//! committed the fact holds for good, for every process on the store:
//! deciding who needs a claim, before every message to a room, then reads
//! the store only for peers not known yet. Facts are learned only once the
//! transaction that read them commits, never from one that rolls back.

use crate::store::{StoreError, StoreTxn};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Identity keys (Curve25519, unpadded base64) known to be peers we have
/// a committed session with.
#[derive(Debug, Default)]
pub(crate) struct KnownSessions(Arc<Mutex<BTreeSet<String>>>);

/// Keys kept at most; past this the set starts over.
const CAPACITY: usize = 100_000;

impl KnownSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        crate::shared::lock(&self.0)
    }

    /// Whether a session with `sender_key` exists (OLM, CLM-03): from the
    /// set, or from the store, learned once `txn` commits.
    pub(crate) fn exists(
        &self,
        txn: &mut impl StoreTxn,
        sender_key: &str,
    ) -> Result<bool, StoreError> {
        if self.lock().contains(sender_key) {
            return Ok(true);
        }
        let found = txn.has_olm_session(sender_key)?;
        if found {
            let (known, key) = (Arc::clone(&self.0), sender_key.to_owned());
            txn.after_commit(Box::new(move || {
                let mut set = crate::shared::lock(&known);
                if set.len() >= CAPACITY {
                    set.clear();
                }
                set.insert(key);
            }));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::olm::sessions::LiveSession;
    use crate::store::{MemoryStore, Store};
    use vodozemac::olm::{Account, SessionConfig};

    fn session_with(bob: &mut Account) -> LiveSession {
        bob.generate_one_time_keys(1);
        let otk = *bob.one_time_keys().values().next().unwrap();
        bob.mark_keys_as_published();
        let session = Account::new()
            .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
            .unwrap();
        LiveSession::new(Box::new(session), bob.curve25519_key().to_base64(), 1)
    }

    /// A session seen only inside a transaction that rolled back is not
    /// known afterwards; a committed one is.
    #[test]
    fn only_committed_sessions_become_known() {
        let mut bob = Account::new();
        let key = bob.curve25519_key().to_base64();
        let known = KnownSessions::default();
        let mut store = MemoryStore::new();
        let mut txn = store.transaction().unwrap();
        txn.save_olm_session(session_with(&mut bob).to_record().unwrap())
            .unwrap();
        assert!(known.exists(&mut txn, &key).unwrap());
        drop(txn);
        let mut txn = store.transaction().unwrap();
        assert!(!known.exists(&mut txn, &key).unwrap());
        assert!(!known.lock().contains(&key));
        txn.save_olm_session(session_with(&mut bob).to_record().unwrap())
            .unwrap();
        assert!(known.exists(&mut txn, &key).unwrap());
        txn.commit().unwrap();
        assert!(known.lock().contains(&key));
    }
}

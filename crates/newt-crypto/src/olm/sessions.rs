//! Loading, choosing and saving Olm sessions.

use crate::store::codec::Encoded;
use crate::store::{OlmSessionRecord, StoreError, StoreTxn};
use vodozemac::olm::Session;

/// A live session with its stored metadata.
pub(crate) struct LiveSession {
    /// Boxed: several kilobytes that would otherwise be copied on moves.
    pub(crate) session: Box<Session>,
    /// The session's ID, worked out once: vodozemac hashes the keys for it.
    pub(crate) session_id: String,
    pub(crate) sender_key: String,
    pub(crate) created_at_ms: u64,
    pub(crate) last_received_at_ms: Option<u64>,
    pub(crate) retired: bool,
}

impl LiveSession {
    pub(crate) fn new(session: Box<Session>, sender_key: String, now_ms: u64) -> Self {
        Self {
            session_id: session.session_id(),
            session,
            sender_key,
            created_at_ms: now_ms,
            last_received_at_ms: None,
            retired: false,
        }
    }

    /// Decodes a stored session; damaged bytes give `Corrupt`.
    pub(crate) fn from_record(record: OlmSessionRecord) -> Result<Self, StoreError> {
        Ok(Self {
            session: Box::new(Session::from_pickle(record.pickle.decode()?)),
            // The ID it is stored under (sealed with it, in SQLite).
            session_id: record.session_id,
            sender_key: record.sender_key,
            created_at_ms: record.created_at_ms,
            last_received_at_ms: record.last_received_at_ms,
            retired: record.retired,
        })
    }

    /// The record to save, its pickle encoded here: the pickle itself
    /// (about 3.7 KiB) only ever lives on this core's stack.
    pub(crate) fn to_record(&self) -> Result<OlmSessionRecord, StoreError> {
        Ok(OlmSessionRecord {
            sender_key: self.sender_key.clone(),
            session_id: self.session_id.clone(),
            pickle: Encoded::encode(&self.session.pickle())?,
            created_at_ms: self.created_at_ms,
            last_received_at_ms: self.last_received_at_ms,
            retired: self.retired,
        })
    }
}

/// CLM-05: the most recent of last receipt and creation.
fn freshness(record: &OlmSessionRecord) -> u64 {
    record
        .last_received_at_ms
        .unwrap_or(0)
        .max(record.created_at_ms)
}

/// The record to encrypt with (CLM-05): the one that most recently
/// received a message, a never-used one counting from its creation;
/// retired (broken) sessions never. Chosen before unpickling anything.
pub(crate) fn pick_best(records: Vec<OlmSessionRecord>) -> Option<OlmSessionRecord> {
    records.into_iter().filter(|s| !s.retired).max_by(|a, b| {
        freshness(a)
            .cmp(&freshness(b))
            .then_with(|| a.session_id.cmp(&b.session_id))
    })
}

/// Every session with `sender_key`.
pub(crate) fn load(
    txn: &mut impl StoreTxn,
    sender_key: &str,
) -> Result<Vec<LiveSession>, StoreError> {
    txn.load_olm_sessions(sender_key)?
        .into_iter()
        .map(LiveSession::from_record)
        .collect()
}

/// The session to encrypt with for `sender_key` (see [`pick_best`]).
#[cfg(test)]
fn best(txn: &mut impl StoreTxn, sender_key: &str) -> Result<Option<LiveSession>, StoreError> {
    pick_best(txn.load_olm_sessions(sender_key)?)
        .map(LiveSession::from_record)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};
    use vodozemac::olm::{Account, SessionConfig};

    /// CLM-05: the session that most recently received wins; one that
    /// never received counts from its creation.
    #[test]
    fn best_is_the_most_recently_receiving_session() {
        let alice = Account::new();
        let mut bob = Account::new();
        bob.generate_one_time_keys(3);
        let key = bob.curve25519_key().to_base64();
        let mut store = MemoryStore::new();
        let mut txn = store.transaction().unwrap();
        let mut ids = Vec::new();
        for (otk, (created, received)) in
            bob.one_time_keys()
                .into_values()
                .zip([(10, Some(50)), (40, None), (20, Some(30))])
        {
            let session = alice
                .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
                .unwrap();
            ids.push(session.session_id());
            let mut live = LiveSession::new(Box::new(session), key.clone(), created);
            live.last_received_at_ms = received;
            txn.save_olm_session(live.to_record().unwrap()).unwrap();
        }
        assert_eq!(
            best(&mut txn, &key).unwrap().unwrap().session.session_id(),
            ids[0]
        );
        // A newer, never-used session beats an older receipt.
        let mut newest = load(&mut txn, &key)
            .unwrap()
            .into_iter()
            .find(|s| s.session.session_id() == ids[1])
            .unwrap();
        newest.created_at_ms = 60;
        txn.save_olm_session(newest.to_record().unwrap()).unwrap();
        assert_eq!(
            best(&mut txn, &key).unwrap().unwrap().session.session_id(),
            ids[1]
        );
        assert!(best(&mut txn, "nobody").unwrap().is_none());
    }

    /// Stores hand pickles back undecoded: damaged bytes are a typed
    /// error where the session is needed, and the store keeps them.
    #[test]
    fn damaged_pickle_bytes_are_corrupt_not_a_panic() {
        let mut store = MemoryStore::new();
        let mut txn = store.transaction().unwrap();
        for bytes in [
            vec![],
            vec![1, 0x93, 0xff],
            b"{not json".to_vec(),
            vec![9; 40],
        ] {
            let record = OlmSessionRecord {
                sender_key: "KEY".into(),
                session_id: "ID".into(),
                pickle: Encoded::from_bytes(bytes.into()),
                created_at_ms: 1,
                last_received_at_ms: None,
                retired: false,
            };
            txn.save_olm_session(record).unwrap();
            assert!(matches!(load(&mut txn, "KEY"), Err(StoreError::Corrupt(_))));
            assert_eq!(txn.load_olm_sessions("KEY").unwrap().len(), 1);
        }
    }
}

//! The store conformance suite: every store must pass it.
//!
//! Call [`run_all`] from a store crate's tests with a factory for empty
//! stores. Each check panics with a message naming what broke.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{AccountRecord, AccountState, Store, StoreTxn};
use vodozemac::olm::Account;

/// Runs every check on fresh stores made by `make`.
pub fn run_all<S: Store>(mut make: impl FnMut() -> S) {
    empty_store_has_nothing(&mut make());
    account_round_trips(&mut make());
    dropped_transaction_rolls_back(&mut make());
    values_round_trip_and_overwrite(&mut make());
}

fn state() -> AccountState {
    AccountState {
        user_id: "@alice:example.org".try_into().unwrap(),
        device_id: "ALICEDEV".into(),
        device_keys_published: false,
        fallback_created_at_ms: Some(7),
        forget_previous_fallback_at_ms: None,
        server_otk_count: Some(3),
        pending_upload: None,
    }
}

/// A new store holds no account and no values.
pub fn empty_store_has_nothing<S: Store>(store: &mut S) {
    let mut txn = store.transaction().unwrap();
    assert!(
        txn.load_account().unwrap().is_none(),
        "new store has an account"
    );
    assert!(
        txn.get_value("sync_token").unwrap().is_none(),
        "new store has a value"
    );
}

/// A committed account reads back with the same keys and state.
pub fn account_round_trips<S: Store>(store: &mut S) {
    let mut account = Account::new();
    account.generate_one_time_keys(5);
    let record = AccountRecord::new(&account, state());
    let mut txn = store.transaction().unwrap();
    txn.save_account(&record).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    let loaded = txn.load_account().unwrap().expect("account was committed");
    assert_eq!(loaded.state, state());
    let restored = Account::from_pickle(loaded.pickle);
    assert_eq!(restored.identity_keys(), account.identity_keys());
    assert_eq!(restored.one_time_keys(), account.one_time_keys());
}

/// Writes of a transaction dropped without commit are gone.
pub fn dropped_transaction_rolls_back<S: Store>(store: &mut S) {
    {
        let mut txn = store.transaction().unwrap();
        txn.save_account(&AccountRecord::new(&Account::new(), state()))
            .unwrap();
        txn.set_value("k", "v").unwrap();
    }
    let mut txn = store.transaction().unwrap();
    assert!(
        txn.load_account().unwrap().is_none(),
        "rolled-back account visible"
    );
    assert!(
        txn.get_value("k").unwrap().is_none(),
        "rolled-back value visible"
    );
}

/// Values read back and can be replaced.
pub fn values_round_trip_and_overwrite<S: Store>(store: &mut S) {
    let mut txn = store.transaction().unwrap();
    txn.set_value("sync_token", "s1").unwrap();
    assert_eq!(txn.get_value("sync_token").unwrap().as_deref(), Some("s1"));
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    txn.set_value("sync_token", "s2").unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.get_value("sync_token").unwrap().as_deref(), Some("s2"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        super::run_all(crate::store::MemoryStore::new);
    }
}

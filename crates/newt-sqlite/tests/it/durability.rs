//! Which commits are synced: any with a write made outside deferral; none
//! holding only redoable writes (counted by the store's sync counter).

use crate::fresh;
use newt_crypto::store::{Store, StoreTxn, TrackedUser};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// How many syncing commits the store has made.
fn synced(path: &Path) -> i64 {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'synced_commits'",
        [],
        |row| row.get(0),
    )
    .unwrap_or(0)
}

fn user(name: &str) -> TrackedUser {
    TrackedUser::new(format!("@{name}:example.org").try_into().unwrap())
}

#[test]
fn only_commits_with_writes_newt_cannot_redo_are_synced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.db");
    let mut store = fresh(dir.path(), "d.db");
    let start = synced(&path);
    let commit = |store: &mut newt_sqlite::SqliteStore,
                  f: &dyn Fn(&mut newt_sqlite::SqliteTxn<'_>)| {
        let mut txn = store.transaction().unwrap();
        f(&mut txn);
        txn.commit().unwrap();
        synced(&path)
    };
    // Nothing written: no sync.
    assert_eq!(commit(&mut store, &|_| {}), start);
    // Only deferred writes: no sync.
    let deferred = commit(&mut store, &|txn| {
        txn.defer_durability(true);
        txn.save_tracked_user(&user("a")).unwrap();
        txn.defer_durability(false);
    });
    assert_eq!(deferred, start);
    // A plain value, written with deferral off: synced.
    let plain = commit(&mut store, &|txn| txn.set_value("k", "v").unwrap());
    assert_eq!(plain, start + 1);
    // Deferred writes and then one that is not: synced.
    let mixed = commit(&mut store, &|txn| {
        txn.defer_durability(true);
        txn.save_tracked_user(&user("b")).unwrap();
        txn.defer_durability(false);
        txn.save_tracked_user(&user("c")).unwrap();
    });
    assert_eq!(mixed, start + 2);
    // One before deferral counts too.
    let before = commit(&mut store, &|txn| {
        txn.save_tracked_user(&user("d")).unwrap();
        txn.defer_durability(true);
        txn.save_tracked_user(&user("e")).unwrap();
    });
    assert_eq!(before, start + 3);
    // Everything committed is there, synced or not.
    let mut txn = store.transaction().unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        let id: newt_crypto::ruma::OwnedUserId = format!("@{name}:example.org").try_into().unwrap();
        assert!(txn.load_tracked_user(&id).unwrap().is_some(), "{name}");
    }
}

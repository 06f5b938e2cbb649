//! WAL checkpoints run on the store's own thread, not inside commits.

use crate::fresh;
use newt_crypto::store::{PendingKind, PendingRequest, Store, StoreTxn};
use std::time::{Duration, Instant};

/// Commits a pending request with a `size`-byte body.
fn commit_body(store: &mut impl Store, id: &str, size: usize) {
    let mut txn = store.transaction().unwrap();
    txn.save_pending_request(&PendingRequest {
        request_id: id.into(),
        kind: PendingKind::KeysQuery {
            users: Default::default(),
        },
        body: "x".repeat(size).into(),
        seq: 0,
    })
    .unwrap();
    txn.commit().unwrap();
}

fn len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Two megabytes committed: SQLite alone would keep them in the WAL (its
/// commit-time checkpoint comes at 4 MiB by default, 64 MiB here); the
/// store's thread copies them into the database file soon after.
#[test]
fn committed_pages_reach_the_database_file_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = fresh(dir.path(), "bg.db");
    let db = dir.path().join("bg.db");
    let before = len(&db);
    commit_body(&mut store, "big", 2 << 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while len(&db) < before + (2 << 20) {
        assert!(Instant::now() < deadline, "no checkpoint within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // What was committed is all there, read through the store.
    let mut txn = store.transaction().unwrap();
    let read = txn.load_pending_request("big").unwrap().unwrap();
    assert_eq!(read.body.len(), 2 << 20);
}

/// Many commits while checkpoints run: nothing is lost. Dropping the
/// store ends its thread and closes that connection: the last connection
/// to close removes the WAL file, which an open one would keep.
#[test]
fn commits_during_checkpoints_survive_and_the_thread_ends_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("many.db-wal");
    {
        let mut store = fresh(dir.path(), "many.db");
        for i in 0..200 {
            commit_body(&mut store, &format!("r{i}"), 64 << 10);
        }
        assert!(wal.exists());
    }
    assert!(!wal.exists(), "a connection outlived the store");
    let mut store = fresh(dir.path(), "many.db");
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_pending_requests().unwrap().len(), 200);
}

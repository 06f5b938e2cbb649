//! newt-sqlite's tests: the conformance suite, persistence, and opening
//! damaged files or with the wrong key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod checkpoint;
mod durability;
mod replay;

use newt_crypto::store::{Store, StoreTxn, conformance};
use newt_crypto::{OlmMachine, Timestamp};
use newt_sqlite::{OpenError, SqliteStore, StoreKey};
use std::path::Path;

fn fresh(dir: &Path, name: &str) -> SqliteStore {
    SqliteStore::open(&dir.join(name), StoreKey::from_bytes([7; 32])).unwrap()
}

#[test]
fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::run_all(|| {
        n += 1;
        fresh(dir.path(), &format!("c{n}.db"))
    });
    // Listing changed Olm keys is optional; this store does it.
    assert!(conformance::olm_changes_follow_saves(&mut fresh(
        dir.path(),
        "changes.db"
    )));
}

/// A committed account survives closing and reopening the file.
#[test]
fn account_round_trips_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let user = newt_crypto::ruma::UserId::parse("@alice:example.org").unwrap();
    let device: newt_crypto::ruma::OwnedDeviceId = "DEV".into();
    let (ed, body) = {
        let mut store = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap();
        let mut txn = store.transaction().unwrap();
        let machine = OlmMachine::open(&mut txn, &user, &device, Timestamp(0)).unwrap();
        let body = machine.outgoing_requests(&mut txn, Timestamp(0)).unwrap()[0]
            .body()
            .to_owned();
        txn.set_value("sync_token", "s42").unwrap();
        txn.commit().unwrap();
        (machine.ed25519_key().to_owned(), body)
    };
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap();
    let mut txn = store.transaction().unwrap();
    let machine = OlmMachine::open(&mut txn, &user, &device, Timestamp(0)).unwrap();
    assert_eq!(machine.ed25519_key(), ed);
    assert_eq!(
        machine.outgoing_requests(&mut txn, Timestamp(0)).unwrap()[0].body(),
        body
    );
    assert_eq!(txn.get_value("sync_token").unwrap().as_deref(), Some("s42"));
}

/// Secrets are not stored in the clear.
#[test]
fn secrets_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    txn.save_secret("session", b"access-token-SECRETSECRET")
        .unwrap();
    let user = newt_crypto::ruma::UserId::parse("@alice:example.org").unwrap();
    OlmMachine::open(
        &mut txn,
        &user,
        &newt_crypto::ruma::OwnedDeviceId::from("DEV"),
        Timestamp(0),
    )
    .unwrap();
    txn.commit().unwrap();
    drop(store);
    let mut raw = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("store.db-wal")) {
        raw.extend(wal);
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("SECRETSECRET"));
    assert!(
        !text.contains("signing_key"),
        "account pickle stored in the clear"
    );
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(
        txn.load_secret("session").unwrap().unwrap().as_slice(),
        b"access-token-SECRETSECRET"
    );
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Checkpoints the WAL into the main file so byte comparisons see
/// everything.
fn made_store(path: &Path, key: [u8; 32]) {
    let mut store = SqliteStore::open(path, StoreKey::from_bytes(key)).unwrap();
    let mut txn = store.transaction().unwrap();
    let user = newt_crypto::ruma::UserId::parse("@alice:example.org").unwrap();
    OlmMachine::open(
        &mut txn,
        &user,
        &newt_crypto::ruma::OwnedDeviceId::from("DEV"),
        Timestamp(0),
    )
    .unwrap();
    txn.commit().unwrap();
}

/// A wrong key is a typed error and leaves the file untouched.
#[test]
fn wrong_key_is_refused_and_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    made_store(&path, [1; 32]);
    let before = file_bytes(&path);
    let err = SqliteStore::open(&path, StoreKey::from_bytes([2; 32])).unwrap_err();
    assert!(matches!(err, OpenError::WrongKey(_)), "{err}");
    assert_eq!(file_bytes(&path), before);
    // The right key still opens it, account intact.
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap();
    assert!(
        store
            .transaction()
            .unwrap()
            .load_account()
            .unwrap()
            .is_some()
    );
}

/// A truncated file is a typed error and is left as it was.
#[test]
fn truncated_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    made_store(&path, [1; 32]);
    let full = file_bytes(&path);
    assert!(
        full.len() > 8192,
        "store too small to truncate meaningfully"
    );
    let truncated = &full[..full.len() / 2];
    std::fs::write(&path, truncated).unwrap();
    let err = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
    assert_eq!(file_bytes(&path), truncated);
}

/// A file that is not a database at all is a typed error, untouched.
#[test]
fn garbage_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let garbage = b"this is not a sqlite database, just some text".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(&path, StoreKey::from_bytes([1; 32])).unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
    assert_eq!(file_bytes(&path), garbage);
}

/// The key file is created once, private, and read back the same.
#[test]
fn key_file_is_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.key");
    let db = dir.path().join("store.db");
    SqliteStore::open(&db, StoreKey::load_or_create(&path).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    SqliteStore::open(&db, StoreKey::load_or_create(&path).unwrap()).unwrap();
    std::fs::write(&path, b"short").unwrap();
    assert!(StoreKey::load_or_create(&path).is_err());
}

/// A copy of a schema fixture (`tests/data`) in a fresh directory.
fn copy_of_fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::copy(fixtures.join(name), &path).unwrap();
    (dir, path)
}

/// An MEG-08 record.
fn used(event_id: &str, origin_server_ts: u64) -> newt_crypto::store::IndexUse {
    newt_crypto::store::IndexUse {
        event_id: event_id.into(),
        origin_server_ts,
    }
}

/// Undoes migration 12 on an empty store: the MEG-08 table of schema 6.
const UNDO_12: &str = "DROP TABLE megolm_index_runs;
    CREATE TABLE megolm_index_uses (
        session INTEGER NOT NULL, idx INTEGER NOT NULL, event_id TEXT NOT NULL,
        origin_server_ts INTEGER NOT NULL, PRIMARY KEY (session, idx)) WITHOUT ROWID;";

/// Every past schema version opens, migrates and keeps its data. The
/// fixtures are written by `examples/write_fixture.rs` at each version.
#[test]
fn opens_stores_of_every_past_schema_version() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let source = entry.unwrap().path();
        if source.extension().is_none_or(|e| e != "db") {
            continue;
        }
        seen += 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::copy(&source, &path).unwrap();
        let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
        let mut txn = store.begin().unwrap();
        assert_eq!(
            txn.load_secret("access_token").unwrap().unwrap().as_slice(),
            b"fixture-token"
        );
        assert_eq!(
            txn.get_value("sync_token").unwrap().as_deref(),
            Some("s_fixture"),
            "{}",
            source.display()
        );
        let account = txn.load_account().unwrap().unwrap();
        assert_eq!(account.state.device_id.as_str(), "FIXTURE");
        let version: u32 = source.file_stem().unwrap().to_str().unwrap()[1..]
            .parse()
            .unwrap();
        if version >= 2 {
            let peer = newt_crypto::ruma::UserId::parse("@peer:example.org").unwrap();
            assert!(
                txn.load_tracked_user(&peer).unwrap().is_some(),
                "v2 tracking data lost"
            );
            // Schema 8 found the outdated users among the records.
            let ids = |users: Vec<newt_crypto::store::TrackedUser>| {
                let mut ids: Vec<_> = users.into_iter().map(|u| u.user_id).collect();
                ids.sort();
                ids
            };
            let outdated = ids(txn.load_outdated_users().unwrap());
            let mut all = txn.load_tracked_users().unwrap();
            all.retain(|u| u.tracked && u.outdated);
            assert_eq!(outdated, ids(all));
            assert!(outdated.contains(&peer), "{}", source.display());
            // Schema 11 found the tracked users among the records.
            let listed = [peer.to_owned(), "@nobody:example.org".try_into().unwrap()];
            assert_eq!(
                txn.untracked_users(&listed).unwrap(),
                listed[1..],
                "{}",
                source.display()
            );
        }
        if version >= 4 {
            let pending = txn.load_pending_requests().unwrap();
            assert_eq!(pending.len(), 1, "v4 pending request lost");
            let body: serde_json::Value = serde_json::from_str(&pending[0].body).unwrap();
            assert!(body["device_keys"]["@peer:example.org"].is_array());
        }
        if version >= 6 {
            let used = txn
                .load_index_use("!room:example.org", "fixture-session", 3)
                .unwrap();
            assert_eq!(
                used.map(|u| (u.event_id, u.origin_server_ts)),
                Some(("$fixture".to_owned(), 42)),
                "v6 index use lost"
            );
        }
        if version >= 10 {
            let settings = txn.load_room_encryption("!room:example.org").unwrap();
            assert_eq!(settings.map(|s| s.rotation_period_msgs), Some(7));
            let room = txn.load_room("!room:example.org").unwrap().unwrap();
            assert_eq!(room.encryption.map(|s| s.rotation_period_ms), Some(3000));
        }
    }
    assert!(seen >= 1, "no schema fixtures found");
}

/// A request stored before schema 4 (body inside the JSON metadata) is
/// still sent with its exact body, and its ID and order are kept.
#[test]
fn requests_stored_before_schema_4_keep_their_body() {
    let (_dir, path) = copy_of_fixture("v3.db");
    let old = newt_crypto::store::PendingRequest {
        request_id: "old-1".into(),
        kind: newt_crypto::store::PendingKind::KeysQuery {
            users: Default::default(),
        },
        body: String::from(r#"{"device_keys":{"@x:example.org":[]},"note":"\"quoted\""}"#).into(),
        seq: 7,
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO pending_requests (request_id, seq, data) VALUES (?1, ?2, ?3)",
        rusqlite::params![old.request_id, 7, serde_json::to_string(&old).unwrap()],
    )
    .unwrap();
    drop(conn);
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(txn.load_pending_requests().unwrap(), vec![old.clone()]);
    assert_eq!(txn.load_pending_request("old-1").unwrap(), Some(old));
    assert_eq!(txn.next_pending_seq().unwrap(), 8);
}

/// MEG-08 records stored before schema 6 (text keys, JSON data) are all
/// kept by the compact table, so no replay is forgotten on upgrade.
#[test]
fn index_uses_stored_before_schema_6_are_kept() {
    let (_dir, path) = copy_of_fixture("v5.db");
    let old = [
        (
            "!r:example.org",
            "s1",
            0,
            r#"{"event_id":"$a","origin_server_ts":1700000000000}"#,
        ),
        (
            "!r:example.org",
            "s1",
            9,
            r#"{"event_id":"$b","origin_server_ts":18446744073709551615}"#,
        ),
        (
            "!r:example.org",
            "s2",
            0,
            r#"{"event_id":"$c","origin_server_ts":0}"#,
        ),
        (
            "!q:example.org",
            "s1",
            0,
            r#"{"event_id":"$d","origin_server_ts":7}"#,
        ),
    ];
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (room, session, index, data) in old {
        conn.execute(
            "INSERT INTO megolm_indices (room_id, session_id, idx, data) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![room, session, index, data],
        )
        .unwrap();
    }
    drop(conn);
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(
        txn.load_index_uses("!r:example.org", "s1", &[0, 5, 9])
            .unwrap(),
        vec![
            (0, used("$a", 1_700_000_000_000)),
            (9, used("$b", u64::MAX))
        ]
    );
    assert_eq!(
        txn.load_index_use("!r:example.org", "s2", 0).unwrap(),
        Some(used("$c", 0))
    );
    assert_eq!(
        txn.load_index_use("!q:example.org", "s1", 0).unwrap(),
        Some(used("$d", 7))
    );
}

/// MEG-08 records stored before schema 12 (a row per use) become runs
/// with every byte of their event IDs and timestamps, and a use saved
/// after the upgrade replaces a migrated one of the same index.
#[test]
fn index_uses_stored_before_schema_12_are_kept() {
    let (_dir, path) = copy_of_fixture("v11.db");
    let long = format!("$ü{}:example.org", "x".repeat(300));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO megolm_index_sessions (room_id, session_id) VALUES ('!r:example.org', 's1')",
        [],
    )
    .unwrap();
    let session = conn.last_insert_rowid();
    for (index, event_id, ts) in [(0u32, "$a", 0i64), (7, &long, -1), (8, "$c", 1 << 40)] {
        conn.execute(
            "INSERT INTO megolm_index_uses (session, idx, event_id, origin_server_ts)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![session, index, event_id, ts],
        )
        .unwrap();
    }
    drop(conn);
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(
        txn.load_index_uses("!r:example.org", "s1", &[0, 1, 7, 8])
            .unwrap(),
        vec![
            (0, used("$a", 0)),
            (7, used(&long, u64::MAX)),
            (8, used("$c", 1 << 40))
        ]
    );
    txn.save_index_use("!r:example.org", "s1", 7, &used("$new", 9))
        .unwrap();
    txn.commit().unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(
        txn.load_index_use("!r:example.org", "s1", 7).unwrap(),
        Some(used("$new", 9))
    );
    assert_eq!(
        txn.load_index_use("!room:example.org", "fixture-session", 3)
            .unwrap()
            .map(|u| u.event_id),
        Some("$fixture".to_owned())
    );
}

/// Replays the `store_open` fuzz corpus: any bytes as a store file give a
/// typed error or an openable store, never a panic, and a refused file is
/// left as it was.
#[test]
fn store_open_fuzz_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/store_open");
    let mut count = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::write(&path, &data).unwrap();
        match SqliteStore::open(&path, StoreKey::from_bytes([7; 32])) {
            Ok(mut store) => {
                let mut txn = store.begin().unwrap();
                let _ = txn.load_account();
            }
            Err(_) => assert_eq!(
                std::fs::read(&path).unwrap(),
                data,
                "a refused file changed"
            ),
        }
        count += 1;
    }
    assert!(count > 0);
}

/// Schema 10 copies each encrypted room's settings out of its row into
/// `room_encryption`: a store written before it (made here by dropping
/// the table, as schema 9 had none) opens with the settings readable
/// alone, and unencrypted rooms without any.
#[test]
fn schema_10_keeps_room_encryption_apart() {
    use newt_crypto::store::{EncryptionSettings, RoomRecord};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let settings = EncryptionSettings {
        algorithm: "m.megolm.v1.aes-sha2".into(),
        rotation_period_ms: 3000,
        rotation_period_msgs: 7,
    };
    {
        let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
        let mut txn = store.begin().unwrap();
        let mut room = RoomRecord::new("!e:example.org");
        room.encryption = Some(settings.clone());
        txn.save_room(&room).unwrap();
        txn.save_room(&RoomRecord::new("!plain:example.org"))
            .unwrap();
        txn.commit().unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "{UNDO_12}
             DROP TABLE room_encryption;
             DROP INDEX tracked_users_tracked;
             ALTER TABLE tracked_users DROP COLUMN tracked;
             PRAGMA user_version = 9;"
    ))
    .unwrap();
    drop(conn);
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    assert_eq!(
        txn.load_room_encryption("!e:example.org").unwrap(),
        Some(settings)
    );
    assert_eq!(
        txn.load_room_encryption("!plain:example.org").unwrap(),
        None
    );
}

/// Schema 9 moves each outbound session's shared-with and withheld sets
/// out of its row into `outbound_sets`: a store written before it (made
/// here by putting the sets back into the row, as schema 8 kept them)
/// opens with every set in place and the row without them.
#[test]
fn schema_9_moves_outbound_sets_out_of_the_session_row() {
    use newt_crypto::store::{OutboundRecord, OutboundState, SharedAt};
    use vodozemac::megolm::{GroupSession, SessionConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let group = GroupSession::new(SessionConfig::version_1());
    let mut state = OutboundState {
        created_at_ms: 1,
        message_count: 4,
        shared_history: false,
        invalidated: false,
        shared_with: Default::default(),
        withheld: Default::default(),
        pending_requests: vec!["req".into()],
    };
    let bob = newt_crypto::ruma::OwnedUserId::try_from("@bob:example.org").unwrap();
    state
        .shared_with
        .entry(bob.clone())
        .or_default()
        .insert("B1".into(), SharedAt { index: 2 });
    state
        .withheld
        .entry(bob)
        .or_default()
        .insert("B2".into(), "m.blacklisted".into());
    {
        let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
        let mut txn = store.begin().unwrap();
        txn.save_outbound(&OutboundRecord {
            room_id: "!r:example.org".into(),
            session_id: group.session_id(),
            pickle: group.pickle(),
            state: state.clone(),
        })
        .unwrap();
        txn.commit().unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "UPDATE outbound_sessions SET data = json_set(data,
             '$.shared_with', json((SELECT json_extract(s.data, '$.shared_with')
                 FROM outbound_sets s WHERE s.room_id = outbound_sessions.room_id)),
             '$.withheld', json((SELECT json_extract(s.data, '$.withheld')
                 FROM outbound_sets s WHERE s.room_id = outbound_sessions.room_id)));
         DROP TABLE outbound_sets;
         {UNDO_12}
         DROP TABLE room_encryption;
         DROP INDEX tracked_users_tracked;
         ALTER TABLE tracked_users DROP COLUMN tracked;
         PRAGMA user_version = 8;",
    ))
    .unwrap();
    let row: String = conn
        .query_row("SELECT data FROM outbound_sessions", [], |r| r.get(0))
        .unwrap();
    assert!(row.contains("B1") && row.contains("m.blacklisted"), "{row}");
    drop(conn);

    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32])).unwrap();
    let mut txn = store.begin().unwrap();
    let out = txn.load_outbound("!r:example.org").unwrap().unwrap();
    assert_eq!(out.session_id, group.session_id());
    assert_eq!(out.state, state);
    let head = txn.load_outbound_head("!r:example.org").unwrap().unwrap();
    assert_eq!(head.state, state.without_sets());
    drop(txn);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let row: String = conn
        .query_row("SELECT data FROM outbound_sessions", [], |r| r.get(0))
        .unwrap();
    assert!(!row.contains("B1"), "the sets left the session row: {row}");
}

//! Writes a store of the current schema version for the upgrade tests:
//! `cargo run -p newt-sqlite --example write_fixture -- vN.db` when a
//! migration is added, then commit `tests/data/vN.db`.

use newt_crypto::store::StoreTxn;
use newt_crypto::{OlmMachine, Timestamp};
use newt_sqlite::{SqliteStore, StoreKey};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .ok_or("usage: write_fixture vN.db")?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let _ = std::fs::remove_file(&path);
    let mut store = SqliteStore::open(&path, StoreKey::from_bytes([9; 32]))?;
    let mut txn = store.begin()?;
    txn.save_secret("access_token", b"fixture-token")?;
    let user = newt_crypto::ruma::UserId::parse("@fixture:example.org")?;
    let device = newt_crypto::ruma::OwnedDeviceId::from("FIXTURE");
    let machine = OlmMachine::open(&mut txn, &user, &device, Timestamp(0))?;
    txn.set_value("sync_token", "s_fixture")?;
    // Schema 2: device tracking (schema 8: the peer is outdated).
    let peer = newt_crypto::ruma::OwnedUserId::try_from("@peer:example.org")?;
    txn.save_tracked_user(&newt_crypto::store::TrackedUser::new(peer))?;
    // Schema 4: a pending request (the peer's `/keys/query`).
    machine.outgoing_requests(&mut txn, Timestamp(0))?;
    // Schema 6: a MEG-08 index use.
    let used = newt_crypto::store::IndexUse {
        event_id: "$fixture".into(),
        origin_server_ts: 42,
    };
    txn.save_index_use("!room:example.org", "fixture-session", 3, &used)?;
    // Schema 10: an encrypted room's settings, kept apart.
    let mut room = newt_crypto::store::RoomRecord::new("!room:example.org");
    room.encryption = Some(newt_crypto::store::EncryptionSettings {
        algorithm: "m.megolm.v1.aes-sha2".into(),
        rotation_period_ms: 3000,
        rotation_period_msgs: 7,
    });
    txn.save_room(&room)?;
    txn.commit()?;
    drop(store);
    println!("wrote {}", path.display());
    Ok(())
}

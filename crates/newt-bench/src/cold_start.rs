//! Cold start: open a store holding many inbound sessions and decrypt one
//! event, in a fresh process so its peak memory is its own.

use crate::fixtures;
use newt_crypto::ruma::OwnedDeviceId;
use newt_crypto::store::StoreTxn;
use newt_crypto::{OlmMachine, Timestamp};
use newt_sqlite::{SqliteStore, StoreKey};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use vodozemac::megolm::{GroupSession, SessionConfig};

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const ROOM: &str = "!bench:bench.example";

fn user() -> newt_crypto::ruma::OwnedUserId {
    crate::fixtures::me().0
}

/// Writes a store with `sessions` inbound sessions and one event for the
/// last of them (untimed).
pub fn prepare(dir: &Path, sessions: usize) {
    let mut store = SqliteStore::open(&dir.join("cold.db"), StoreKey::from_bytes([3; 32]))
        .unwrap_or_else(|e| panic!("{e}"));
    let Ok(mut txn) = store.begin() else {
        unreachable!()
    };
    let device: OwnedDeviceId = crate::fixtures::me().1;
    let _ = OlmMachine::open(&mut txn, &user(), &device, NOW);
    let mut last = None;
    for _ in 0..sessions {
        let group = GroupSession::new(SessionConfig::version_1());
        let _ = txn.save_inbound(&fixtures::inbound_record(ROOM, &group));
        last = Some(group);
    }
    let _ = txn.commit();
    let Some(mut group) = last else { return };
    let message = group.encrypt(
        json!({"type": "m.room.message", "room_id": ROOM, "content": {"body": "cold"}}).to_string(),
    );
    let event = json!({"type": "m.room.encrypted", "sender": "@peer:bench.example", "event_id": "$cold",
        "origin_server_ts": 1, "room_id": ROOM, "content": {"algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": message.to_base64(), "session_id": group.session_id(), "sender_key": "peercurve", "device_id": "PEER"}});
    let _ = std::fs::write(dir.join("event.json"), event.to_string());
}

/// In the child: open, decrypt one event; print `ms peak_kb`.
pub fn child(dir: &Path) {
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("event.json")).unwrap_or_default())
            .unwrap_or_default();
    let start = Instant::now();
    let mut store = SqliteStore::open(&dir.join("cold.db"), StoreKey::from_bytes([3; 32]))
        .unwrap_or_else(|e| panic!("{e}"));
    let Ok(mut txn) = store.begin() else {
        unreachable!()
    };
    let device: OwnedDeviceId = crate::fixtures::me().1;
    let machine =
        OlmMachine::open(&mut txn, &user(), &device, NOW).unwrap_or_else(|e| panic!("{e}"));
    let decrypted = machine
        .decrypt_room_event(&mut txn, ROOM, &event, NOW)
        .ok()
        .and_then(Result::ok);
    let _ = txn.commit();
    let elapsed = start.elapsed();
    assert!(decrypted.is_some(), "cold start did not decrypt");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!("{:.1} {peak_kb}", elapsed.as_secs_f64() * 1000.0);
}

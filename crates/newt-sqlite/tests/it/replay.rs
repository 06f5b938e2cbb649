//! MEG-08 on disk: an index used by one event stays used after the store
//! is closed and opened again, in one decryption and in a large batch.

use newt_crypto::store::{InboundInfo, InboundRecord, KeySource, Store, StoreTxn};
use newt_crypto::{OlmMachine, RoomDecryptError, RoomUpdate, SyncChanges, Timestamp};
use newt_sqlite::{SqliteStore, StoreKey};
use serde_json::{Value, json};
use std::path::Path;
use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig};

const ROOM: &str = "!room:example.org";
const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn open(path: &Path) -> (SqliteStore, OlmMachine) {
    let mut store = SqliteStore::open(path, StoreKey::from_bytes([3; 32])).unwrap();
    let user = newt_crypto::ruma::UserId::parse("@me:example.org").unwrap();
    let mut txn = store.transaction().unwrap();
    let device = newt_crypto::ruma::OwnedDeviceId::from("ME");
    let machine = OlmMachine::open(&mut txn, &user, &device, NOW).unwrap();
    txn.commit().unwrap();
    (store, machine)
}

fn event(group_id: &str, message: &MegolmMessage, event_id: &str, ts: u64) -> Value {
    json!({
        "type": "m.room.encrypted", "sender": "@peer:example.org", "event_id": event_id,
        "origin_server_ts": ts, "room_id": ROOM,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": message.to_base64(),
            "session_id": group_id, "sender_key": "peercurve", "device_id": "PEER"},
    })
}

fn decrypt(
    store: &mut SqliteStore,
    machine: &OlmMachine,
    event: &Value,
) -> Result<u32, RoomDecryptError> {
    let mut txn = store.transaction().unwrap();
    let result = machine
        .decrypt_room_event(&mut txn, ROOM, event, NOW)
        .unwrap();
    txn.commit().unwrap();
    result.map(|d| d.message_index)
}

#[test]
fn used_indices_stay_used_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut group = GroupSession::new(SessionConfig::version_1());
    let inbound = InboundGroupSession::new(&group.session_key(), SessionConfig::version_1());
    let plaintext = json!({"type": "m.room.message", "room_id": ROOM, "content": {"body": "hi"}});
    // Index 0 alone, then 1..=40 in one sync: a batch large enough to be
    // decrypted ahead.
    let messages: Vec<MegolmMessage> = (0..=40)
        .map(|_| group.encrypt(plaintext.to_string()))
        .collect();
    let id = group.session_id();
    {
        let (mut store, machine) = open(&path);
        let mut txn = store.transaction().unwrap();
        txn.save_inbound(&InboundRecord {
            room_id: ROOM.into(),
            session_id: id.clone(),
            pickle: inbound.pickle(),
            info: InboundInfo {
                sender_key: "peercurve".into(),
                claimed_ed25519: "peered".into(),
                sender_user: newt_crypto::ruma::OwnedUserId::try_from("@peer:example.org").ok(),
                sender_device: Some("PEER".into()),
                first_known_index: 0,
                source: KeySource::RoomKey,
                shared_history: false,
            },
        })
        .unwrap();
        txn.commit().unwrap();
        assert_eq!(
            decrypt(&mut store, &machine, &event(&id, &messages[0], "$first", 1)),
            Ok(0)
        );
        let timeline: Vec<Value> = (1..=40)
            .map(|i| event(&id, &messages[i], &format!("$e{i}"), i as u64))
            .collect();
        let mut changes = SyncChanges::default();
        changes.rooms = vec![RoomUpdate::new(ROOM, Vec::new(), timeline, false)];
        let mut txn = store.transaction().unwrap();
        let outcome = machine
            .receive_sync_changes(&mut txn, &changes, NOW)
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(
            outcome
                .room_events
                .iter()
                .filter(|e| e.result.is_ok())
                .count(),
            40
        );
    }
    let (mut store, machine) = open(&path);
    // The same events read again; other events with their indices do not.
    assert_eq!(
        decrypt(&mut store, &machine, &event(&id, &messages[0], "$first", 1)),
        Ok(0)
    );
    assert_eq!(
        decrypt(&mut store, &machine, &event(&id, &messages[7], "$e7", 7)),
        Ok(7)
    );
    for (index, event_id, ts) in [(0, "$other", 1), (7, "$e7", 8), (40, "$late", 40)] {
        assert_eq!(
            decrypt(
                &mut store,
                &machine,
                &event(&id, &messages[index], event_id, ts)
            ),
            Err(RoomDecryptError::Replay {
                index: index as u32,
                first_event_id: if index == 0 {
                    "$first".into()
                } else {
                    format!("$e{index}")
                },
            }),
            "index {index} as {event_id}"
        );
    }
}

//! Entry points for fuzzing: each feeds arbitrary bytes to one input of
//! the machine and must never panic. The cargo-fuzz targets in `fuzz/`
//! call these, and the unit tests below replay the checked-in corpora.

use crate::store::{MemoryStore, Store, StoreTxn};
use crate::{OlmMachine, RoomUpdate, SyncChanges, Timestamp};
use serde_json::Value;

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// One account for every input: making keys would dominate each run.
fn account() -> Option<&'static (Vec<u8>, crate::store::AccountState)> {
    static ACCOUNT: std::sync::OnceLock<Option<(Vec<u8>, crate::store::AccountState)>> =
        std::sync::OnceLock::new();
    ACCOUNT
        .get_or_init(|| {
            let user = ruma::UserId::parse("@fuzz:example.org").ok()?;
            let device: ruma::OwnedDeviceId = "FUZZ".into();
            let mut store = MemoryStore::new();
            let mut txn = store.transaction().ok()?;
            OlmMachine::open(&mut txn, &user, &device, NOW).ok()?;
            let record = txn.load_account().ok()??;
            let pickle = crate::store::codec::encode_pickle(&record.pickle).ok()?;
            Some((pickle.to_vec(), record.state))
        })
        .as_ref()
}

fn machine(store: &mut MemoryStore) -> Option<OlmMachine> {
    let (pickle, state) = account()?;
    let record = crate::store::AccountRecord {
        pickle: crate::store::codec::decode_pickle(pickle).ok()?,
        state: state.clone(),
    };
    let mut txn = store.transaction().ok()?;
    txn.save_account(&record).ok()?;
    let machine = OlmMachine::open(&mut txn, &state.user_id, &state.device_id, NOW).ok()?;
    txn.commit().ok()?;
    Some(machine)
}

fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

/// A to-device event (or a list of them) through a sync.
pub fn to_device(data: &[u8]) {
    let mut store = MemoryStore::new();
    let (Some(machine), Some(value)) = (machine(&mut store), json(data)) else {
        return;
    };
    let events = match value {
        Value::Array(events) => events,
        other => vec![other],
    };
    let changes = SyncChanges {
        to_device_events: events,
        ..SyncChanges::default()
    };
    if let Ok(mut txn) = store.transaction() {
        let _ = machine.receive_sync_changes(&mut txn, &changes, NOW);
    }
}

/// A room event, decrypted directly and through a sync timeline.
pub fn room_event(data: &[u8]) {
    let mut store = MemoryStore::new();
    let (Some(machine), Some(event)) = (machine(&mut store), json(data)) else {
        return;
    };
    if let Ok(mut txn) = store.transaction() {
        let _ = machine.decrypt_room_event(&mut txn, "!r:example.org", &event, NOW);
        let _ = machine.explain_room_event(&mut txn, "!r:example.org", &event);
        let rooms = vec![RoomUpdate::new(
            "!r:example.org",
            vec![event.clone()],
            vec![event],
            true,
        )];
        let changes = SyncChanges {
            rooms,
            ..SyncChanges::default()
        };
        let _ = machine.receive_sync_changes(&mut txn, &changes, NOW);
    }
}

/// A response body for every request the machine has pending.
fn respond_to(kind: crate::RequestKind, data: &[u8]) {
    let mut store = MemoryStore::new();
    let Some(machine) = machine(&mut store) else {
        return;
    };
    let Ok(mut txn) = store.transaction() else {
        return;
    };
    let user = ruma::OwnedUserId::try_from("@peer:example.org").ok();
    if let Some(user) = user {
        let _ = machine.update_tracked_users(&mut txn, std::slice::from_ref(&user));
    }
    let body = String::from_utf8_lossy(data);
    for request in machine.outgoing_requests(&mut txn, NOW).unwrap_or_default() {
        if request.kind() == kind {
            let _ = machine.mark_request_as_sent(&mut txn, request.request_id(), &body, NOW);
        }
    }
    // Claims need devices: answer a query with the input, then claim.
    if kind == crate::RequestKind::KeysClaim {
        let recipients = crate::Recipients::Users(vec![]);
        for request in machine
            .get_missing_sessions(&mut txn, &recipients, NOW)
            .unwrap_or_default()
        {
            let _ = machine.mark_request_as_sent(&mut txn, request.request_id(), &body, NOW);
        }
    }
}

/// A `/keys/query` response.
pub fn keys_query(data: &[u8]) {
    respond_to(crate::RequestKind::KeysQuery, data);
}

/// A `/keys/claim` response (after the same bytes as a query response).
pub fn keys_claim(data: &[u8]) {
    respond_to(crate::RequestKind::KeysQuery, data);
    respond_to(crate::RequestKind::KeysClaim, data);
}

/// A key export file: decrypted with a fixed passphrase, and its plaintext
/// imported as a session list.
pub fn key_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::key_export::decrypt(&text, "fuzz");
    let mut store = MemoryStore::new();
    let (Some(machine), Some(Value::Array(sessions))) = (machine(&mut store), json(data)) else {
        return;
    };
    if let Ok(mut txn) = store.transaction() {
        let _ = machine.import_room_keys(&mut txn, &sessions);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every checked-in corpus file of `target` through `run`.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus for {target}");
    }

    #[test]
    fn to_device_corpus() {
        replay("to_device", super::to_device);
    }

    #[test]
    fn room_event_corpus() {
        replay("room_event", super::room_event);
    }

    #[test]
    fn keys_query_corpus() {
        replay("keys_query", super::keys_query);
    }

    #[test]
    fn keys_claim_corpus() {
        replay("keys_claim", super::keys_claim);
    }

    #[test]
    fn key_file_corpus() {
        replay("key_file", super::key_file);
    }
}

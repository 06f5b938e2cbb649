//! Decrypt: Megolm events from sync-shaped JSON (sessions × events each)
//! through the machine's whole path (parse, find the session, replay
//! check, decrypt, trust verdict), one sync of 1,000 events per input.
//! The limit: the same Megolm decryptions of pre-parsed messages, sync by
//! sync in turns with newt.

use crate::{fixtures, offset};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, RoomUpdate, SyncChanges, Timestamp};
use serde_json::{Value, json};
use std::ops::Range;
use std::time::{Duration, Instant};
use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig};

const NOW: Timestamp = Timestamp(1_700_000_000_000);
const ROOM: &str = "!bench:bench.example";
/// Events per sync.
const SYNC: usize = 1000;

/// The workload: inbound sessions and their events, in arrival order.
pub struct Input {
    sessions: Vec<GroupSession>,
    pub events: Vec<Value>,
}

/// `sessions` sessions with `per_session` events each, interleaved.
pub fn input(sessions: usize, per_session: usize) -> Input {
    let mut groups: Vec<GroupSession> = (0..sessions)
        .map(|_| GroupSession::new(SessionConfig::version_1()))
        .collect();
    let originals: Vec<GroupSession> = groups
        .iter()
        .map(|g| GroupSession::from_pickle(g.pickle()))
        .collect();
    let mut events = Vec::with_capacity(sessions * per_session);
    for i in 0..per_session {
        for (s, group) in groups.iter_mut().enumerate() {
            let plaintext = json!({"type": "m.room.message", "room_id": ROOM, "content": {"msgtype": "m.text", "body": format!("message {i}")}});
            let message = group.encrypt(plaintext.to_string());
            events.push(json!({
                "type": "m.room.encrypted", "sender": "@peer:bench.example",
                "event_id": format!("$e{s}_{i}"), "origin_server_ts": 1_700_000_000_000u64 + i as u64, "room_id": ROOM,
                "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": message.to_base64(),
                    "session_id": group.session_id(), "sender_key": "peercurve", "device_id": "PEER"},
            }));
        }
    }
    Input {
        sessions: originals,
        events,
    }
}

/// Stores the inbound sessions (untimed) and opens a machine.
fn setup<S: Store>(store: &mut S, input: &Input) -> OlmMachine {
    let (user, device) = fixtures::me();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let machine =
        OlmMachine::open(&mut txn, &user, &device, NOW).unwrap_or_else(|_| unreachable!());
    for group in &input.sessions {
        let _ = txn.save_inbound(&fixtures::inbound_record(ROOM, group));
    }
    let _ = txn.commit();
    machine
}

/// The times of newt and of the limit for every event, 1,000 per sync,
/// in turns: before each eighth of the syncs newt takes, the limit
/// decrypts the same events, so that the machine's drift over a run of
/// seconds hits both alike, and each turn runs both at the next stack
/// offset (`offset.rs`). (A turn of one sync let the pool's other
/// threads fall asleep before every sync of newt.) Returns (limit, newt). The syncs are built before and the
/// outcomes dropped after: that is the caller's work.
pub fn measure<S: Store>(store: &mut S, input: &Input) -> (Duration, Duration) {
    let machine = setup(store, input);
    let mut limit = Limit::new(input);
    let syncs: Vec<SyncChanges> = input
        .events
        .chunks(SYNC)
        .map(|chunk| {
            let mut changes = SyncChanges::default();
            changes.rooms = vec![RoomUpdate::new(ROOM, Vec::new(), chunk.to_vec(), false)];
            changes
        })
        .collect();
    let mut outcomes = Vec::with_capacity(syncs.len());
    let (mut newt, mut limited) = (Duration::ZERO, Duration::ZERO);
    // One turn per stack offset.
    let per_turn = syncs.len().div_ceil(offset::COUNT).max(1);
    for (n, turn) in syncs.chunks(per_turn).enumerate() {
        let first = n * per_turn * SYNC;
        // Both at one stack offset, the next turn at the next.
        limited += offset::at(n, || limit.decrypt(first..first + turn.len() * SYNC));
        newt += offset::at(n, || {
            let start = Instant::now();
            for changes in turn {
                let Ok(mut txn) = store.transaction() else {
                    unreachable!()
                };
                outcomes.push(machine.receive_sync_changes(&mut txn, changes, NOW));
                let _ = txn.commit();
            }
            start.elapsed()
        });
    }
    let decrypted: usize = outcomes
        .iter()
        .flatten()
        .map(|o| o.room_events.iter().filter(|e| e.result.is_ok()).count())
        .sum();
    assert_eq!(
        decrypted,
        input.events.len(),
        "newt did not decrypt every event"
    );
    assert_eq!(limit.decrypted, input.events.len(), "the limit fell short");
    (limited, newt)
}

/// The limit: every decryption, with fresh sessions and the messages
/// parsed untimed.
struct Limit {
    sessions: Vec<InboundGroupSession>,
    messages: Vec<(usize, MegolmMessage)>,
    decrypted: usize,
}

impl Limit {
    fn new(input: &Input) -> Self {
        let ids: Vec<String> = input
            .sessions
            .iter()
            .map(GroupSession::session_id)
            .collect();
        let sessions = input
            .sessions
            .iter()
            .map(|g| InboundGroupSession::new(&g.session_key(), SessionConfig::version_1()))
            .collect();
        let messages = input
            .events
            .iter()
            .filter_map(|e| {
                let id = e["content"]["session_id"].as_str()?;
                let index = ids.iter().position(|s| s == id)?;
                let text = e["content"]["ciphertext"].as_str()?;
                Some((index, MegolmMessage::from_base64(text).ok()?))
            })
            .collect();
        Self {
            sessions,
            messages,
            decrypted: 0,
        }
    }

    /// The decryptions of the events in `range`.
    fn decrypt(&mut self, range: Range<usize>) -> Duration {
        let Some(messages) = self.messages.get(range) else {
            return Duration::ZERO;
        };
        let start = Instant::now();
        for (index, message) in messages {
            if let Some(session) = self.sessions.get_mut(*index) {
                self.decrypted += usize::from(session.decrypt(message).is_ok());
            }
        }
        start.elapsed()
    }
}

//! Room message: what the machine does for each message a client sends
//! into a room whose key every device already has, as `newt-client`
//! does it: recipients and tracking, sessions, the key share (nothing to
//! share), the pending requests in between (none), then the encryption,
//! each step its own committed transaction. The limit: one Megolm
//! encryption of the same event.

use crate::first_share;
use crate::fixtures::{self, PeerDevice};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, Recipients, RequestKind, SharePolicy, Timestamp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use vodozemac::megolm::{GroupSession, SessionConfig};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// Messages per run; a run's time is theirs divided by this.
pub const MESSAGES: u32 = 20;

fn content(n: u32) -> Value {
    json!({"msgtype": "m.text", "body": format!("message {n} of the benchmark")})
}

/// newt's time per message, after a first share (untimed).
pub fn newt<S: Store>(store: &mut S, peers: &[PeerDevice]) -> Duration {
    let (_, machine) = first_share::run(store, peers);
    let start = Instant::now();
    for n in 0..MESSAGES {
        send(store, &machine, n);
    }
    start.elapsed() / MESSAGES
}

/// One message, step by step as a client sends it.
fn send<S: Store>(store: &mut S, machine: &OlmMachine, n: u32) {
    let step = |store: &mut S, f: &mut dyn FnMut(&mut S::Txn<'_>)| {
        let start = Instant::now();
        let Ok(mut txn) = store.transaction() else {
            unreachable!()
        };
        f(&mut txn);
        let _ = txn.commit();
        first_share::phase("step", start);
    };
    // Nothing for the message; a key upload the first share left (it
    // used one-time keys) is answered as the server would.
    let outgoing = |store: &mut S| {
        step(store, &mut |txn| {
            for request in machine.outgoing_requests(txn, NOW).unwrap_or_default() {
                assert_eq!(
                    request.kind(),
                    RequestKind::KeysUpload,
                    "{}",
                    request.path()
                );
                let counts = r#"{"one_time_key_counts":{"signed_curve25519":50}}"#;
                let _ = machine.mark_request_as_sent(txn, request.request_id(), counts, NOW);
            }
        });
    };
    let mut users = Vec::new();
    step(store, &mut |txn| {
        users = machine
            .room_key_recipients(txn, fixtures::ROOM)
            .unwrap_or_default();
        let _ = machine.update_tracked_users(txn, &users);
    });
    outgoing(store);
    step(store, &mut |txn| {
        let recipients = Recipients::Users(users.clone());
        let _ = machine.get_missing_sessions(txn, &recipients, NOW);
    });
    outgoing(store);
    step(store, &mut |txn| {
        let shared = machine.share_room_key(txn, fixtures::ROOM, SharePolicy::default(), NOW);
        assert!(shared.is_ok_and(|s| !s.rotated && s.shared_with.is_empty()));
    });
    outgoing(store);
    step(store, &mut |txn| {
        let encrypted =
            machine.encrypt_room_event(txn, fixtures::ROOM, "m.room.message", &content(n), NOW);
        assert!(encrypted.is_ok(), "encrypting failed: {encrypted:?}");
    });
}

/// The limit per message: the Megolm encryption of the same plaintext,
/// made before the clock starts.
pub fn limit(session: &mut GroupSession) -> Duration {
    let plaintexts: Vec<String> = (0..MESSAGES)
        .map(|n| {
            json!({"type": "m.room.message", "content": content(n), "room_id": fixtures::ROOM})
                .to_string()
        })
        .collect();
    let start = Instant::now();
    for plaintext in plaintexts {
        let _ = session.encrypt(plaintext);
    }
    start.elapsed() / MESSAGES
}

/// A session for the limit.
pub fn limit_input() -> GroupSession {
    GroupSession::new(SessionConfig::version_1())
}

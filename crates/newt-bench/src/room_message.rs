//! Room message: what the machine does for each message a client sends
//! into a room whose key every device already has, as `newt-client`
//! does it: recipients and tracking, sessions, the key share (nothing to
//! share), the pending requests after each (none), then the encryption,
//! all in one transaction while no step leaves a request to send. The
//! limit: one Megolm encryption of the same event.

use crate::first_share;
use crate::fixtures::{self, PeerDevice};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, OutgoingRequest, Recipients, RequestKind, SharePolicy, Timestamp};
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

/// Answers requests as the server would: the only one a message meets
/// here is the key upload the first share left (it used one-time keys).
/// Each answer is its own transaction, as `newt-client` applies them.
fn answer<S: Store>(store: &mut S, machine: &OlmMachine, requests: &[OutgoingRequest]) {
    for request in requests {
        assert_eq!(
            request.kind(),
            RequestKind::KeysUpload,
            "{}",
            request.path()
        );
        let Ok(mut txn) = store.transaction() else {
            unreachable!()
        };
        let counts = r#"{"one_time_key_counts":{"signed_curve25519":50}}"#;
        let _ = machine.mark_request_as_sent(&mut txn, request.request_id(), counts, NOW);
        let _ = txn.commit();
    }
}

/// One message as `newt-client` sends it: the steps share one
/// transaction until one leaves requests to send, which then commits,
/// and the requests are answered before the next step.
fn send<S: Store>(store: &mut S, machine: &OlmMachine, n: u32) {
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    // After a step: its requests, if any, go out first.
    macro_rules! settle {
        () => {
            let pending = machine.outgoing_requests(&mut txn, NOW).unwrap_or_default();
            if !pending.is_empty() {
                let _ = txn.commit();
                answer(store, machine, &pending);
                let Ok(next) = store.transaction() else {
                    unreachable!()
                };
                txn = next;
            }
        };
    }
    let start = Instant::now();
    let users = machine
        .room_key_recipients(&mut txn, fixtures::ROOM)
        .unwrap_or_default();
    let _ = machine.update_tracked_users(&mut txn, &users);
    first_share::phase("step recipients", start);
    settle!();
    let start = Instant::now();
    let _ = machine.get_missing_sessions(&mut txn, &Recipients::Users(users), NOW);
    first_share::phase("step sessions", start);
    settle!();
    let start = Instant::now();
    let shared = machine.share_room_key(&mut txn, fixtures::ROOM, SharePolicy::default(), NOW);
    assert!(shared.is_ok_and(|s| !s.rotated && s.shared_with.is_empty()));
    first_share::phase("step share", start);
    settle!();
    let start = Instant::now();
    let encrypted =
        machine.encrypt_room_event(&mut txn, fixtures::ROOM, "m.room.message", &content(n), NOW);
    assert!(encrypted.is_ok(), "encrypting failed: {encrypted:?}");
    let _ = txn.commit();
    first_share::phase("step encrypt and commit", start);
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

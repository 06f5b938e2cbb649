//! First share: a room of N devices newt has never seen. Timed: applying
//! the `/keys/query` responses, planning the claim, applying the
//! `/keys/claim` response (signature checks, session creation), and
//! sharing the room's key (deciding who gets it, a new outbound session,
//! an `m.room_key` encrypted for every device into `/sendToDevice`
//! bodies). Building the fixture responses and applying the room's
//! state are not timed.

use crate::fixtures::{self, PeerDevice};
use newt_crypto::ruma::OwnedUserId;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, Recipients, RequestKind, SharePolicy, Timestamp};
use std::time::{Duration, Instant};
use vodozemac::olm::{Account, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// Prints a phase's time when `NEWT_BENCH_PHASES` is set.
pub fn phase(name: &str, start: Instant) {
    if std::env::var_os("NEWT_BENCH_PHASES").is_some() {
        eprintln!("  {name}: {:.3} ms", start.elapsed().as_secs_f64() * 1000.0);
    }
}

/// A fresh machine in `store`, with its own key upload done.
fn machine<S: Store>(store: &mut S) -> OlmMachine {
    let (user, device) = fixtures::me();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let machine =
        OlmMachine::open(&mut txn, &user, &device, NOW).unwrap_or_else(|_| unreachable!());
    for request in machine.outgoing_requests(&mut txn, NOW).unwrap_or_default() {
        let body = match request.kind() {
            RequestKind::KeysUpload => {
                r#"{"one_time_key_counts":{"signed_curve25519":25}}"#.to_owned()
            }
            _ => r#"{"device_keys":{},"failures":{}}"#.to_owned(),
        };
        let _ = machine.mark_request_as_sent(&mut txn, request.request_id(), &body, NOW);
    }
    let _ = txn.commit();
    machine
}

/// newt's time for the workload.
pub fn newt<S: Store>(store: &mut S, peers: &[PeerDevice]) -> Duration {
    run(store, peers).0
}

/// The workload's time, and the machine that ran it.
pub fn run<S: Store>(store: &mut S, peers: &[PeerDevice]) -> (Duration, OlmMachine) {
    let machine = machine(store);
    // The room's state, as a sync before the first message brings it.
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let state = fixtures::room_state(peers);
    let _ = machine.receive_room_state(&mut txn, fixtures::ROOM, &state, NOW);
    let _ = txn.commit();
    let users: Vec<OwnedUserId> = {
        let mut u: Vec<String> = peers.iter().map(|p| p.user.clone()).collect();
        u.sort();
        u.dedup();
        u.into_iter()
            .filter_map(|s| OwnedUserId::try_from(s).ok())
            .collect()
    };
    let mut timed = Duration::ZERO;
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let _ = machine.update_tracked_users(&mut txn, &users);
    let queries = machine.outgoing_requests(&mut txn, NOW).unwrap_or_default();
    let _ = txn.commit();
    let responses: Vec<_> = queries
        .iter()
        .filter(|r| r.kind() == RequestKind::KeysQuery)
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(r.body()).unwrap_or_default();
            let wanted: Vec<String> = body["device_keys"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (
                r.request_id().to_owned(),
                fixtures::query_response(peers, &wanted),
            )
        })
        .collect();

    let start = Instant::now();
    for (id, response) in &responses {
        let Ok(mut txn) = store.transaction() else {
            unreachable!()
        };
        let _ = machine.mark_request_as_sent(&mut txn, id, response, NOW);
        let _ = txn.commit();
    }
    phase("query", start);
    let recipients = Recipients::Users(users);
    let t = Instant::now();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let claims = machine
        .get_missing_sessions(&mut txn, &recipients, NOW)
        .unwrap_or_default();
    let _ = txn.commit();
    phase("plan claim", t);
    timed += start.elapsed();

    let claim_responses: Vec<_> = claims
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(r.body()).unwrap_or_default();
            (
                r.request_id().to_owned(),
                fixtures::claim_response(peers, &body),
            )
        })
        .collect();
    let start = Instant::now();
    for (id, response) in &claim_responses {
        let Ok(mut txn) = store.transaction() else {
            unreachable!()
        };
        let _ = machine.mark_request_as_sent(&mut txn, id, response, NOW);
        let _ = txn.commit();
    }
    phase("claim", start);
    let t = Instant::now();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let outcome = machine.share_room_key(&mut txn, fixtures::ROOM, SharePolicy::default(), NOW);
    phase("encrypt only", t);
    let t2 = Instant::now();
    let bodies = machine.outgoing_requests(&mut txn, NOW).unwrap_or_default();
    phase("outgoing", t2);
    let _ = txn.commit();
    phase("encrypt", t);
    timed += start.elapsed();
    let sent = outcome.map(|o| o.shared_with.len()).unwrap_or(0);
    assert_eq!(sent, peers.len(), "newt did not encrypt for every device");
    assert!(bodies.iter().any(|b| b.kind() == RequestKind::ToDevice));
    // The server took them (untimed), as a client would see next.
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    for request in bodies.iter().filter(|b| b.kind() == RequestKind::ToDevice) {
        let _ = machine.mark_request_as_sent(&mut txn, request.request_id(), "{}", NOW);
    }
    let _ = txn.commit();
    (timed, machine)
}

/// Signed bytes and their signature.
type Signed = (Vec<u8>, Ed25519Signature);

/// The precomputed inputs of the raw crypto.
pub struct LimitInput {
    /// Per device: its Ed25519 key (text, as on the wire) and the two
    /// signed objects (device keys, one-time key) with their signatures.
    signed: Vec<(String, Vec<Signed>)>,
    sessions: Vec<(Curve25519PublicKey, Curve25519PublicKey)>,
    payload: String,
}

fn signature(value: &serde_json::Value, user: &str, device: &str) -> Ed25519Signature {
    let sig = value["signatures"][user][format!("ed25519:{device}")]
        .as_str()
        .unwrap_or_default();
    let bytes = newt_crypto::b64::decode(sig).unwrap_or_default();
    Ed25519Signature::from_slice(&bytes).unwrap_or_else(|_| unreachable!())
}

/// Everything the limit needs, computed untimed.
pub fn limit_input(peers: &[PeerDevice]) -> LimitInput {
    let mut signed = Vec::new();
    let mut sessions = Vec::new();
    for peer in peers {
        let mut objects = Vec::new();
        for object in [&peer.device_keys, &peer.otk] {
            let Some(map) = object.as_object() else {
                continue;
            };
            let bytes = newt_crypto::signing::signable_bytes(map)
                .unwrap_or_default()
                .into_bytes();
            objects.push((bytes, signature(object, &peer.user, &peer.device)));
        }
        signed.push((peer.account.ed25519_key().to_base64(), objects));
        let otk = Curve25519PublicKey::from_base64(peer.otk["key"].as_str().unwrap_or_default());
        sessions.push((
            peer.account.curve25519_key(),
            otk.unwrap_or_else(|_| unreachable!()),
        ));
    }
    let payload = fixtures::olm_plaintext(peers);
    LimitInput {
        signed,
        sessions,
        payload,
    }
}

/// The physical limit: the same cryptographic work, single-threaded, no
/// JSON, no store: each device's Ed25519 key decoded once and its two
/// signatures checked, one Olm session created, one payload encrypted.
pub fn limit(input: &LimitInput) -> Duration {
    let me = Account::new();
    let start = Instant::now();
    for (key, objects) in &input.signed {
        // The limit is raw vodozemac, and these keys are our own fixture's.
        #[allow(clippy::disallowed_methods)]
        let Ok(key) = Ed25519PublicKey::from_base64(key) else {
            continue;
        };
        for (bytes, sig) in objects {
            let _ = key.verify(bytes, sig);
        }
    }
    phase("limit: verify", start);
    let t = Instant::now();
    let mut sessions = Vec::new();
    for (identity, otk) in &input.sessions {
        if let Ok(session) = me.create_outbound_session(SessionConfig::version_1(), *identity, *otk)
        {
            sessions.push(session);
        }
    }
    phase("limit: sessions", t);
    let t = Instant::now();
    crate::fixtures::new_room_session();
    for session in &mut sessions {
        let _ = session.encrypt(input.payload.as_bytes());
    }
    phase("limit: encrypt", t);
    start.elapsed()
}

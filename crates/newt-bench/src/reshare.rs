//! Re-share: the same room after a rotation, Olm sessions already there.
//! Timed: sharing the room's new key (deciding who gets it, the new
//! outbound session, an `m.room_key` encrypted for every device into
//! `/sendToDevice` bodies). The limit: the room's new session, and the
//! same encryptions.

use crate::first_share;
use crate::fixtures::{self, PeerDevice};
use newt_crypto::store::Store;
use newt_crypto::{OlmMachine, RequestKind, SharePolicy, Timestamp};
use std::time::{Duration, Instant};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, Session, SessionConfig};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// newt's time: sessions are made by a first share (untimed), then the
/// room's session rotates by time and the new key goes to everyone.
/// `restarted`: by a new machine on the same store, as after a restart,
/// so nothing from the first share is cached.
pub fn newt<S: Store>(store: &mut S, peers: &[PeerDevice], restarted: bool) -> Duration {
    let (_, mut machine) = first_share::run(store, peers);
    if restarted {
        let (user, device) = fixtures::me();
        let Ok(mut txn) = store.transaction() else {
            unreachable!()
        };
        machine =
            OlmMachine::open(&mut txn, &user, &device, NOW).unwrap_or_else(|_| unreachable!());
        let _ = newt_crypto::store::StoreTxn::commit(txn);
    }
    // NEWT_BENCH_LOOPS=k repeats the timed step k times (for profiling:
    // the untimed first share otherwise dominates a profile); the last
    // one's time counts.
    let loops = std::env::var("NEWT_BENCH_LOOPS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1u64)
        .max(1);
    let mut elapsed = Duration::ZERO;
    for k in 1..=loops {
        // Each step is one rotation period later: the session rotates.
        let now = Timestamp(NOW.0 + k * (fixtures::ROTATION_MS + 1));
        elapsed = share_once(store, &machine, now, peers.len());
    }
    elapsed
}

/// One timed re-share: rotate and share, hand out, commit. Then (untimed)
/// the server takes the requests, as a client would see next.
fn share_once<S: Store>(
    store: &mut S,
    machine: &OlmMachine,
    now: Timestamp,
    devices: usize,
) -> Duration {
    let start = Instant::now();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let outcome = machine.share_room_key(&mut txn, fixtures::ROOM, SharePolicy::default(), now);
    first_share::phase("encrypt", start);
    let t = Instant::now();
    let bodies = machine.outgoing_requests(&mut txn, now).unwrap_or_default();
    first_share::phase("outgoing", t);
    let t = Instant::now();
    let _ = newt_crypto::store::StoreTxn::commit(txn);
    first_share::phase("commit", t);
    let elapsed = start.elapsed();
    let Ok(outcome) = outcome else {
        panic!("re-share failed: {outcome:?}")
    };
    assert!(outcome.rotated, "the session did not rotate");
    assert_eq!(outcome.shared_with.len(), devices);
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    for request in bodies.iter().filter(|b| b.kind() == RequestKind::ToDevice) {
        let _ = machine.mark_request_as_sent(&mut txn, request.request_id(), "{}", now);
    }
    let _ = newt_crypto::store::StoreTxn::commit(txn);
    elapsed
}

/// Sessions for the limit, made untimed.
pub fn limit_input(peers: &[PeerDevice]) -> (Vec<Session>, String) {
    let me = Account::new();
    let sessions = peers
        .iter()
        .filter_map(|p| {
            let otk = Curve25519PublicKey::from_base64(p.otk["key"].as_str()?).ok()?;
            me.create_outbound_session(SessionConfig::version_1(), p.account.curve25519_key(), otk)
                .ok()
        })
        .collect();
    let payload = fixtures::olm_plaintext(peers);
    (sessions, payload)
}

/// The limit: the room's new session, and one encryption per device.
pub fn limit(input: &mut (Vec<Session>, String)) -> Duration {
    let start = Instant::now();
    fixtures::new_room_session();
    for session in &mut input.0 {
        let _ = session.encrypt(input.1.as_bytes());
    }
    start.elapsed()
}

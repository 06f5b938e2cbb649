//! Re-share: the same devices after a rotation, Olm sessions already
//! there. Timed: encrypting a new `m.room_key` for every device into
//! `/sendToDevice` bodies. The limit: the same encryptions.

use crate::first_share;
use crate::fixtures::{self, PeerDevice};
use newt_crypto::ruma::OwnedUserId;
use newt_crypto::store::Store;
use newt_crypto::{OlmMachine, Recipients, RequestKind, Timestamp};
use std::time::{Duration, Instant};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, Session, SessionConfig};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// newt's time: sessions are made by a first share (untimed), then a
/// second key goes to everyone. `restarted`: by a new machine on the same
/// store, as after a restart, so nothing from the first share is cached.
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
    let mut users: Vec<OwnedUserId> = peers
        .iter()
        .filter_map(|p| OwnedUserId::try_from(p.user.as_str()).ok())
        .collect();
    users.sort();
    users.dedup();
    let content = fixtures::room_key_content();
    let recipients = Recipients::Users(users);
    // NEWT_BENCH_LOOPS=k repeats the timed step k times (for profiling:
    // the untimed first share otherwise dominates a profile); the last
    // one's time counts.
    let loops = std::env::var("NEWT_BENCH_LOOPS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let mut elapsed = Duration::ZERO;
    for _ in 0..loops {
        elapsed = share_once(store, &machine, &content, &recipients, peers.len());
    }
    elapsed
}

/// One timed re-share: encrypt for everyone, hand out, commit.
fn share_once<S: Store>(
    store: &mut S,
    machine: &OlmMachine,
    content: &serde_json::Value,
    recipients: &Recipients,
    devices: usize,
) -> Duration {
    let start = Instant::now();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let outcome = machine.encrypt_to_device(&mut txn, "m.room_key", content, recipients);
    first_share::phase("encrypt", start);
    let t = Instant::now();
    let bodies = machine.outgoing_requests(&mut txn, NOW).unwrap_or_default();
    first_share::phase("outgoing", t);
    let t = Instant::now();
    let _ = newt_crypto::store::StoreTxn::commit(txn);
    first_share::phase("commit", t);
    let elapsed = start.elapsed();
    assert_eq!(outcome.map(|o| o.sent_to.len()).unwrap_or(0), devices);
    assert!(bodies.iter().any(|b| b.kind() == RequestKind::ToDevice));
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

/// The limit: one encryption per device.
pub fn limit(input: &mut (Vec<Session>, String)) -> Duration {
    let start = Instant::now();
    for session in &mut input.0 {
        let _ = session.encrypt(input.1.as_bytes());
    }
    start.elapsed()
}

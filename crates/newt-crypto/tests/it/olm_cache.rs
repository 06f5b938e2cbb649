//! The live Olm session cache never hands out a ratchet state older than
//! the store's: each message below must decrypt, which fails if two were
//! encrypted from the same state (the recipient has used that message key).

use crate::router::{Peer, Router, decrypted};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, Recipients};
use serde_json::{Value, json};

fn contents(router: &mut Router, peer: &mut Peer) -> Vec<Value> {
    let got = router.sync(peer);
    decrypted(&got.to_device)
        .iter()
        .map(|e| e.content.clone())
        .collect()
}

/// Alice and Bob, with Alice's first message ({"n": 1}) sent to Bob.
fn started() -> (Router, Peer, Peer) {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.introduce(&mut bob, &alice.user);
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    (router, alice, bob)
}

/// Encrypts without the router's flush, in one transaction, committed or not.
fn encrypt(peer: &mut Peer, to: &Peer, n: u32, commit: bool) {
    let recipients = Recipients::Users(vec![to.user.clone()]);
    let mut txn = peer.store.transaction().unwrap();
    let outcome = peer
        .machine
        .encrypt_to_device(&mut txn, "m.test", &json!({ "n": n }), &recipients)
        .unwrap();
    assert_eq!(outcome.sent_to.len(), 1);
    if commit {
        txn.commit().unwrap();
    }
}

/// A send whose transaction rolls back leaves no trace: the next send
/// starts from the stored state, and the peer reads every sent message.
#[test]
fn rolled_back_send_does_not_advance_the_cached_session() {
    let (mut router, mut alice, mut bob) = started();
    encrypt(&mut alice, &bob, 2, false);
    encrypt(&mut alice, &bob, 3, true);
    router.flush(&mut alice);
    assert_eq!(
        contents(&mut router, &mut bob),
        [json!({"n": 1}), json!({"n": 3})]
    );
}

/// Two machines on one store (two processes): each send starts from the
/// other's latest state, never from a state cached before it.
#[test]
fn second_machine_on_the_same_store_is_never_overtaken() {
    let (mut router, mut alice, mut bob) = started();
    let mut txn = alice.store.transaction().unwrap();
    let mut other = OlmMachine::open(&mut txn, &alice.user, &alice.device, router.now()).unwrap();
    txn.commit().unwrap();
    for n in 2..6 {
        // Alternate: odd sends from the first machine, even from the other.
        if n % 2 == 0 {
            std::mem::swap(&mut alice.machine, &mut other);
        }
        encrypt(&mut alice, &bob, n, true);
        if n % 2 == 0 {
            std::mem::swap(&mut alice.machine, &mut other);
        }
    }
    router.flush(&mut alice);
    let expected: Vec<Value> = (1..6).map(|n| json!({ "n": n })).collect();
    assert_eq!(contents(&mut router, &mut bob), expected);
}

/// A reply received between two sends changes the session: the second
/// send uses the stored session that received, not the cached one.
#[test]
fn received_message_replaces_the_cached_session() {
    let (mut router, mut alice, mut bob) = started();
    assert_eq!(contents(&mut router, &mut bob), [json!({"n": 1})]);
    router.send(&mut bob, &[alice.user.clone()], "m.test", json!({"n": 2}));
    assert_eq!(contents(&mut router, &mut alice), [json!({"n": 2})]);
    for n in 3..6 {
        encrypt(&mut alice, &bob, n, true);
    }
    router.flush(&mut alice);
    let expected: Vec<Value> = (3..6).map(|n| json!({ "n": n })).collect();
    assert_eq!(contents(&mut router, &mut bob), expected);
}

/// A sync with several messages from one peer: each is read from the
/// state the one before saved. Later replays of them are refused, which
/// one would not be if a later message had been read from an older state
/// (its key would be kept as skipped).
#[test]
fn messages_of_one_peer_in_one_sync_each_see_the_one_before() {
    let (mut router, mut alice, mut bob) = started();
    assert_eq!(contents(&mut router, &mut bob), [json!({"n": 1})]);
    for n in 2..5 {
        encrypt(&mut alice, &bob, n, true);
    }
    router.flush(&mut alice);
    let events = router.take_inbox(&bob.user, "B1");
    assert_eq!(events.len(), 3);
    for event in &events {
        router.inject(&bob.user, "B1", event.clone());
    }
    let expected: Vec<Value> = (2..5).map(|n| json!({ "n": n })).collect();
    assert_eq!(contents(&mut router, &mut bob), expected);
    for event in &events {
        router.inject(&bob.user, "B1", event.clone());
    }
    let replayed = router.sync(&mut bob);
    assert!(
        decrypted(&replayed.to_device).is_empty(),
        "a replay was read"
    );
    assert_eq!(replayed.to_device.len(), 3);
}

//! The machine hands out `/sendToDevice` bodies it queued without reading
//! them back from the store: what it hands out must still be exactly what
//! the store holds (TD-02), and only for requests the store still has.

use crate::router::{Peer, Router, decrypted};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, OutgoingRequest, Recipients, RequestKind};
use serde_json::json;

/// Alice and Bob with an Olm session; nothing left to send.
fn pair(router: &mut Router) -> (Peer, Peer) {
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.introduce(&mut bob, &alice.user);
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 0}));
    router.sync(&mut bob);
    (alice, bob)
}

fn queue(peer: &mut Peer, to: &Peer, n: u32, commit: bool) {
    let recipients = Recipients::Users(vec![to.user.clone()]);
    let mut txn = peer.store.transaction().unwrap();
    peer.machine
        .encrypt_to_device(&mut txn, "m.test", &json!({ "n": n }), &recipients)
        .unwrap();
    if commit {
        txn.commit().unwrap();
    }
}

/// The to-device requests `machine` hands out, each checked against the
/// body the store holds for it.
fn to_device(
    store: &mut impl Store,
    machine: &OlmMachine,
    router: &Router,
) -> Vec<OutgoingRequest> {
    let mut txn = store.transaction().unwrap();
    let requests: Vec<_> = machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap()
        .into_iter()
        .filter(|r| r.kind() == RequestKind::ToDevice)
        .collect();
    for request in &requests {
        let stored = txn
            .load_pending_request(request.request_id())
            .unwrap()
            .unwrap();
        assert_eq!(
            request.body(),
            stored.body.as_str(),
            "handed out what is stored"
        );
    }
    requests
}

#[test]
fn queued_body_is_handed_out_as_stored_and_delivered() {
    let mut router = Router::new();
    let (mut alice, mut bob) = pair(&mut router);
    queue(&mut alice, &bob, 1, true);
    assert_eq!(
        to_device(&mut alice.store, &alice.machine, &router).len(),
        1
    );
    router.flush(&mut alice);
    let got = router.sync(&mut bob);
    let contents: Vec<_> = decrypted(&got.to_device)
        .iter()
        .map(|e| e.content.clone())
        .collect();
    assert_eq!(contents, [json!({"n": 1})]);
    assert!(to_device(&mut alice.store, &alice.machine, &router).is_empty());
}

#[test]
fn request_of_a_rolled_back_send_is_never_handed_out() {
    let mut router = Router::new();
    let (mut alice, bob) = pair(&mut router);
    queue(&mut alice, &bob, 1, false);
    assert!(to_device(&mut alice.store, &alice.machine, &router).is_empty());
    queue(&mut alice, &bob, 2, true);
    assert_eq!(
        to_device(&mut alice.store, &alice.machine, &router).len(),
        1
    );
}

/// A second machine on the same store (another process) has none of the
/// first one's bodies: it reads them, whole, from the store.
#[test]
fn another_machine_on_the_store_hands_out_whole_bodies() {
    let mut router = Router::new();
    let (mut alice, bob) = pair(&mut router);
    let mut txn = alice.store.transaction().unwrap();
    let other = OlmMachine::open(&mut txn, &alice.user, &alice.device, router.now()).unwrap();
    txn.commit().unwrap();
    queue(&mut alice, &bob, 1, true);
    let mine = to_device(&mut alice.store, &alice.machine, &router);
    let theirs = to_device(&mut alice.store, &other, &router);
    assert_eq!(mine, theirs);
    assert!(!theirs[0].body().is_empty());
}

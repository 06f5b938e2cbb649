//! CLM-03: once no recipient needs an Olm session, the machine remembers
//! it until a device record changes; these show the answer still moves
//! when it must.

use crate::router::{Peer, Router};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OutgoingRequest, Recipients, RequestKind};
use ruma::OwnedUserId;
use serde_json::json;

fn missing(router: &mut Router, peer: &mut Peer, to: &[OwnedUserId]) -> Vec<OutgoingRequest> {
    let mut txn = peer.store.transaction().unwrap();
    let claims = peer
        .machine
        .get_missing_sessions(&mut txn, &Recipients::Users(to.to_vec()), router.now())
        .unwrap();
    txn.commit().unwrap();
    claims
}

#[test]
fn a_new_device_is_claimed_for_after_none_was_needed() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let bob = router.device("bob", "B1");
    let to = [bob.user.clone()];
    let sent = router.send(&mut alice, &to, "m.test", json!({"n": 1}));
    assert_eq!(sent.sent_to.len(), 1);
    // Asked twice: the second answer is the remembered one.
    assert!(missing(&mut router, &mut alice, &to).is_empty());
    assert!(missing(&mut router, &mut alice, &to).is_empty());
    let _second = router.device("bob", "B2");
    router.sync(&mut alice);
    let claims = missing(&mut router, &mut alice, &to);
    assert_eq!(claims.len(), 1, "no claim for bob's new device");
    assert_eq!(claims[0].kind(), RequestKind::KeysClaim);
    assert!(claims[0].body().contains("B2"));
}

#[test]
fn other_recipients_are_not_answered_from_memory() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let bob = router.device("bob", "B1");
    let carol = router.device("carol", "C1");
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({}));
    router.introduce(&mut alice, &carol.user);
    assert!(missing(&mut router, &mut alice, &[bob.user.clone()]).is_empty());
    // Carol's device was known before bob's answer was remembered.
    let claims = missing(
        &mut router,
        &mut alice,
        &[bob.user.clone(), carol.user.clone()],
    );
    assert_eq!(claims.len(), 1, "carol has no session yet");
}

#[test]
fn rooms_in_turn_are_each_remembered_and_each_seen_to_change() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let bob = router.device("bob", "B1");
    let carol = router.device("carol", "C1");
    let (one, two) = ([bob.user.clone()], [carol.user.clone()]);
    router.send(&mut alice, &one, "m.test", json!({}));
    router.send(&mut alice, &two, "m.test", json!({}));
    for _ in 0..2 {
        assert!(missing(&mut router, &mut alice, &one).is_empty());
        assert!(missing(&mut router, &mut alice, &two).is_empty());
    }
    let _carol2 = router.device("carol", "C2");
    router.sync(&mut alice);
    assert!(missing(&mut router, &mut alice, &one).is_empty());
    assert_eq!(missing(&mut router, &mut alice, &two).len(), 1);
}

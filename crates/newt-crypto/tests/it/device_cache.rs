//! Device lists cached between inputs never stand in for newer stored
//! ones: what the user changed about a device counts at the next share,
//! whichever machine on the store changed it, and a change rolled back
//! never counts.

use crate::rooms::{ROOM, World, megolm, world};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, ShareOutcome, SharePolicy};

const ONLY_VERIFIED: SharePolicy = SharePolicy {
    only_verified: true,
};

/// Alice shares the room key with verified devices only.
fn share_verified_only(w: &mut World, txn: &mut impl StoreTxn) -> ShareOutcome {
    w.alice
        .machine
        .share_room_key(txn, ROOM, ONLY_VERIFIED, w.router.now())
        .unwrap()
}

/// Bob's device, shared with already, is verified by a second machine on
/// Alice's store: Alice's next verified-only share keeps it (no rotation,
/// no withheld notice), which a stale "unverified" list would not.
#[test]
fn device_verified_by_another_machine_counts_at_the_next_share() {
    let mut w = world(megolm());
    w.send("hello");
    let mut txn = w.alice.store.transaction().unwrap();
    let other = OlmMachine::open(&mut txn, &w.alice.user, &w.alice.device, w.router.now()).unwrap();
    assert!(
        other
            .set_device_verified(&mut txn, &w.bob.user, &w.bob.device, true)
            .unwrap()
    );
    txn.commit().unwrap();
    let mut store = std::mem::take(&mut w.alice.store);
    let mut txn = store.transaction().unwrap();
    let outcome = share_verified_only(&mut w, &mut txn);
    assert!(!outcome.rotated, "{outcome:?}");
    assert!(outcome.withheld.is_empty(), "{outcome:?}");
}

/// A verification rolled back never counts, though a share in its
/// transaction saw it.
#[test]
fn rolled_back_verification_does_not_count() {
    let mut w = world(megolm());
    w.send("hello");
    let mut store = std::mem::take(&mut w.alice.store);
    let mut txn = store.transaction().unwrap();
    w.alice
        .machine
        .set_device_verified(&mut txn, &w.bob.user, &w.bob.device, true)
        .unwrap();
    let seen = share_verified_only(&mut w, &mut txn);
    assert!(!seen.rotated && seen.withheld.is_empty(), "{seen:?}");
    drop(txn);
    let mut txn = store.transaction().unwrap();
    let outcome = share_verified_only(&mut w, &mut txn);
    assert!(outcome.rotated, "{outcome:?}");
    assert_eq!(outcome.withheld.len(), 1, "{outcome:?}");
}

/// A `/keys/query` response leaves its users' lists cached only once its
/// transaction commits: one rolled back never counts, though a share in
/// its transaction saw the device it added.
#[test]
fn rolled_back_query_does_not_count() {
    let mut w = world(megolm());
    w.send("hello");
    let bob2 = w.router.device("bob", "B2");
    let mut changes = newt_crypto::SyncChanges::default();
    changes.device_lists_changed = vec![bob2.user.clone()];
    w.alice.apply(&changes, w.router.now());
    let is_bob2 = |user: &newt_crypto::ruma::OwnedUserId, device: &str| {
        *user == bob2.user && device == bob2.device.as_str()
    };
    let mut store = std::mem::take(&mut w.alice.store);
    let mut txn = store.transaction().unwrap();
    let requests = w
        .alice
        .machine
        .outgoing_requests(&mut txn, w.router.now())
        .unwrap();
    let query = requests
        .iter()
        .find(|r| r.kind() == newt_crypto::RequestKind::KeysQuery)
        .unwrap();
    let response = w.router.query(&serde_json::from_str(query.body()).unwrap());
    w.alice
        .machine
        .mark_request_as_sent(
            &mut txn,
            query.request_id(),
            &response.to_string(),
            w.router.now(),
        )
        .unwrap();
    // No Olm session with the new device yet: it is told so (WHD-03).
    let seen = w
        .alice
        .machine
        .share_room_key(&mut txn, ROOM, SharePolicy::default(), w.router.now())
        .unwrap();
    assert!(
        seen.withheld.iter().any(|(u, d, _)| is_bob2(u, d.as_str())),
        "{seen:?}"
    );
    drop(txn);
    let mut txn = store.transaction().unwrap();
    let outcome = w
        .alice
        .machine
        .share_room_key(&mut txn, ROOM, SharePolicy::default(), w.router.now())
        .unwrap();
    assert!(
        !outcome
            .withheld
            .iter()
            .any(|(u, d, _)| is_bob2(u, d.as_str())),
        "{outcome:?}"
    );
    assert!(
        !outcome
            .shared_with
            .iter()
            .any(|(u, d)| is_bob2(u, d.as_str())),
        "{outcome:?}"
    );
}

/// TRK-08: a device whose keys changed is refused, and the share right
/// after the query that showed it (served from the lists the query left)
/// no longer counts it: the session rotates and the device is told why.
#[test]
fn refused_key_change_counts_at_the_next_share() {
    let mut w = world(megolm());
    let (_, first) = w.send("hello");
    let bob = (w.bob.user.clone(), w.bob.device.clone());
    assert!(first.shared_with.contains(&bob), "{first:?}");
    // Bob's device ID now shows other keys, validly self-signed.
    let _impostor = w.router.device("bob", bob.1.as_str());
    let mut changes = newt_crypto::SyncChanges::default();
    changes.device_lists_changed = vec![bob.0.clone()];
    w.alice.apply(&changes, w.router.now());
    let (_, second) = w.send("again");
    assert!(second.rotated, "{second:?}");
    assert!(!second.shared_with.contains(&bob), "{second:?}");
    assert!(
        second
            .withheld
            .contains(&(bob.0.clone(), bob.1.clone(), "m.unverified".to_owned())),
        "{second:?}"
    );
}

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

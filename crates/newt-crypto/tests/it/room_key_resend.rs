//! A room key's `/sendToDevice` body is never stored: only the machine
//! that shared the key holds it. Any other machine on the store (after a
//! restart, or another process) makes it again for the same devices under
//! the same transaction ID (TD-02), and ENC-04 still holds.

use crate::rooms::{ROOM, World, megolm, world};
use crate::rooms_router::{bodies, send, sync};
use crate::router::decrypted;
use newt_crypto::store::{PendingKind, Store, StoreTxn};
use newt_crypto::{OlmMachine, OutgoingRequest, Recipients, RequestKind, SharePolicy, Timestamp};
use serde_json::json;

/// Everything up to the key share, committed, nothing of it sent.
fn share_unsent(w: &mut World) -> newt_crypto::ShareOutcome {
    let peer = &mut w.alice;
    let mut txn = peer.store.transaction().unwrap();
    let users = peer.machine.room_key_recipients(&mut txn, ROOM).unwrap();
    peer.machine.update_tracked_users(&mut txn, &users).unwrap();
    txn.commit().unwrap();
    w.router.flush(peer);
    let mut txn = peer.store.transaction().unwrap();
    peer.machine
        .get_missing_sessions(&mut txn, &Recipients::Users(users), w.router.now())
        .unwrap();
    txn.commit().unwrap();
    w.router.flush(peer);
    let mut txn = peer.store.transaction().unwrap();
    let shared = peer
        .machine
        .share_room_key(&mut txn, ROOM, SharePolicy::default(), w.router.now())
        .unwrap();
    txn.commit().unwrap();
    shared
}

/// The to-device requests `machine` hands out now, committed.
fn out(store: &mut impl Store, machine: &OlmMachine, now: Timestamp) -> Vec<OutgoingRequest> {
    let mut txn = store.transaction().unwrap();
    let requests = machine
        .outgoing_requests(&mut txn, now)
        .unwrap()
        .into_iter()
        .filter(|r| r.kind() == RequestKind::ToDevice)
        .collect();
    txn.commit().unwrap();
    requests
}

/// What Alice's own machine hands out.
fn handed_out(w: &mut World) -> Vec<OutgoingRequest> {
    out(&mut w.alice.store, &w.alice.machine, w.router.now())
}

/// A machine over Alice's store, as after a restart.
fn reopened(w: &mut World) -> OlmMachine {
    let mut txn = w.alice.store.transaction().unwrap();
    let machine = OlmMachine::open(&mut txn, &w.alice.user, &w.alice.device, w.router.now());
    txn.commit().unwrap();
    machine.unwrap()
}

/// Bob's devices that got nothing yet can read Alice's next message.
fn bob_reads_next(w: &mut World, text: &str) {
    let (event_id, _) = send(&mut w.router, &mut w.rooms, &mut w.alice, ROOM, text);
    let read = bodies(&sync(&mut w.router, &mut w.rooms, &mut w.bob).room_events);
    assert_eq!(read.get(&event_id).map(String::as_str), Some(text));
}

#[test]
fn a_room_key_request_stores_its_devices_not_its_body() {
    let mut w = world(megolm());
    let shared = share_unsent(&mut w);
    let mut txn = w.alice.store.transaction().unwrap();
    let rows = txn.load_pending_requests().unwrap();
    let keys: Vec<_> = rows
        .iter()
        .filter_map(|r| match &r.kind {
            PendingKind::RoomKey {
                devices,
                session_id,
                ..
            } => Some((r.body.len(), devices.clone(), session_id.clone())),
            _ => None,
        })
        .collect();
    drop(txn);
    let bob = (w.bob.user.clone(), w.bob.device.clone());
    assert_eq!(keys, [(0, vec![bob], shared.session_id)]);
    // The machine that shared holds the body and hands it out.
    let held = handed_out(&mut w);
    assert_eq!(held.len(), 1);
    assert!(held[0].body().contains(w.bob.device.as_str()));
}

/// ENC-04 across a restart: the key shared before it reaches Bob, under
/// the transaction ID it was queued with, and the message after it reads.
#[test]
fn a_room_key_queued_before_a_restart_is_rebuilt_and_delivered() {
    let mut w = world(megolm());
    let shared = share_unsent(&mut w);
    let before = handed_out(&mut w);
    w.alice.machine = reopened(&mut w);
    let after = handed_out(&mut w);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].path(), before[0].path(), "TD-02: same txn ID");
    assert_eq!(after[0].request_id(), before[0].request_id());
    // Handed out again, the rebuilt body is held: the same one.
    let again = handed_out(&mut w);
    assert_eq!(again, after);
    w.router.flush(&mut w.alice);
    let next = send(&mut w.router, &mut w.rooms, &mut w.alice, ROOM, "x").1;
    assert!(!next.rotated && next.shared_with.is_empty(), "{next:?}");
    assert_eq!(next.session_id, shared.session_id);
    let read = bodies(&sync(&mut w.router, &mut w.rooms, &mut w.bob).room_events);
    assert_eq!(read.values().collect::<Vec<_>>(), ["x"]);
}

/// Two machines on one store each hand the request out; the server takes
/// one transaction, and Bob reads with whichever arrived.
#[test]
fn another_machine_rebuilds_under_the_same_transaction() {
    let mut w = world(megolm());
    share_unsent(&mut w);
    let other = reopened(&mut w);
    let mine = handed_out(&mut w);
    let theirs = out(&mut w.alice.store, &other, w.router.now());
    assert_eq!(mine[0].path(), theirs[0].path());
    assert_ne!(mine[0].body(), theirs[0].body(), "encrypted again");
    // The other machine sends first; the first machine's copy is a
    // repeat of its transaction.
    let mut second = crate::router::Peer {
        user: w.alice.user.clone(),
        device: w.alice.device.clone(),
        store: std::mem::take(&mut w.alice.store),
        machine: other,
    };
    w.router.flush(&mut second);
    w.alice.store = second.store;
    w.router.flush(&mut w.alice);
    bob_reads_next(&mut w, "after both");
}

/// A request whose session rotated away before it went out is dropped:
/// nothing was encrypted with that session since, and Bob gets the new
/// one.
#[test]
fn a_room_key_request_of_a_rotated_session_is_dropped() {
    let mut w = world(json!({"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 3000}));
    let first = share_unsent(&mut w);
    w.alice.machine = reopened(&mut w);
    w.router.advance(3000);
    let second = share_unsent(&mut w);
    assert!(second.rotated);
    let out = handed_out(&mut w);
    assert_eq!(out.len(), 1, "only the new session's key goes out");
    let mut txn = w.alice.store.transaction().unwrap();
    let left: Vec<_> = txn
        .load_pending_requests()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.kind {
            PendingKind::RoomKey { session_id, .. } => Some(session_id),
            _ => None,
        })
        .collect();
    drop(txn);
    assert_eq!(left, [second.session_id.clone()]);
    assert_ne!(first.session_id, second.session_id);
    w.router.flush(&mut w.alice);
    bob_reads_next(&mut w, "rotated");
}

/// A room-key request given up on: its devices are shared with again at
/// the next send, whether the failing machine held the body or not, and
/// after a share in between read the shared-with set (which the machine
/// then keeps: the failure must retire it).
#[test]
fn a_failed_room_key_request_shares_again() {
    for (restart, read_between) in [(false, false), (true, false), (false, true)] {
        let mut w = world(megolm());
        share_unsent(&mut w);
        if restart {
            w.alice.machine = reopened(&mut w);
        }
        if read_between {
            let mut txn = w.alice.store.transaction().unwrap();
            let now = w.router.now();
            let again = w
                .alice
                .machine
                .share_room_key(&mut txn, ROOM, SharePolicy::default(), now);
            assert!(again.unwrap().shared_with.is_empty(), "pending is shared");
            txn.commit().unwrap();
        }
        let mut txn = w.alice.store.transaction().unwrap();
        let id = txn
            .load_pending_requests()
            .unwrap()
            .into_iter()
            .find(|r| matches!(r.kind, PendingKind::RoomKey { .. }))
            .unwrap()
            .request_id;
        w.alice
            .machine
            .mark_request_as_failed(&mut txn, &id)
            .unwrap();
        txn.commit().unwrap();
        assert!(handed_out(&mut w).is_empty());
        let (_, again) = send(&mut w.router, &mut w.rooms, &mut w.alice, ROOM, "y");
        assert_eq!(
            again.shared_with,
            [(w.bob.user.clone(), w.bob.device.clone())]
        );
        let read = bodies(&sync(&mut w.router, &mut w.rooms, &mut w.bob).room_events);
        assert_eq!(
            read.values().collect::<Vec<_>>(),
            ["y"],
            "restart: {restart}"
        );
    }
}

/// A body made again in a transaction that rolls back is not kept: the
/// Olm session that encrypted it was never stored, so a later message
/// from the stored state uses the same message key, and the body must not
/// go out beside it.
#[test]
fn a_rebuilt_body_is_kept_only_once_committed() {
    let mut w = world(megolm());
    share_unsent(&mut w);
    w.alice.machine = reopened(&mut w);
    let mut txn = w.alice.store.transaction().unwrap();
    let now = w.router.now();
    w.alice.machine.outgoing_requests(&mut txn, now).unwrap();
    drop(txn);
    // Another message from the session as stored.
    let mut txn = w.alice.store.transaction().unwrap();
    let bob = Recipients::Users(vec![w.bob.user.clone()]);
    w.alice
        .machine
        .encrypt_to_device(&mut txn, "m.test", &json!({"n": 1}), &bob)
        .unwrap();
    txn.commit().unwrap();
    w.router.flush(&mut w.alice);
    let got = w.router.sync(&mut w.bob);
    let types: Vec<_> = decrypted(&got.to_device)
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(types, ["m.room_key", "m.test"], "a message was lost");
    bob_reads_next(&mut w, "after a rollback");
}

//! Inbound sessions cached between syncs never stand in for a better
//! stored copy.

use crate::rooms::{ROOM, megolm, world};
use crate::rooms_router::sync;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{RoomDecryptError, RoomUpdate, SyncChanges};
use serde_json::{Value, json};

/// A late device holds the session from index 1, cached by its sync; an
/// import of the full session (index 0) then replaces it, and the next
/// sync reads the earliest message.
#[test]
fn imported_session_replaces_the_cached_one() {
    let mut w = world(megolm());
    let (early, _) = w.send("early");
    let mut bob2 = w.router.device("bob", "B2");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    w.send("late");
    sync(&mut w.router, &mut w.rooms, &mut bob2);
    let mut changes = SyncChanges::default();
    changes.rooms = vec![RoomUpdate::new(
        ROOM,
        Vec::new(),
        vec![w.rooms.event(ROOM, &early)],
        false,
    )];
    let read_early = |bob2: &mut crate::router::Peer| {
        let mut txn = bob2.store.transaction().unwrap();
        let outcome = bob2
            .machine
            .receive_sync_changes(&mut txn, &changes, w.router.now())
            .unwrap();
        txn.commit().unwrap();
        outcome.room_events[0].result.clone()
    };
    assert!(matches!(
        read_early(&mut bob2),
        Err(RoomDecryptError::UnknownIndex { first_known: 1, .. })
    ));
    let exported: Vec<Value> = {
        let mut txn = w.alice.store.transaction().unwrap();
        w.alice.machine.export_room_keys(&mut txn).unwrap()
    };
    let mut txn = bob2.store.transaction().unwrap();
    let imported = bob2.machine.import_room_keys(&mut txn, &exported).unwrap();
    txn.commit().unwrap();
    assert_eq!(imported.imported, 1);
    let read = read_early(&mut bob2).unwrap();
    assert_eq!(read.content["body"], "early");
}

/// MEG-08 in a batch decrypted ahead on every core: a replay inside the
/// same sync is caught by the batch's own record, and one in a later sync
/// by the stored one.
#[test]
fn replays_inside_a_large_batch_are_rejected() {
    let mut w = world(megolm());
    // Bob gets the key (and a first message) by a normal sync; the 40
    // messages after it come in one sync built here.
    w.send("first");
    sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let ids: Vec<String> = (0..40).map(|i| w.send(&format!("m{i}")).0).collect();
    let mut events: Vec<Value> = ids.iter().map(|id| w.rooms.event(ROOM, id)).collect();
    let mut replay = events[3].clone();
    replay["event_id"] = json!("$replayed");
    events.push(replay.clone());
    let mut deliver = |events: Vec<Value>| {
        let mut changes = SyncChanges::default();
        changes.rooms = vec![RoomUpdate::new(ROOM, Vec::new(), events, false)];
        let mut txn = w.bob.store.transaction().unwrap();
        let outcome = w
            .bob
            .machine
            .receive_sync_changes(&mut txn, &changes, w.router.now())
            .unwrap();
        txn.commit().unwrap();
        outcome.room_events
    };
    let first = deliver(events.clone());
    assert_eq!(first.len(), 41);
    assert!(first[..40].iter().all(|o| o.result.is_ok()), "{first:?}");
    assert!(
        matches!(
            first[40].result,
            Err(RoomDecryptError::Replay { index: 4, .. })
        ),
        "{:?}",
        first[40].result
    );
    // Again, in a later sync: the originals decrypt again, the replay not.
    let again = deliver(events);
    assert!(again[..40].iter().all(|o| o.result.is_ok()));
    assert!(matches!(
        again[40].result,
        Err(RoomDecryptError::Replay { .. })
    ));
}

//! Inbound sessions cached between syncs never stand in for a better
//! stored copy.

use crate::rooms::{ROOM, World, megolm, world};
use crate::rooms_router::sync;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{RoomDecryptError, RoomUpdate, SyncChanges};
use serde_json::{Value, json};

/// Bob receives `events` as one sync's timeline of the room.
fn timeline(w: &mut World, events: Vec<Value>) -> Vec<newt_crypto::RoomEventOutcome> {
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
}

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
        let outcome = bob2.apply(&changes, w.router.now());
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
    let mut deliver = |events: Vec<Value>| timeline(&mut w, events);
    let refused = |outcome: &newt_crypto::RoomEventOutcome| {
        assert!(
            matches!(
                outcome.result,
                Err(RoomDecryptError::Replay { index: 4, .. })
            ),
            "{:?}",
            outcome.result
        );
    };
    let first = deliver(events.clone());
    assert_eq!(first.len(), 41);
    assert!(first[..40].iter().all(|o| o.result.is_ok()), "{first:?}");
    refused(&first[40]);
    // Alone in a later sync, the replay meets the uses the batch saved.
    refused(&deliver(vec![replay])[0]);
    // Again, in a later sync: the originals decrypt again, the replay not.
    let again = deliver(events);
    assert!(again[..40].iter().all(|o| o.result.is_ok()));
    assert!(matches!(
        again[40].result,
        Err(RoomDecryptError::Replay { .. })
    ));
}

/// MEG-05 in a batch decrypted ahead: results are found by ciphertext,
/// and a copy of one session's ciphertext labelled with another session
/// must not be handed that result (it would read as the other session's
/// sender). It is decrypted with the session it names, and fails.
#[test]
fn ciphertext_relabelled_with_another_session_is_not_read() {
    let mut w = world(json!({"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 1}));
    let ids: Vec<String> = (0..34).map(|i| w.send(&format!("m{i}")).0).collect();
    // Bob receives every key and reads every message once.
    let read = sync(&mut w.router, &mut w.rooms, &mut w.bob);
    assert_eq!(
        read.room_events.iter().filter(|o| o.result.is_ok()).count(),
        34
    );
    let mut events: Vec<Value> = ids.iter().map(|id| w.rooms.event(ROOM, id)).collect();
    let session = |e: &Value| e["content"]["session_id"].as_str().unwrap().to_owned();
    // The source session sorts before the labelled one, so its result is
    // the one met first under that ciphertext.
    let (source, label) = if session(&events[3]) < session(&events[5]) {
        (3, 5)
    } else {
        (5, 3)
    };
    // The relabelled copy claims to be the event of the other session,
    // index 0, so only the session check stands between it and a "same
    // event".
    let mut forged = events[label].clone();
    forged["content"]["ciphertext"] = events[source]["content"]["ciphertext"].clone();
    events.insert(0, forged);
    let results = timeline(&mut w, events);
    assert!(
        matches!(results[0].result, Err(RoomDecryptError::Failed { .. })),
        "{:?}",
        results[0].result
    );
    let body = format!("m{source}");
    assert_eq!(
        results[source + 1].result.as_ref().unwrap().content["body"],
        body.as_str()
    );
    assert!(results[1..].iter().all(|o| o.result.is_ok()));
}

/// A timeline longer than one step of the decrypt pipeline (chunks
/// decrypted ahead while the one before is checked): every message reads
/// in order with its own body, and a replay of an early message placed
/// chunks later in the same sync is caught (MEG-08), as in the next one.
#[test]
fn long_timeline_reads_in_order_and_catches_late_replays() {
    let mut w = world(json!({"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 70}));
    w.send("first");
    sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let ids: Vec<String> = (0..300).map(|i| w.send(&format!("m{i}")).0).collect();
    // The keys of the later sessions come by to-device alone; the
    // timeline is delivered below, in one sync, read for the first time.
    w.router.advance(1);
    let keys_only = w.router.sync_changes(&w.bob);
    w.bob.apply(&keys_only, w.router.now());
    w.router.flush(&mut w.bob);
    let mut events: Vec<Value> = ids.iter().map(|id| w.rooms.event(ROOM, id)).collect();
    let mut replay = events[5].clone();
    replay["event_id"] = json!("$replayed");
    events.insert(280, replay);
    let mut deliver = |events: Vec<Value>| timeline(&mut w, events);
    let check = |outcomes: &[newt_crypto::RoomEventOutcome]| {
        assert_eq!(outcomes.len(), 301);
        for (i, outcome) in outcomes.iter().enumerate() {
            if i == 280 {
                assert!(
                    matches!(outcome.result, Err(RoomDecryptError::Replay { .. })),
                    "{:?}",
                    outcome.result
                );
                continue;
            }
            let n = if i < 280 { i } else { i - 1 };
            let read = outcome.result.as_ref().unwrap();
            assert_eq!(read.content["body"], format!("m{n}"), "event {i}");
            assert_eq!(outcome.event_id, ids[n]);
        }
    };
    check(&deliver(events.clone()));
    // Again: the cached, advanced sessions still read every index.
    check(&deliver(events));
}

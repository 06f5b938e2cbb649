//! A share that found nothing to do is remembered (ENC-04): each case
//! sends twice (the second share is quiet, and remembered), changes one
//! thing a share decides from, and checks the next share sees it.

use crate::rooms::{ROOM, megolm, told, world};
use crate::rooms_router::sync;
use serde_json::json;

fn quiet_world() -> crate::rooms::World {
    let mut w = world(megolm());
    w.send("one");
    let (_, quiet) = w.send("two");
    assert!(!quiet.rotated && quiet.shared_with.is_empty());
    w
}

/// Room revision: a member who joins gets the key.
#[test]
fn a_new_member_gets_the_key() {
    let mut w = quiet_world();
    let mut carol = w.carol("join");
    let (_, shared) = w.send("three");
    assert_eq!(
        shared.shared_with,
        vec![(carol.user.clone(), carol.device.clone())]
    );
    let _ = sync(&mut w.router, &mut w.rooms, &mut carol);
}

/// Room revision alone: a user already known (from another room) who
/// joins gets the key, though no device record changed.
#[test]
fn a_known_user_who_joins_gets_the_key() {
    let mut w = quiet_world();
    let mut carol = w.router.device("carol", "C1");
    w.router.introduce(&mut w.alice, &carol.user);
    w.router
        .send(&mut w.alice, &[carol.user.clone()], "m.test", json!({}));
    // Carol's device-list change (her login) is seen and done with.
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, quiet) = w.send("three");
    assert!(!quiet.rotated && quiet.shared_with.is_empty());
    w.rooms.membership(&w.router, ROOM, &carol.user, "join");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, shared) = w.send("four");
    assert_eq!(
        shared.shared_with,
        vec![(carol.user.clone(), carol.device.clone())]
    );
    let _ = sync(&mut w.router, &mut w.rooms, &mut carol);
}

/// Room revision alone: a member who leaves makes the session rotate
/// (ENC-06a), though no device record changed.
#[test]
fn a_member_who_leaves_rotates() {
    let mut w = world(megolm());
    let carol = w.carol("join");
    let (_, first) = w.send("one");
    assert!(
        first
            .shared_with
            .contains(&(carol.user.clone(), carol.device.clone()))
    );
    let (_, quiet) = w.send("two");
    assert!(!quiet.rotated && quiet.shared_with.is_empty());
    w.rooms.membership(&w.router, ROOM, &carol.user, "leave");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, after) = w.send("three");
    assert!(after.rotated, "carol left: the session must rotate");
    assert!(!after.shared_with.iter().any(|(u, _)| *u == carol.user));
}

/// Device revision: a member's new device gets the key, and a blocked
/// one is told and the session rotates.
#[test]
fn device_changes_are_seen() {
    let mut w = quiet_world();
    let bob2 = w.router.device("bob", "B2");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, shared) = w.send("three");
    assert_eq!(
        shared.shared_with,
        vec![(bob2.user.clone(), bob2.device.clone())]
    );
    let (_, quiet) = w.send("four");
    assert!(quiet.shared_with.is_empty() && !quiet.rotated);
    w.block(&bob2);
    let (_, after) = w.send("five");
    assert!(
        after.rotated,
        "a blocked device that had the key must rotate"
    );
    assert!(told(&after, "B2", "m.blacklisted"), "{after:?}");
}

/// The policy is part of what is remembered.
#[test]
fn another_policy_is_not_answered_from_memory() {
    let mut w = quiet_world();
    let strict = w.send_only_verified();
    assert!(told(&strict, "B1", "m.unverified"), "{strict:?}");
}

/// Age and count are checked every time.
#[test]
fn rotation_by_time_is_not_missed() {
    let mut w = quiet_world();
    w.router.advance(7 * 24 * 3600 * 1000 + 1);
    let (_, shared) = w.send("later");
    assert!(shared.rotated);
}

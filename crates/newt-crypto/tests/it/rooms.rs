//! Encrypted rooms, sans-I/O: ENC-*, MEG-*, WHD-*, HIS-02, REC-05.

use crate::rooms_router::{Rooms, bodies, send, send_with, sync};
use crate::router::{Peer, Router};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{RequestKind, RoomDecryptError, RoomError, SharePolicy, TrustVerdict};
use serde_json::{Value, json};

pub(crate) const ROOM: &str = "!room:example.org";

pub(crate) struct World {
    pub(crate) router: Router,
    pub(crate) rooms: Rooms,
    pub(crate) alice: Peer,
    pub(crate) bob: Peer,
}

/// Alice's encrypted room with Bob joined; both have synced.
pub(crate) fn world(encryption: Value) -> World {
    let mut router = Router::new();
    let mut rooms = Rooms::default();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    rooms.create(&router, ROOM, &alice.user, encryption);
    rooms.membership(&router, ROOM, &bob.user, "join");
    sync(&mut router, &mut rooms, &mut alice);
    sync(&mut router, &mut rooms, &mut bob);
    World {
        router,
        rooms,
        alice,
        bob,
    }
}

pub(crate) fn megolm() -> Value {
    json!({"algorithm": "m.megolm.v1.aes-sha2"})
}

impl World {
    pub(crate) fn send(&mut self, body: &str) -> (String, newt_crypto::ShareOutcome) {
        send(
            &mut self.router,
            &mut self.rooms,
            &mut self.alice,
            ROOM,
            body,
        )
    }

    /// Carol's device C1, her `membership` in the room, and Alice's sync
    /// of it.
    pub(crate) fn carol(&mut self, membership: &str) -> Peer {
        let carol = self.router.device("carol", "C1");
        let (router, rooms) = (&mut self.router, &mut self.rooms);
        rooms.membership(router, ROOM, &carol.user, membership);
        sync(router, rooms, &mut self.alice);
        carol
    }

    /// Alice blocks a device (ENC-10, WHD-01), committed.
    pub(crate) fn block(&mut self, peer: &Peer) {
        let mut txn = self.alice.store.transaction().unwrap();
        self.alice
            .machine
            .set_blocked(&mut txn, &peer.user, &peer.device, true)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Alice sends with the only-verified policy (ENC-10).
    pub(crate) fn send_only_verified(&mut self) -> newt_crypto::ShareOutcome {
        let policy = SharePolicy {
            only_verified: true,
        };
        let content = json!({"body": "v"});
        let (router, rooms, alice) = (&mut self.router, &mut self.rooms, &mut self.alice);
        send_with(router, rooms, alice, ROOM, content, policy).1
    }

    fn bob_reads(&mut self) -> std::collections::BTreeMap<String, String> {
        bodies(&sync(&mut self.router, &mut self.rooms, &mut self.bob).room_events)
    }

    fn room_key_messages(&self) -> usize {
        self.router.count(RequestKind::ToDevice)
    }
}

/// Whether a share told `device` the key is withheld with `code`.
pub(crate) fn told(outcome: &newt_crypto::ShareOutcome, device: &str, code: &str) -> bool {
    outcome
        .withheld
        .iter()
        .any(|(_, d, c)| d.as_str() == device && c == code)
}

/// ENC-03..05, MEG-01: a message reaches the other member with a trust
/// verdict; the sender reads her own message (own inbound copy).
#[test]
fn message_is_read_by_members_and_sender() {
    let mut w = world(megolm());
    let (id, shared) = w.send("hello");
    assert!(shared.rotated);
    assert_eq!(
        shared.shared_with,
        vec![(w.bob.user.clone(), w.bob.device.clone())]
    );
    let outcome = sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let event = outcome
        .room_events
        .iter()
        .find(|o| o.event_id == id)
        .unwrap()
        .result
        .clone()
        .unwrap();
    assert_eq!(event.content["body"], "hello");
    assert_eq!(event.sender, w.alice.user);
    assert_eq!(event.trust, TrustVerdict::UnverifiedDevice);
    let own = sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let own = own
        .room_events
        .iter()
        .find(|o| o.event_id == id)
        .unwrap()
        .result
        .clone()
        .unwrap();
    assert_eq!(own.trust, TrustVerdict::Verified);
    // Verifying the device changes the verdict.
    let mut txn = w.bob.store.transaction().unwrap();
    w.bob
        .machine
        .set_device_verified(&mut txn, &w.alice.user, &w.alice.device, true)
        .unwrap();
    let again = w
        .bob
        .machine
        .decrypt_room_event(
            &mut txn,
            ROOM,
            &w.rooms.rooms[ROOM].timeline.last().unwrap().clone(),
            w.router.now(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(again.trust, TrustVerdict::Verified);
}

/// ENC-03, ENC-14: the wire content has the Megolm fields and keeps
/// `m.relates_to` in the clear; a relation inside the payload is ignored.
#[test]
fn relation_stays_in_the_clear() {
    let mut w = world(megolm());
    let content = json!({"msgtype": "m.text", "body": "edit", "m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}});
    let (id, _) = send_with(
        &mut w.router,
        &mut w.rooms,
        &mut w.alice,
        ROOM,
        content,
        SharePolicy::default(),
    );
    let wire = w.rooms.event(ROOM, &id)["content"].clone();
    for field in [
        "algorithm",
        "ciphertext",
        "session_id",
        "sender_key",
        "device_id",
    ] {
        assert!(wire.get(field).is_some(), "{field} missing");
    }
    assert_eq!(wire["m.relates_to"]["event_id"], "$x");
    let outcome = sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let event = outcome.room_events[0].result.clone().unwrap();
    assert_eq!(event.content["m.relates_to"]["event_id"], "$x");
}

/// ENC-08: no rotation for a second message, a display-name change, or a
/// restart; nothing is sent to devices that already have the key.
#[test]
fn no_rotation_without_reason() {
    let mut w = world(megolm());
    let (_, first) = w.send("one");
    let sends = w.room_key_messages();
    let (_, second) = w.send("two");
    assert!(!second.rotated);
    assert_eq!(second.session_id, first.session_id);
    assert!(second.shared_with.is_empty());
    assert_eq!(w.room_key_messages(), sends, "keys were sent again");
    // Display-name change: join → join.
    w.rooms.append(
        &w.router,
        ROOM,
        w.bob.user.as_str(),
        "m.room.member",
        Some(w.bob.user.as_str()),
        json!({"membership": "join", "displayname": "Bobby"}),
    );
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, third) = w.send("three");
    assert!(!third.rotated);
    // Restart.
    let mut txn = w.alice.store.transaction().unwrap();
    w.alice.machine =
        newt_crypto::OlmMachine::open(&mut txn, &w.alice.user, &w.alice.device, w.router.now())
            .unwrap();
    txn.commit().unwrap();
    let (_, fourth) = w.send("four");
    assert!(!fourth.rotated);
    assert_eq!(fourth.session_id, first.session_id);
    assert_eq!(w.bob_reads().len(), 4);
}

/// ENC-06b: rotation by message count (honours 1).
#[test]
fn rotation_by_message_count() {
    let mut w = world(json!({"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 1}));
    let (_, first) = w.send("one");
    let (_, second) = w.send("two");
    assert!(second.rotated);
    assert_ne!(first.session_id, second.session_id);
    assert_eq!(w.bob_reads().len(), 2);
}

/// ENC-06a, ENC-09: rotation by time (honours 3 s).
#[test]
fn rotation_by_time() {
    let mut w = world(json!({"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 3000}));
    let (_, first) = w.send("one");
    w.router.advance(2000);
    assert!(!w.send("two").1.rotated);
    w.router.advance(1000);
    let (_, third) = w.send("three");
    assert!(third.rotated);
    assert_ne!(third.session_id, first.session_id);
}

/// ENC-06c, ENC-07: a member who leaves cannot read what follows.
#[test]
fn rotation_on_leave_and_leaver_cannot_read() {
    let mut w = world(megolm());
    let mut carol = w.carol("join");
    sync(&mut w.router, &mut w.rooms, &mut carol);
    let (before, first) = w.send("before");
    assert_eq!(
        bodies(&sync(&mut w.router, &mut w.rooms, &mut carol).room_events)[&before],
        "before"
    );
    w.rooms.membership(&w.router, ROOM, &carol.user, "leave");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (after, second) = w.send("after");
    assert!(second.rotated);
    assert_ne!(first.session_id, second.session_id);
    assert!(!second.shared_with.iter().any(|(u, _)| *u == carol.user));
    // Carol gets the event through some other path (a lying server).
    let event = w.rooms.event(ROOM, &after);
    let mut txn = carol.store.transaction().unwrap();
    let result = carol
        .machine
        .decrypt_room_event(&mut txn, ROOM, &event, w.router.now())
        .unwrap();
    assert!(
        matches!(result, Err(RoomDecryptError::MissingSession { .. })),
        "{result:?}"
    );
    assert_eq!(w.bob_reads()[&after], "after");
}

/// ENC-06c: a device of a member being removed rotates the session.
#[test]
fn rotation_on_device_removal() {
    let mut w = world(megolm());
    let mut bob2 = w.router.device("bob", "B2");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, first) = w.send("one");
    assert!(
        first
            .shared_with
            .contains(&(bob2.user.clone(), bob2.device.clone()))
    );
    w.router
        .device_keys
        .get_mut(&bob2.user)
        .unwrap()
        .remove("B2");
    let mut changes = newt_crypto::SyncChanges::default();
    changes.device_lists_changed = vec![bob2.user.clone()];
    w.alice.apply(&changes, w.router.now());
    let (_, second) = w.send("two");
    assert!(second.rotated);
    assert!(
        !second
            .shared_with
            .contains(&(bob2.user.clone(), bob2.device.clone()))
    );
    let _ = sync(&mut w.router, &mut w.rooms, &mut bob2);
}

/// ENC-06d, HIS-02: crossing the joined/invited ↔ shared/world_readable
/// boundary rotates; a change within one side does not.
#[test]
fn rotation_on_visibility_boundary() {
    let mut w = world(megolm());
    let (_, first) = w.send("one");
    w.rooms.append(
        &w.router,
        ROOM,
        w.alice.user.as_str(),
        "m.room.history_visibility",
        Some(""),
        json!({"history_visibility": "world_readable"}),
    );
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    assert!(
        !w.send("two").1.rotated,
        "shared → world_readable is not a boundary"
    );
    w.rooms.append(
        &w.router,
        ROOM,
        w.alice.user.as_str(),
        "m.room.history_visibility",
        Some(""),
        json!({"history_visibility": "joined"}),
    );
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (_, third) = w.send("three");
    assert!(third.rotated);
    assert_ne!(third.session_id, first.session_id);
}

/// ENC-07: after a limited sync with non-joined memberships, rotate.
#[test]
fn rotation_after_limited_sync() {
    let mut w = world(megolm());
    let _carol = w.carol("invite");
    let (_, first) = w.send("one");
    let mut changes = newt_crypto::SyncChanges::default();
    changes.rooms = vec![newt_crypto::RoomUpdate::new(ROOM, vec![], vec![], true)];
    w.alice.apply(&changes, w.router.now());
    let (_, second) = w.send("two");
    assert!(second.rotated);
    assert_ne!(first.session_id, second.session_id);
}

/// ENC-11: a new device gets the current session from the current index
/// only; earlier messages stay unreadable to it; others get nothing new.
#[test]
fn new_device_gets_current_session_only() {
    let mut w = world(megolm());
    let (early, first) = w.send("early");
    let mut bob2 = w.router.device("bob", "B2");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let (late, second) = w.send("late");
    assert!(!second.rotated);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(
        second.shared_with,
        vec![(bob2.user.clone(), bob2.device.clone())]
    );
    let outcome = sync(&mut w.router, &mut w.rooms, &mut bob2);
    let read = bodies(&outcome.room_events);
    assert_eq!(read.get(&late).map(String::as_str), Some("late"));
    let early_event = w.rooms.event(ROOM, &early);
    let mut txn = bob2.store.transaction().unwrap();
    let early_result = bob2
        .machine
        .decrypt_room_event(&mut txn, ROOM, &early_event, w.router.now())
        .unwrap();
    assert!(
        matches!(
            early_result,
            Err(RoomDecryptError::UnknownIndex {
                first_known: 1,
                index: 0,
                ..
            })
        ),
        "{early_result:?}"
    );
}

/// Two sends racing in one room share one session and one key-share run.
#[test]
fn racing_sends_share_once() {
    let mut w = world(megolm());
    let users = {
        let mut txn = w.alice.store.transaction().unwrap();
        w.alice.machine.room_key_recipients(&mut txn, ROOM).unwrap()
    };
    crate::router::Router::introduce(&mut w.router, &mut w.alice, &users[1]);
    let mut txn = w.alice.store.transaction().unwrap();
    w.alice
        .machine
        .get_missing_sessions(
            &mut txn,
            &newt_crypto::Recipients::Users(users),
            w.router.now(),
        )
        .unwrap();
    txn.commit().unwrap();
    w.router.flush(&mut w.alice);
    let mut txn = w.alice.store.transaction().unwrap();
    let one = w
        .alice
        .machine
        .share_room_key(&mut txn, ROOM, SharePolicy::default(), w.router.now())
        .unwrap();
    let two = w
        .alice
        .machine
        .share_room_key(&mut txn, ROOM, SharePolicy::default(), w.router.now())
        .unwrap();
    txn.commit().unwrap();
    assert_eq!(one.session_id, two.session_id);
    assert!(!one.shared_with.is_empty());
    assert!(two.shared_with.is_empty() && !two.rotated);
    // ENC-04: encryption waits until the share requests were sent.
    let mut txn = w.alice.store.transaction().unwrap();
    let early = w.alice.machine.encrypt_room_event(
        &mut txn,
        ROOM,
        "m.room.message",
        &json!({"body": "x"}),
        w.router.now(),
    );
    assert!(matches!(early, Err(RoomError::KeyNotShared(_))));
    drop(txn);
    w.router.flush(&mut w.alice);
    let mut txn = w.alice.store.transaction().unwrap();
    assert!(
        w.alice
            .machine
            .encrypt_room_event(
                &mut txn,
                ROOM,
                "m.room.message",
                &json!({"body": "x"}),
                w.router.now()
            )
            .is_ok()
    );
}

/// ENC-10, ENC-13, WHD-01..03: blocked devices get `m.blacklisted`, a
/// device without an Olm session one `m.no_olm`, and with the policy on,
/// unverified devices `m.unverified`; the recipient's UTD says why.
#[test]
fn withheld_codes() {
    let mut w = world(megolm());
    let mut bob2 = w.router.device("bob", "B2");
    let mut bob3 = w.router.device("bob", "B3");
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    w.block(&bob2);
    // B3 has no keys left to claim and its server hands out nothing.
    w.router.tamper_claim = Some(Box::new(|resp: &mut Value| {
        if let Some(devices) = resp
            .pointer_mut("/one_time_keys/@bob:example.org")
            .and_then(Value::as_object_mut)
        {
            devices.remove("B3");
        }
    }));
    let (id, shared) = w.send("secret");
    let codes: Vec<(String, String)> = shared
        .withheld
        .iter()
        .map(|(_, d, c)| (d.to_string(), c.clone()))
        .collect();
    assert!(
        codes.contains(&("B2".into(), "m.blacklisted".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("B3".into(), "m.no_olm".into())),
        "{codes:?}"
    );
    assert_eq!(
        w.bob_reads()[&id],
        "secret",
        "one bad device blocked the others"
    );
    let out2 = sync(&mut w.router, &mut w.rooms, &mut bob2);
    let r2 = out2.room_events.iter().find(|o| o.event_id == id).unwrap();
    assert!(
        matches!(&r2.result, Err(RoomDecryptError::Withheld { code, .. }) if code == "m.blacklisted"),
        "{r2:?}"
    );
    let out3 = sync(&mut w.router, &mut w.rooms, &mut bob3);
    let r3 = out3.room_events.iter().find(|o| o.event_id == id).unwrap();
    assert!(
        matches!(&r3.result, Err(RoomDecryptError::Withheld { code, .. }) if code == "m.no_olm"),
        "{r3:?}"
    );
    // WHD-03: no second m.no_olm while still no session.
    let (_, again) = w.send("again");
    assert!(
        !again
            .withheld
            .iter()
            .any(|(_, d, c)| d.as_str() == "B3" && c == "m.no_olm")
    );
    // Policy: only verified devices.
    w.router.tamper_claim = None;
    let verified_only = w.send_only_verified();
    assert!(
        told(&verified_only, "B1", "m.unverified"),
        "{verified_only:?}"
    );
}

/// MEG-08: the same event decrypts again; another event with a used
/// index is a replay.
#[test]
fn replayed_index_is_rejected() {
    let mut w = world(megolm());
    let (id, _) = w.send("once");
    sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let original = w.rooms.event(ROOM, &id);
    let mut txn = w.bob.store.transaction().unwrap();
    assert!(
        w.bob
            .machine
            .decrypt_room_event(&mut txn, ROOM, &original, w.router.now())
            .unwrap()
            .is_ok()
    );
    let mut replay = original.clone();
    replay["event_id"] = json!("$replayed");
    let result = w
        .bob
        .machine
        .decrypt_room_event(&mut txn, ROOM, &replay, w.router.now())
        .unwrap();
    assert!(
        matches!(result, Err(RoomDecryptError::Replay { index: 0, .. })),
        "{result:?}"
    );
}

/// MEG-09: an event moved to another room is rejected.
#[test]
fn event_moved_to_another_room_is_rejected() {
    let mut w = world(megolm());
    let (id, _) = w.send("here");
    sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let event = w.rooms.event(ROOM, &id);
    let mut txn = w.bob.store.transaction().unwrap();
    let result = w
        .bob
        .machine
        .decrypt_room_event(&mut txn, "!other:example.org", &event, w.router.now())
        .unwrap();
    // The session is stored for the original room only (MEG-05).
    assert!(
        matches!(result, Err(RoomDecryptError::MissingSession { .. })),
        "{result:?}"
    );
    // A session stored under the other room too cannot pass MEG-09.
    let record = txn
        .load_inbound(ROOM, event["content"]["session_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    let moved = newt_crypto::store::InboundRecord {
        room_id: "!other:example.org".into(),
        ..record
    };
    txn.save_inbound(&moved).unwrap();
    let result = w
        .bob
        .machine
        .decrypt_room_event(&mut txn, "!other:example.org", &event, w.router.now())
        .unwrap();
    assert!(
        matches!(result, Err(RoomDecryptError::WrongRoom { .. })),
        "{result:?}"
    );
}

/// MEG-10: a rewritten event sender is flagged.
#[test]
fn rewritten_sender_is_flagged() {
    let mut w = world(megolm());
    let (id, _) = w.send("mine");
    sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let mut event = w.rooms.event(ROOM, &id);
    event["sender"] = json!("@mallory:example.org");
    let mut txn = w.bob.store.transaction().unwrap();
    let result = w
        .bob
        .machine
        .decrypt_room_event(&mut txn, ROOM, &event, w.router.now())
        .unwrap()
        .unwrap();
    assert_eq!(result.trust, TrustVerdict::MismatchedSender);
}

/// REC-05: an event that arrives before its key is kept and decrypted
/// when the key arrives.
#[test]
fn late_key_decrypts_earlier_events() {
    let mut w = world(megolm());
    let (id, _) = w.send("early bird");
    // Bob sees the timeline first, without the to-device key.
    let held = w.router.take_inbox(&w.bob.user, "B1");
    let first = sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let utd = first.room_events.iter().find(|o| o.event_id == id).unwrap();
    assert!(matches!(
        utd.result,
        Err(RoomDecryptError::MissingSession { .. })
    ));
    for event in held {
        w.router.inject(&w.bob.user, "B1", event);
    }
    let second = sync(&mut w.router, &mut w.rooms, &mut w.bob);
    let late = second
        .room_events
        .iter()
        .find(|o| o.event_id == id)
        .unwrap();
    assert!(late.late);
    assert_eq!(late.result.as_ref().unwrap().content["body"], "early bird");
}

/// ENC-02: a later `m.room.encryption` cannot turn encryption off, and
/// the machine reports the room encrypted so plaintext is refused.
#[test]
fn encryption_cannot_be_downgraded() {
    let mut w = world(megolm());
    w.rooms.append(
        &w.router,
        ROOM,
        w.bob.user.as_str(),
        "m.room.encryption",
        Some(""),
        json!({"algorithm": "m.plain"}),
    );
    w.rooms.append(
        &w.router,
        ROOM,
        w.bob.user.as_str(),
        "m.room.encryption",
        Some(""),
        json!({}),
    );
    sync(&mut w.router, &mut w.rooms, &mut w.alice);
    let mut txn = w.alice.store.transaction().unwrap();
    assert!(w.alice.machine.is_room_encrypted(&mut txn, ROOM).unwrap());
    drop(txn);
    let (id, _) = w.send("still secret");
    assert_eq!(w.bob_reads()[&id], "still secret");
}

/// MEG-03, MEG-07: a room key whose ID does not match is refused; a key
/// that starts later does not replace one we hold from earlier.
#[test]
fn room_key_checks() {
    use newt_crypto::vodozemac::megolm::{GroupSession, SessionConfig};
    let mut w = world(megolm());
    let raw = crate::raw_peer::RawPeer::new(&mut w.router, "eve", "E1");
    crate::router::Router::introduce(&mut w.router, &mut w.bob, &raw.user);
    let mut group = GroupSession::new(SessionConfig::version_1());
    let key_at_0 = group.session_key().to_base64();
    let id = group.session_id();
    let _ = group.encrypt("m1");
    let key_at_1 = group.session_key().to_base64();
    let send_key = |w: &mut World, session_id: &str, key: &str| {
        let mut session = raw.session_to(&mut w.router, &w.bob);
        let plain = raw.plaintext(&w.bob, "m.room_key", json!({
            "algorithm": "m.megolm.v1.aes-sha2", "room_id": ROOM, "session_id": session_id, "session_key": key,
        }));
        let event = raw.event(&mut session, &w.bob, raw.user.as_str(), &plain);
        w.router.inject(&w.bob.user, "B1", event);
        sync(&mut w.router, &mut w.rooms, &mut w.bob);
    };
    send_key(&mut w, "wrong-id", &key_at_0);
    let mut txn = w.bob.store.transaction().unwrap();
    assert!(txn.load_inbound(ROOM, "wrong-id").unwrap().is_none());
    assert!(txn.load_inbound(ROOM, &id).unwrap().is_none());
    drop(txn);
    send_key(&mut w, &id, &key_at_0);
    send_key(&mut w, &id, &key_at_1);
    let mut txn = w.bob.store.transaction().unwrap();
    assert_eq!(
        txn.load_inbound(ROOM, &id)
            .unwrap()
            .unwrap()
            .info
            .first_known_index,
        0
    );
}

/// EXP-01, EXP-04: keys exported from one device and imported into a new
/// one open the events it never got keys for, marked as not
/// authenticated; `explain` names the reason before the import.
#[test]
fn export_import_opens_history_unauthenticated() {
    let mut w = world(megolm());
    let (id, _) = w.send("history");
    w.bob_reads();
    let mut bob2 = w.router.device("bob", "B2");
    let event = w.rooms.event(ROOM, &id);
    let mut txn = bob2.store.transaction().unwrap();
    let why = bob2
        .machine
        .explain_room_event(&mut txn, ROOM, &event)
        .unwrap();
    assert!(matches!(
        why.reason,
        Some(RoomDecryptError::MissingSession { .. })
    ));
    assert!(!why.have_session);
    assert!(why.advice.contains("import"), "{}", why.advice);
    let result = bob2
        .machine
        .decrypt_room_event(&mut txn, ROOM, &event, w.router.now())
        .unwrap();
    assert!(result.is_err());
    txn.commit().unwrap();

    let exported = {
        let mut txn = w.bob.store.transaction().unwrap();
        w.bob.machine.export_room_keys(&mut txn).unwrap()
    };
    assert_eq!(exported.len(), 1);
    let file = newt_crypto::key_export::encrypt(
        serde_json::to_string(&exported).unwrap().as_bytes(),
        "pw",
        1000,
    )
    .unwrap();
    let plain = newt_crypto::key_export::decrypt(&file, "pw").unwrap();
    let sessions: Vec<Value> = serde_json::from_slice(&plain).unwrap();
    let mut txn = bob2.store.transaction().unwrap();
    let outcome = bob2.machine.import_room_keys(&mut txn, &sessions).unwrap();
    txn.commit().unwrap();
    assert_eq!(outcome.imported, 1);
    let late = outcome
        .room_events
        .iter()
        .find(|o| o.event_id == id)
        .expect("the stored UTD was not retried");
    let read = late.result.as_ref().unwrap();
    assert_eq!(read.content["body"], "history");
    assert_eq!(read.trust, TrustVerdict::AuthenticityNotGuaranteed);
    // Importing again changes nothing.
    let mut txn = bob2.store.transaction().unwrap();
    let again = bob2.machine.import_room_keys(&mut txn, &sessions).unwrap();
    assert_eq!((again.imported, again.unchanged), (0, 1));
    // MEG-07: an import never downgrades a session held from a room key.
    let mut txn = w.bob.store.transaction().unwrap();
    let same = w.bob.machine.import_room_keys(&mut txn, &sessions).unwrap();
    assert_eq!(same.imported, 0);
    let own = w
        .bob
        .machine
        .decrypt_room_event(&mut txn, ROOM, &event, w.router.now())
        .unwrap()
        .unwrap();
    assert_eq!(own.trust, TrustVerdict::UnverifiedDevice);
}

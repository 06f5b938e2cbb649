//! The Olm channel between newt devices: CLM-*, OLM-01..08, OLM-11..13,
//! REC-01..03, TD-04.

use crate::raw_peer::RawPeer;
use crate::router::{Peer, Router, decrypted, rejected};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{RequestKind, SenderTrust, ToDeviceError, ToDeviceOutcome};
use serde_json::json;

/// OLM-01..03, CLM-03: a message each way between two users; the reply
/// reuses the session the first message made (no second claim).
#[test]
fn messages_flow_both_ways() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    let sent = router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    assert_eq!(sent.sent_to, vec![(bob.user.clone(), bob.device.clone())]);
    let got = router.sync(&mut bob);
    let events = decrypted(&got.to_device);
    assert_eq!(events.len(), 1, "{:?}", got.to_device);
    assert_eq!(events[0].event_type, "m.test");
    assert_eq!(events[0].content, json!({"n": 1}));
    assert_eq!(events[0].sender, alice.user);
    assert_eq!(events[0].sender_device.as_ref(), Some(&alice.device));
    assert_eq!(events[0].trust, SenderTrust::KnownDevice);

    let claims = router.count(RequestKind::KeysClaim);
    router.send(&mut bob, &[alice.user.clone()], "m.test", json!({"n": 2}));
    assert_eq!(
        router.count(RequestKind::KeysClaim),
        claims,
        "bob claimed although a session existed"
    );
    let got = router.sync(&mut alice);
    assert_eq!(decrypted(&got.to_device)[0].content, json!({"n": 2}));
    // And once more from alice over the same session.
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 3}));
    assert_eq!(
        decrypted(&router.sync(&mut bob).to_device)[0].content,
        json!({"n": 3})
    );
    assert_eq!(router.count(RequestKind::KeysClaim), claims);
}

/// OLM-02, OLM-03: the plaintext names sender and recipient with their
/// keys and carries our signed device keys.
#[test]
fn plaintext_carries_both_identities() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut raw = RawPeer::new(&mut router, "bob", "RAW");
    router.send(
        &mut alice,
        &[raw.user.clone()],
        "m.test",
        json!({"x": true}),
    );
    let events = router.take_inbox(&raw.user, "RAW");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["content"]["sender_key"],
        alice.machine.curve25519_key()
    );
    let plain = raw.open(&events[0]);
    assert_eq!(plain["type"], "m.test");
    assert_eq!(plain["content"], json!({"x": true}));
    assert_eq!(plain["sender"], alice.user.as_str());
    assert_eq!(plain["recipient"], raw.user.as_str());
    assert_eq!(plain["recipient_keys"]["ed25519"], raw.ed25519());
    assert_eq!(plain["keys"]["ed25519"], alice.machine.ed25519_key());
    assert_eq!(&plain["sender_device_keys"], alice.machine.device_keys());
}

/// Messages to every device of several users; each device decrypts its
/// own copy; a device without keys never blocks the others (CLM-02).
#[test]
fn three_devices_two_users_every_direction() {
    let mut router = Router::new();
    let mut a1 = router.device("alice", "A1");
    let mut a2 = router.device("alice", "A2");
    let mut b1 = router.device("bob", "B1");
    let (alice, bob) = (a1.user.clone(), b1.user.clone());
    // A1 learns about A2 from its sync's device-list changes (TRK-02).
    router.sync(&mut a1);
    router.send(
        &mut a1,
        &[alice.clone(), bob.clone()],
        "m.test",
        json!({"from": "a1"}),
    );
    assert_eq!(
        decrypted(&router.sync(&mut a2).to_device)[0].content["from"],
        "a1"
    );
    assert_eq!(
        decrypted(&router.sync(&mut b1).to_device)[0].content["from"],
        "a1"
    );
    assert!(
        router.sync(&mut a1).to_device.is_empty(),
        "a device never sends to itself"
    );
    router.send(&mut b1, &[alice.clone()], "m.test", json!({"from": "b1"}));
    assert_eq!(
        decrypted(&router.sync(&mut a1).to_device)[0].content["from"],
        "b1"
    );
    assert_eq!(
        decrypted(&router.sync(&mut a2).to_device)[0].content["from"],
        "b1"
    );
    router.send(
        &mut a2,
        &[alice.clone(), bob.clone()],
        "m.test",
        json!({"from": "a2"}),
    );
    assert_eq!(
        decrypted(&router.sync(&mut a1).to_device)[0].content["from"],
        "a2"
    );
    assert_eq!(
        decrypted(&router.sync(&mut b1).to_device)[0].content["from"],
        "a2"
    );
}

/// OLM-12: events are processed strictly in order, across syncs.
#[test]
fn order_is_kept_across_syncs() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    let mut seen = Vec::new();
    for n in 0..30 {
        router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": n}));
        if n % 7 == 6 {
            seen.extend(
                decrypted(&router.sync(&mut bob).to_device)
                    .iter()
                    .map(|e| e.content["n"].as_i64().unwrap()),
            );
        }
    }
    seen.extend(
        decrypted(&router.sync(&mut bob).to_device)
            .iter()
            .map(|e| e.content["n"].as_i64().unwrap()),
    );
    assert_eq!(seen, (0..30).collect::<Vec<_>>());
}

/// CLM-03, CLM-05: a reply goes over the session that just received
/// (a normal message, not a new pre-key session).
#[test]
fn reply_uses_the_session_that_received() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    router.sync(&mut bob);
    router.send(&mut bob, &[alice.user.clone()], "m.test", json!({"n": 2}));
    let events = router.take_inbox(&alice.user, "A1");
    assert_eq!(
        events[0]["content"]["ciphertext"][alice.machine.curve25519_key()]["type"],
        1
    );
}

/// OLM-05: an event without our key is not for us.
#[test]
fn event_for_another_device_is_rejected() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    let carol = router.device("carol", "C1");
    router.send(&mut alice, &[carol.user.clone()], "m.test", json!({}));
    let mut events = router.take_inbox(&carol.user, "C1");
    router.inject(&bob.user, "B1", events.remove(0));
    assert_eq!(
        rejected(&router.sync(&mut bob).to_device),
        vec![ToDeviceError::NotForThisDevice]
    );
}

/// OLM-06, OLM-07: a replayed pre-key message is refused and creates
/// nothing, even though it names a valid one-time key.
#[test]
fn replayed_prekey_message_is_refused() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.introduce(&mut bob, &alice.user);
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    let events = router.take_inbox(&bob.user, "B1");
    router.inject(&bob.user, "B1", events[0].clone());
    router.inject(&bob.user, "B1", events[0].clone());
    let outcomes = router.sync(&mut bob).to_device;
    assert_eq!(decrypted(&outcomes).len(), 1);
    assert_eq!(rejected(&outcomes), vec![ToDeviceError::Replay]);
}

/// OLM-13: a redacted event (empty content) is skipped.
#[test]
fn redacted_event_is_skipped() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    router.inject(
        &bob.user,
        "B1",
        json!({"sender": "@alice:example.org", "type": "m.room.encrypted", "content": {}}),
    );
    assert!(router.sync(&mut bob).to_device.is_empty());
}

/// TD-03: unknown plain event types pass through for the application.
#[test]
fn plain_events_of_other_types_pass_through() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    router.inject(&bob.user, "B1", json!({"sender": "@alice:example.org", "type": "m.key.verification.request", "content": {"a": 1}}));
    let outcome = router.sync(&mut bob).to_device;
    assert!(
        matches!(&outcome[0], ToDeviceOutcome::Plain { event_type, .. } if event_type == "m.key.verification.request")
    );
}

/// TD-04: if the sync's transaction is not committed (a crash), nothing
/// of it happened: the same events decrypt when delivered again.
#[test]
fn uncommitted_sync_can_be_replayed() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.introduce(&mut bob, &alice.user);
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    let changes = router.sync_changes(&bob);
    {
        let mut txn = bob.store.transaction().unwrap();
        let outcome = bob
            .machine
            .receive_sync_changes(&mut txn, &changes, router.now())
            .unwrap();
        assert_eq!(decrypted(&outcome.to_device).len(), 1);
        // Crash: dropped without commit.
    }
    let outcome = bob.apply(&changes, router.now());
    assert_eq!(decrypted(&outcome.to_device)[0].content, json!({"n": 1}));
}

/// OLM-08, REC-01..03: a message no session can decrypt (here: garbled,
/// as if bob had lost the session) makes bob replace the session and send
/// `m.dummy` over the new one, at most once an hour; alice's next message
/// then decrypts.
#[test]
fn broken_session_recovers_through_dummy() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    router.sync(&mut bob);
    router.send(&mut bob, &[alice.user.clone()], "m.test", json!({"n": 2}));
    router.sync(&mut alice);

    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 3}));
    let mut broken = router.take_inbox(&bob.user, "B1");
    let body = &mut broken[0]["content"]["ciphertext"][bob.machine.curve25519_key()];
    assert_eq!(body["type"], 1);
    body["body"] = json!(garble(body["body"].as_str().unwrap()));
    router.inject(&bob.user, "B1", broken.remove(0));
    let claims_before = router.count(RequestKind::KeysClaim);
    let outcome = router.sync(&mut bob).to_device;
    assert_eq!(rejected(&outcome), vec![ToDeviceError::NoSession]);
    assert_eq!(
        router.count(RequestKind::KeysClaim),
        claims_before + 1,
        "no new session was claimed"
    );
    let dummies = router.take_inbox(&alice.user, "A1");
    assert_eq!(dummies.len(), 1, "no m.dummy was sent");
    assert_eq!(
        dummies[0]["content"]["ciphertext"][alice.machine.curve25519_key()]["type"],
        0
    );
    router.inject(&alice.user, "A1", dummies[0].clone());
    let got = router.sync(&mut alice).to_device;
    assert_eq!(decrypted(&got)[0].event_type, "m.dummy");
    // The next message goes over the new session and decrypts.
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 4}));
    let got = router.sync(&mut bob).to_device;
    assert_eq!(decrypted(&got).last().unwrap().content, json!({"n": 4}));

    // REC-03: another failure within the hour makes no new session...
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 5}));
    let mut again = router.take_inbox(&bob.user, "B1");
    let body = &mut again[0]["content"]["ciphertext"][bob.machine.curve25519_key()];
    body["body"] = json!(garble(body["body"].as_str().unwrap()));
    let garbled = again.remove(0);
    router.inject(&bob.user, "B1", garbled.clone());
    let claims = router.count(RequestKind::KeysClaim);
    router.sync(&mut bob);
    assert_eq!(
        router.count(RequestKind::KeysClaim),
        claims,
        "replaced twice within an hour"
    );
    // ...but one after the hour does.
    router.advance(60 * 60 * 1000);
    router.inject(&bob.user, "B1", garbled);
    router.sync(&mut bob);
    assert_eq!(router.count(RequestKind::KeysClaim), claims + 1);
}

/// Flips bits in the middle of a base64 Olm message body so no session
/// decrypts it while it still parses.
fn garble(body: &str) -> String {
    let mut bytes = newt_crypto::b64::decode(body).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes[mid + 1] ^= 0xff;
    newt_crypto::b64::encode(bytes)
}

/// OLM-11: an event from a device we have not fetched yet waits for the
/// query and is then released, bound to the device.
#[test]
fn event_from_unknown_device_waits_for_keys() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.send(
        &mut alice,
        &[bob.user.clone()],
        "m.room_key",
        json!({"k": 1}),
    );
    let changes = router.sync_changes(&bob);
    let outcome = bob.apply(&changes, router.now());
    assert!(
        matches!(&outcome.to_device[0], ToDeviceOutcome::Queued { sender } if *sender == alice.user)
    );
    let released = router.flush_released(&mut bob);
    let events = decrypted(&released);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].content, json!({"k": 1}));
    assert_eq!(events[0].trust, SenderTrust::KnownDevice);
}

/// OLM-11, TRK-11: while the sender's server fails, its events stay
/// queued (never dropped); they are released once a query works.
#[test]
fn queued_events_survive_failing_queries() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.send(
        &mut alice,
        &[bob.user.clone()],
        "m.room_key",
        json!({"k": 1}),
    );
    router.failing_servers = vec!["example.org".into()];
    let outcome = router.sync(&mut bob);
    assert!(matches!(
        outcome.to_device[0],
        ToDeviceOutcome::Queued { .. }
    ));
    router.failing_servers.clear();
    assert!(
        router.flush_released(&mut bob).is_empty(),
        "retried before the backoff passed"
    );
    router.advance(16_000);
    let released = router.flush_released(&mut bob);
    assert_eq!(decrypted(&released)[0].content, json!({"k": 1}));
}

/// A restart (machine and store reopened) carries on the conversation
/// with the same session.
#[test]
fn restart_keeps_sessions() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let mut bob = router.device("bob", "B1");
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 1}));
    router.sync(&mut bob);
    let mut txn = alice.store.transaction().unwrap();
    alice.machine =
        newt_crypto::OlmMachine::open(&mut txn, &alice.user, &alice.device, router.now()).unwrap();
    txn.commit().unwrap();
    let claims = router.count(RequestKind::KeysClaim);
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({"n": 2}));
    assert_eq!(router.count(RequestKind::KeysClaim), claims);
    assert_eq!(
        decrypted(&router.sync(&mut bob).to_device)[0].content,
        json!({"n": 2})
    );
}

/// Alice knows bob's device and has planned a claim for it.
fn alice_claiming_bob(router: &mut Router) -> (Peer, Peer, Vec<newt_crypto::OutgoingRequest>) {
    use newt_crypto::Recipients;
    let mut alice = router.device("alice", "A1");
    let bob = router.device("bob", "B1");
    router.introduce(&mut alice, &bob.user);
    let recipients = Recipients::Users(vec![bob.user.clone()]);
    let mut txn = alice.store.transaction().unwrap();
    let claims = alice
        .machine
        .get_missing_sessions(&mut txn, &recipients, router.now())
        .unwrap();
    txn.commit().unwrap();
    (alice, bob, claims)
}

/// TD-01, TD-02: one request carries one event type; until it is
/// answered the same request (path with its transaction ID, and body) is
/// handed out again, also after a restart.
#[test]
fn to_device_request_is_stable_until_answered() {
    use newt_crypto::Recipients;
    let mut router = Router::new();
    let (mut alice, bob, _) = alice_claiming_bob(&mut router);
    let recipients = Recipients::Users(vec![bob.user.clone()]);
    router.flush(&mut alice);
    let mut txn = alice.store.transaction().unwrap();
    alice
        .machine
        .encrypt_to_device(&mut txn, "m.test", &json!({}), &recipients)
        .unwrap();
    let first = alice
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap();
    txn.commit().unwrap();
    let sends: Vec<_> = first
        .into_iter()
        .filter(|r| r.kind() == RequestKind::ToDevice)
        .collect();
    assert_eq!(sends.len(), 1);
    assert!(
        sends[0]
            .path()
            .starts_with("/_matrix/client/v3/sendToDevice/m.room.encrypted/")
    );
    let mut txn = alice.store.transaction().unwrap();
    alice.machine =
        newt_crypto::OlmMachine::open(&mut txn, &alice.user, &alice.device, router.now()).unwrap();
    let again: Vec<_> = alice
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap()
        .into_iter()
        .filter(|r| r.kind() == RequestKind::ToDevice)
        .collect();
    txn.commit().unwrap();
    assert_eq!(again, sends);
    router.flush(&mut alice);
    let mut txn = alice.store.transaction().unwrap();
    let left = alice
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap();
    assert!(left.iter().all(|r| r.kind() != RequestKind::ToDevice));
}

/// A claim response that is not an object changes nothing; a device whose
/// keys are not an object gets no key (CLM-02) and backs off.
#[test]
fn malformed_claim_responses() {
    use newt_crypto::{ClaimFailure, ResponseError};
    let mut router = Router::new();
    let (mut alice, bob, claims) = alice_claiming_bob(&mut router);
    let mut txn = alice.store.transaction().unwrap();
    assert_eq!(claims.len(), 1);
    let id = claims[0].request_id();
    for bad in ["[]", r#"{"one_time_keys": []}"#, "{"] {
        let result = alice
            .machine
            .mark_request_as_sent(&mut txn, id, bad, router.now());
        assert!(
            matches!(result, Err(ResponseError::Malformed(_))),
            "{bad}: {result:?}"
        );
    }
    let body = json!({"one_time_keys": {bob.user.as_str(): {"B1": "not keys"}}});
    let outcome = alice
        .machine
        .mark_request_as_sent(&mut txn, id, &body.to_string(), router.now())
        .unwrap();
    let failed = outcome.claim.unwrap().failed;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].2, ClaimFailure::NoKey);
    let devices = txn.load_devices(&bob.user).unwrap();
    assert_eq!(devices[0].local.claim_failures, 1);
    assert!(devices[0].local.claim_retry_at_ms.is_some());
}

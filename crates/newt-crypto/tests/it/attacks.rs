//! Forged payloads and lying servers: each is rejected with a typed
//! reason and nothing is stored or trusted (OLM-07, OLM-09, OLM-10,
//! MEG-02, TRK-06..08, CLM-01).

use crate::raw_peer::RawPeer;
use crate::router::{Peer, Router, decrypted, rejected};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::vodozemac::Curve25519PublicKey;
use newt_crypto::vodozemac::olm::Account;
use newt_crypto::{ClaimFailure, DeviceKeysError, DeviceRejection, SenderTrust, ToDeviceError};
use serde_json::{Value, json};

/// Bob (newt) and Eve (raw), who know each other's devices.
fn setup() -> (Router, Peer, RawPeer) {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "EVE1");
    router.introduce(&mut bob, &eve.user);
    (router, bob, eve)
}

fn sessions_with(bob: &mut Peer, key: &str) -> usize {
    let mut txn = bob.store.transaction().unwrap();
    txn.load_olm_sessions(key).unwrap().len()
}

/// Bob starts tracking `user`; the outcomes of the queries that follow.
fn track(
    router: &mut Router,
    bob: &mut Peer,
    user: &newt_crypto::ruma::OwnedUserId,
) -> Vec<newt_crypto::ResponseOutcome> {
    let mut txn = bob.store.transaction().unwrap();
    bob.machine
        .update_tracked_users(&mut txn, std::slice::from_ref(user))
        .unwrap();
    txn.commit().unwrap();
    router.flush(bob)
}

/// Has the server list `keys`, signed by `signer` for eve's user ID, as
/// eve's device EVE1.
fn serve_resigned_eve1(router: &mut Router, eve: &RawPeer, mut keys: Value, signer: &Account) {
    keys.as_object_mut().unwrap().remove("signatures");
    let Value::Object(mut map) = keys else {
        unreachable!()
    };
    newt_crypto::signing::sign_json(&mut map, eve.user.as_str(), "ed25519:EVE1", |m| {
        signer.sign(m)
    })
    .unwrap();
    let keys = Value::Object(map);
    router.tamper_query = Some(Box::new(move |resp: &mut Value| {
        if let Some(d) = resp.pointer_mut("/device_keys/@eve:example.org/EVE1") {
            *d = keys.clone();
        }
    }));
}

/// Sends eve's `plaintext` to bob as `outer_sender` and returns the
/// rejection; checks nothing was stored (OLM-07).
fn forged(
    router: &mut Router,
    bob: &mut Peer,
    eve: &RawPeer,
    outer_sender: &str,
    plaintext: &Value,
) -> ToDeviceError {
    let mut session = eve.session_to(router, bob);
    let event = eve.event(&mut session, bob, outer_sender, plaintext);
    router.inject(&bob.user, "B1", event);
    let outcome = router.sync(bob).to_device;
    let errors = rejected(&outcome);
    assert_eq!(errors.len(), 1, "not rejected: {outcome:?}");
    assert_eq!(
        sessions_with(bob, &eve.curve25519()),
        0,
        "a rejected message left a session"
    );
    errors[0].clone()
}

/// Claims one of bob's one-time keys; returns it and bob's identity key.
fn claim_one_time_key(
    router: &mut Router,
    bob: &Peer,
) -> (Curve25519PublicKey, Curve25519PublicKey) {
    let body = json!({"one_time_keys": {bob.user.as_str(): {"B1": "signed_curve25519"}}});
    let claimed = router.claim(&body);
    let keys = claimed["one_time_keys"][bob.user.as_str()]["B1"]
        .as_object()
        .unwrap();
    let otk = keys.values().next().unwrap()["key"].as_str().unwrap();
    let otk = Curve25519PublicKey::from_base64(otk).unwrap();
    let theirs = Curve25519PublicKey::from_base64(bob.machine.curve25519_key()).unwrap();
    (otk, theirs)
}

/// A message from Eve on a new session from Bob's claimed one-time key:
/// a pre-key message that uses the key.
fn on_new_session(
    eve: &RawPeer,
    bob: &Peer,
    otk: Curve25519PublicKey,
    theirs: Curve25519PublicKey,
    plain: &Value,
) -> Value {
    let config = newt_crypto::vodozemac::olm::SessionConfig::version_1();
    let mut session = eve
        .account
        .create_outbound_session(config, theirs, otk)
        .unwrap();
    eve.event(&mut session, bob, eve.user.as_str(), plain)
}

/// OLM-07: the one-time key a rejected pre-key message used is still
/// there: a correct message on a session from the same key decrypts.
#[test]
fn rejected_message_does_not_consume_the_one_time_key() {
    let (mut router, mut bob, eve) = setup();
    let (otk, theirs) = claim_one_time_key(&mut router, &bob);
    let mut plain = eve.plaintext(&bob, "m.test", json!({}));
    plain["recipient"] = json!("@someone:example.org");
    router.inject(
        &bob.user,
        "B1",
        on_new_session(&eve, &bob, otk, theirs, &plain),
    );
    assert_eq!(
        rejected(&router.sync(&mut bob).to_device),
        vec![ToDeviceError::RecipientMismatch]
    );
    let plain = eve.plaintext(&bob, "m.test", json!({"ok": true}));
    router.inject(
        &bob.user,
        "B1",
        on_new_session(&eve, &bob, otk, theirs, &plain),
    );
    let outcome = router.sync(&mut bob).to_device;
    assert_eq!(
        decrypted(&outcome)[0].content,
        json!({"ok": true}),
        "{outcome:?}"
    );
}

/// OLM-07: a one-time key is used once. After a pre-key message on it was
/// accepted (and committed), a second new session on the same key is
/// refused: the account was saved without it.
#[test]
fn accepted_prekey_message_uses_up_its_key() {
    let (mut router, mut bob, eve) = setup();
    let (otk, theirs) = claim_one_time_key(&mut router, &bob);
    for n in 0..2 {
        let plain = eve.plaintext(&bob, "m.test", json!({ "n": n }));
        router.inject(
            &bob.user,
            "B1",
            on_new_session(&eve, &bob, otk, theirs, &plain),
        );
        let outcome = router.sync(&mut bob).to_device;
        if n == 0 {
            assert_eq!(decrypted(&outcome).len(), 1, "{outcome:?}");
        } else {
            assert!(
                matches!(rejected(&outcome)[..], [ToDeviceError::SessionCreation(_)]),
                "{outcome:?}"
            );
        }
    }
}

/// OLM-07 within one sync: a pre-key message whose plaintext is not even
/// UTF-8 is rejected, and an accepted pre-key message after it in the
/// same sync must not save the account with the first one's one-time key
/// gone: a correct message on that key still opens a session later.
#[test]
fn garbled_prekey_message_does_not_consume_its_key_in_a_busy_sync() {
    garbled_in_a_busy_sync(true);
    garbled_in_a_busy_sync(false);
}

/// The garbled message first or after the accepted one.
fn garbled_in_a_busy_sync(garbled_first: bool) {
    let (mut router, mut bob, eve) = setup();
    let (otk, theirs) = claim_one_time_key(&mut router, &bob);
    let config = newt_crypto::vodozemac::olm::SessionConfig::version_1();
    let mut garbled = eve
        .account
        .create_outbound_session(config, theirs, otk)
        .unwrap();
    let newt_crypto::vodozemac::olm::OlmMessage::PreKey(message) =
        garbled.encrypt([0xff_u8, 0xfe, 0x00]).unwrap()
    else {
        panic!("a first message is a pre-key message");
    };
    let event = json!({
        "sender": eve.user.as_str(),
        "type": "m.room.encrypted",
        "content": {
            "algorithm": "m.olm.v1.curve25519-aes-sha2",
            "sender_key": eve.curve25519(),
            "ciphertext": {bob.machine.curve25519_key(): {"type": 0, "body": message.to_base64()}},
        }
    });
    let mut other = eve.session_to(&mut router, &bob);
    let plain = eve.plaintext(&bob, "m.test", json!({"n": 1}));
    let accepted = eve.event(&mut other, &bob, eve.user.as_str(), &plain);
    let order = if garbled_first {
        [event, accepted]
    } else {
        [accepted, event]
    };
    for event in order {
        router.inject(&bob.user, "B1", event);
    }
    let outcome = router.sync(&mut bob).to_device;
    assert_eq!(rejected(&outcome).len(), 1, "{outcome:?}");
    assert_eq!(decrypted(&outcome).len(), 1, "{outcome:?}");
    let plain = eve.plaintext(&bob, "m.test", json!({"n": 2}));
    router.inject(
        &bob.user,
        "B1",
        on_new_session(&eve, &bob, otk, theirs, &plain),
    );
    let outcome = router.sync(&mut bob).to_device;
    assert_eq!(decrypted(&outcome).len(), 1, "{outcome:?}");
    assert_eq!(decrypted(&outcome)[0].content, json!({"n": 2}));
}

/// The honest baseline: eve's correct message is accepted as hers.
#[test]
fn correct_payload_is_accepted() {
    let (mut router, mut bob, eve) = setup();
    let mut session = eve.session_to(&mut router, &bob);
    let plain = eve.plaintext(&bob, "m.test", json!({"hi": 1}));
    router.inject(
        &bob.user,
        "B1",
        eve.event(&mut session, &bob, eve.user.as_str(), &plain),
    );
    let outcome = router.sync(&mut bob).to_device;
    let events = decrypted(&outcome);
    assert_eq!(events[0].trust, SenderTrust::KnownDevice);
    assert_eq!(events[0].sender, eve.user);
}

/// OLM-09.1: plaintext `sender` differs from the event's sender.
#[test]
fn forged_plaintext_sender() {
    let (mut router, mut bob, eve) = setup();
    let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
    plain["sender"] = json!("@alice:example.org");
    assert_eq!(
        forged(&mut router, &mut bob, &eve, eve.user.as_str(), &plain),
        ToDeviceError::SenderMismatch
    );
}

/// OLM-09.1 the other way: the server rewrote the event's sender.
#[test]
fn forged_outer_sender() {
    let (mut router, mut bob, eve) = setup();
    let plain = eve.plaintext(&bob, "m.room_key", json!({}));
    let err = forged(&mut router, &mut bob, &eve, "@alice:example.org", &plain);
    assert_eq!(err, ToDeviceError::SenderMismatch);
}

/// OLM-09.3: `recipient` is someone else.
#[test]
fn forged_recipient() {
    let (mut router, mut bob, eve) = setup();
    let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
    plain["recipient"] = json!("@carol:example.org");
    assert_eq!(
        forged(&mut router, &mut bob, &eve, eve.user.as_str(), &plain),
        ToDeviceError::RecipientMismatch
    );
}

/// OLM-09.4: `recipient_keys.ed25519` is not bob's key.
#[test]
fn forged_recipient_keys() {
    let (mut router, mut bob, eve) = setup();
    let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
    plain["recipient_keys"]["ed25519"] = json!(eve.ed25519());
    assert_eq!(
        forged(&mut router, &mut bob, &eve, eve.user.as_str(), &plain),
        ToDeviceError::RecipientKeyMismatch
    );
}

/// OLM-09.2: `keys.ed25519` missing.
#[test]
fn missing_sender_keys() {
    let (mut router, mut bob, eve) = setup();
    let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
    plain.as_object_mut().unwrap().remove("keys");
    assert_eq!(
        forged(&mut router, &mut bob, &eve, eve.user.as_str(), &plain),
        ToDeviceError::MissingSenderKey
    );
}

/// OLM-09.2, OLM-10: `keys.ed25519` claims another device's key.
#[test]
fn forged_keys_ed25519() {
    let (mut router, mut bob, eve) = setup();
    let alice = RawPeer::new(&mut router, "alice", "A1");
    router.introduce(&mut bob, &alice.user);
    let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
    plain["keys"]["ed25519"] = json!(alice.ed25519());
    plain.as_object_mut().unwrap().remove("sender_device_keys");
    assert_eq!(
        forged(&mut router, &mut bob, &eve, eve.user.as_str(), &plain),
        ToDeviceError::SenderKeyMismatch
    );
}

/// OLM-10: eve claims to be alice (plaintext and outer sender), with
/// alice's Ed25519 key, over eve's Olm session: the listed device of
/// alice has another Curve25519 key.
#[test]
fn impersonation_over_own_session() {
    let (mut router, mut bob, eve) = setup();
    let alice = RawPeer::new(&mut router, "alice", "A1");
    router.introduce(&mut bob, &alice.user);
    let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
    plain["sender"] = json!(alice.user);
    plain["keys"]["ed25519"] = json!(alice.ed25519());
    plain.as_object_mut().unwrap().remove("sender_device_keys");
    let err = forged(&mut router, &mut bob, &eve, alice.user.as_str(), &plain);
    assert_eq!(err, ToDeviceError::SenderKeyMismatch);
}

/// OLM-09.5: each field of `sender_device_keys` forged in turn.
#[test]
fn forged_sender_device_keys() {
    let (mut router, mut bob, eve) = setup();
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>)> = vec![
        (
            "user_id is not the sender",
            Box::new(|k: &mut Value| k["user_id"] = json!("@alice:example.org")),
        ),
        (
            "curve25519 is not the session's key",
            Box::new(|k: &mut Value| {
                k["keys"]["curve25519:EVE1"] = json!("3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI")
            }),
        ),
        (
            "ed25519 is not keys.ed25519",
            Box::new(|k: &mut Value| {
                k["keys"]["ed25519:EVE1"] = json!("lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI")
            }),
        ),
        (
            "self-signature invalid",
            Box::new(|k: &mut Value| k["algorithms"] = json!(["m.olm.v1.curve25519-aes-sha2"])),
        ),
    ];
    for (reason, tamper) in cases {
        let mut plain = eve.plaintext(&bob, "m.room_key", json!({}));
        tamper(&mut plain["sender_device_keys"]);
        let err = forged(&mut router, &mut bob, &eve, eve.user.as_str(), &plain);
        assert_eq!(err, ToDeviceError::SenderDeviceKeys(reason));
    }
}

/// MEG-02: a room key sent in the clear is refused.
#[test]
fn unencrypted_room_key_is_refused() {
    let (mut router, mut bob, eve) = setup();
    router.inject(
        &bob.user,
        "B1",
        json!({"sender": eve.user, "type": "m.room_key", "content": {"session_key": "x"}}),
    );
    let outcome = router.sync(&mut bob).to_device;
    assert_eq!(
        rejected(&outcome),
        vec![ToDeviceError::MustBeEncrypted("m.room_key".into())]
    );
}

/// TRK-06: a device whose self-signature fails is not stored.
#[test]
fn device_with_bad_self_signature_is_ignored() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "EVE1");
    router.tamper_query = Some(Box::new(|resp: &mut Value| {
        if let Some(d) = resp.pointer_mut("/device_keys/@eve:example.org/EVE1") {
            d["algorithms"] = json!(["m.olm.v1.curve25519-aes-sha2"]);
        }
    }));
    let outcomes = track(&mut router, &mut bob, &eve.user);
    let query = outcomes
        .iter()
        .filter_map(|o| o.query.as_ref())
        .find(|q| !q.rejected.is_empty())
        .unwrap();
    assert!(matches!(
        query.rejected[0].reason,
        DeviceRejection::Invalid(DeviceKeysError::BadSignature(_))
    ));
    let mut txn = bob.store.transaction().unwrap();
    assert!(bob.machine.devices(&mut txn, &eve.user).unwrap().is_empty());
}

/// A device key of 44 unpadded characters decodes to 33 bytes: it is
/// refused as malformed, where vodozemac's own parser panics (a fuzzer
/// found this). The same key with `=` padding is accepted (SIG-05).
#[test]
fn overlong_and_padded_ed25519_keys() {
    for (suffix, accepted) in [("A", false), ("=", true)] {
        let mut router = Router::new();
        let mut bob = router.device("bob", "B1");
        let eve = RawPeer::new(&mut router, "eve", "EVE1");
        let mut keys = eve.device_keys.clone();
        keys["keys"]["ed25519:EVE1"] = json!(format!("{}{suffix}", eve.ed25519()));
        serve_resigned_eve1(&mut router, &eve, keys, &eve.account);
        let outcomes = track(&mut router, &mut bob, &eve.user);
        let rejected: Vec<_> = outcomes
            .iter()
            .filter_map(|o| o.query.as_ref())
            .flat_map(|q| q.rejected.iter())
            .collect();
        let mut txn = bob.store.transaction().unwrap();
        let devices = bob.machine.devices(&mut txn, &eve.user).unwrap();
        if accepted {
            assert!(rejected.is_empty(), "{rejected:?}");
            assert_eq!(devices.len(), 1);
            assert_eq!(devices[0].keys.ed25519_base64(), eve.ed25519());
        } else {
            assert!(matches!(
                rejected[0].reason,
                DeviceRejection::Invalid(DeviceKeysError::MalformedKey(_))
            ));
            assert!(devices.is_empty());
        }
    }
}

/// TRK-07: the server lists one device's keys under another device ID.
#[test]
fn swapped_device_ids_are_refused() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "EVE1");
    let eve2 = RawPeer::new(&mut router, "eve", "EVE2");
    router.tamper_query = Some(Box::new(|resp: &mut Value| {
        if let Some(devices) = resp
            .pointer_mut("/device_keys/@eve:example.org")
            .and_then(Value::as_object_mut)
        {
            let one = devices.remove("EVE1").unwrap();
            let two = devices.remove("EVE2").unwrap();
            devices.insert("EVE1".into(), two);
            devices.insert("EVE2".into(), one);
        }
    }));
    router.introduce(&mut bob, &eve.user);
    let mut txn = bob.store.transaction().unwrap();
    assert!(
        bob.machine.devices(&mut txn, &eve.user).unwrap().is_empty(),
        "a swapped device was stored"
    );
    drop(eve2);
}

/// TRK-08: a known device's keys change: the new keys are refused, the
/// old ones kept, and the device flagged.
#[test]
fn changed_device_keys_are_refused() {
    let (mut router, mut bob, eve) = setup();
    let impostor = RawPeer::new(&mut router, "mallory", "EVE1");
    // Re-sign for eve's user ID so only the key change is wrong.
    let mut resigned = impostor.device_keys.clone();
    resigned["user_id"] = json!(eve.user);
    serve_resigned_eve1(&mut router, &eve, resigned, &impostor.account);
    bob.apply(&changed(&eve.user), router.now());
    let outcomes = router.flush(&mut bob);
    let query = outcomes.iter().find_map(|o| o.query.clone()).unwrap();
    assert_eq!(query.rejected[0].reason, DeviceRejection::KeysChanged);
    let mut txn = bob.store.transaction().unwrap();
    let devices = bob.machine.devices(&mut txn, &eve.user).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        devices[0].keys.ed25519_base64().to_owned(),
        eve.ed25519(),
        "old keys were replaced"
    );
    assert!(devices[0].keys_changed);
}

fn changed(user_id: &newt_crypto::ruma::OwnedUserId) -> newt_crypto::SyncChanges {
    let mut changes = newt_crypto::SyncChanges::default();
    changes.device_lists_changed = vec![user_id.clone()];
    changes
}

/// CLM-01, CLM-02: a claimed key with a bad signature makes no session
/// and backs off; once the backoff passes, an honest key works.
#[test]
fn bad_one_time_key_signature_makes_no_session() {
    let mut router = Router::new();
    let mut alice = router.device("alice", "A1");
    let bob = router.device("bob", "B1");
    router.tamper_claim = Some(Box::new(|resp: &mut Value| {
        if let Some(keys) = resp
            .pointer_mut("/one_time_keys/@bob:example.org/B1")
            .and_then(Value::as_object_mut)
        {
            for key in keys.values_mut() {
                key["key"] = json!("3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI");
            }
        }
    }));
    router.introduce(&mut alice, &bob.user);
    let recipients = newt_crypto::Recipients::Users(vec![bob.user.clone()]);
    let mut txn = alice.store.transaction().unwrap();
    alice
        .machine
        .get_missing_sessions(&mut txn, &recipients, router.now())
        .unwrap();
    txn.commit().unwrap();
    let outcomes = router.flush(&mut alice);
    let claim = outcomes.iter().find_map(|o| o.claim.clone()).unwrap();
    assert_eq!(
        claim.failed,
        vec![(
            bob.user.clone(),
            bob.device.clone(),
            ClaimFailure::BadSignature
        )]
    );
    let outcome = router.send(&mut alice, &[bob.user.clone()], "m.test", json!({}));
    assert_eq!(
        outcome.missing_sessions,
        vec![(bob.user.clone(), bob.device.clone())]
    );
    assert!(outcome.sent_to.is_empty());
    router.tamper_claim = None;
    // Within the backoff no new claim is made.
    let claims = router.count(newt_crypto::RequestKind::KeysClaim);
    router.send(&mut alice, &[bob.user.clone()], "m.test", json!({}));
    assert_eq!(router.count(newt_crypto::RequestKind::KeysClaim), claims);
    router.advance(16_000);
    let outcome = router.send(&mut alice, &[bob.user.clone()], "m.test", json!({}));
    assert_eq!(
        outcome.sent_to,
        vec![(bob.user.clone(), bob.device.clone())]
    );
}

/// MEG-03: in one sync, a room key whose `session_id` is not its key's,
/// one whose key does not parse and a good one: only the good one is
/// stored. (The keys of a batch are checked on every core first.)
#[test]
fn room_keys_with_a_foreign_session_id_or_a_bad_key_are_not_stored() {
    use newt_crypto::vodozemac::megolm::GroupSession;
    let (mut router, mut bob, eve) = setup();
    let room = "!attack:example.org";
    let key = |session_id: &str, session_key: &str| {
        json!({
            "algorithm": "m.megolm.v1.aes-sha2", "room_id": room,
            "session_id": session_id, "session_key": session_key,
        })
    };
    let (good, other) = (
        GroupSession::new(Default::default()),
        GroupSession::new(Default::default()),
    );
    let contents = [
        key(&good.session_id(), &other.session_key().to_base64()),
        key(&other.session_id(), "not a session key"),
        key(&good.session_id(), &good.session_key().to_base64()),
    ];
    let mut session = eve.session_to(&mut router, &bob);
    for content in contents {
        let plain = eve.plaintext(&bob, "m.room_key", content);
        let event = eve.event(&mut session, &bob, eve.user.as_str(), &plain);
        router.inject(&bob.user, "B1", event);
    }
    let outcome = router.sync(&mut bob).to_device;
    assert!(rejected(&outcome).is_empty(), "{outcome:?}");
    let mut txn = bob.store.transaction().unwrap();
    let stored = txn.load_inbound(room, &good.session_id()).unwrap().unwrap();
    assert_eq!(
        newt_crypto::vodozemac::megolm::InboundGroupSession::from_pickle(stored.pickle)
            .session_id(),
        good.session_id(),
        "a key stored under another session's ID"
    );
    assert!(
        txn.load_inbound(room, &other.session_id())
            .unwrap()
            .is_none()
    );
}

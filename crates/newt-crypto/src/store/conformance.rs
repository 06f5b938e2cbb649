//! The store conformance suite: every store must pass it.
//!
//! Call [`run_all`] from a store crate's tests with a factory for empty
//! stores. Each check panics with a message naming what broke.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::codec::Encoded;
use super::{
    AccountRecord, AccountState, DeviceLocal, DeviceRecord, EncryptionSettings, InboundInfo,
    InboundRecord, IndexUse, KeySource, Membership, OlmSessionRecord, OutboundHead, OutboundRecord,
    OutboundState, PendingKind, PendingRequest, QueuedToDevice, RoomRecord, Store, StoreTxn,
    TrackedUser, UndecryptedEvent, WithheldRecord,
};
use ruma::{OwnedDeviceId, OwnedUserId};
use std::collections::BTreeMap;
use vodozemac::olm::Account;

/// Runs every check on fresh stores made by `make`.
pub fn run_all<S: Store>(mut make: impl FnMut() -> S) {
    empty_store_has_nothing(&mut make());
    account_round_trips(&mut make());
    dropped_transaction_rolls_back(&mut make());
    values_round_trip_and_overwrite(&mut make());
    tracked_users_and_devices(&mut make());
    olm_sessions_round_trip(&mut make());
    olm_revision_follows_saves(&mut make());
    let _ = olm_changes_follow_saves(&mut make());
    inbound_revision_follows_saves(&mut make());
    device_revision_follows_saves(&mut make());
    room_revision_follows_saves(&mut make());
    tracking_revision_follows_saves(&mut make());
    outbound_sets_revision_follows_saves(&mut make());
    pending_requests_keep_order(&mut make());
    room_key_requests_keep_their_devices(&mut make());
    room_encryption_follows_the_room(&mut make());
    untracked_users_are_found_in_order(&mut make());
    queued_events_keep_order_and_content(&mut make());
    room_records_round_trip(&mut make());
    outbound_head_keeps_the_sets(&mut make());
    index_uses_roll_back_and_overwrite(&mut make());
    index_uses_saved_together(&mut make());
}

fn state() -> AccountState {
    AccountState {
        user_id: "@alice:example.org".try_into().unwrap(),
        device_id: "ALICEDEV".into(),
        device_keys_published: false,
        fallback_created_at_ms: Some(7),
        forget_previous_fallback_at_ms: None,
        server_otk_count: Some(3),
        pending_upload: None,
        created_at_ms: Some(1),
    }
}

/// A new store holds no account and no values.
pub fn empty_store_has_nothing<S: Store>(store: &mut S) {
    let mut txn = store.transaction().unwrap();
    assert!(
        txn.load_account().unwrap().is_none(),
        "new store has an account"
    );
    assert!(txn.load_account_state().unwrap().is_none());
    assert!(
        txn.get_value("sync_token").unwrap().is_none(),
        "new store has a value"
    );
}

/// A committed account reads back with the same keys and state.
pub fn account_round_trips<S: Store>(store: &mut S) {
    let mut account = Account::new();
    account.generate_one_time_keys(5);
    let record = AccountRecord::new(&account, state());
    let mut txn = store.transaction().unwrap();
    txn.save_account(&record).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    let loaded = txn.load_account().unwrap().expect("account was committed");
    assert_eq!(loaded.state, state());
    assert_eq!(txn.load_account_state().unwrap(), Some(state()));
    let restored = Account::from_pickle(loaded.pickle);
    assert_eq!(restored.identity_keys(), account.identity_keys());
    assert_eq!(restored.one_time_keys(), account.one_time_keys());
}

/// Writes of a transaction dropped without commit are gone.
pub fn dropped_transaction_rolls_back<S: Store>(store: &mut S) {
    {
        let mut txn = store.transaction().unwrap();
        txn.save_account(&AccountRecord::new(&Account::new(), state()))
            .unwrap();
        txn.set_value("k", "v").unwrap();
    }
    let mut txn = store.transaction().unwrap();
    assert!(
        txn.load_account().unwrap().is_none(),
        "rolled-back account visible"
    );
    assert!(
        txn.get_value("k").unwrap().is_none(),
        "rolled-back value visible"
    );
}

/// Values read back and can be replaced.
pub fn values_round_trip_and_overwrite<S: Store>(store: &mut S) {
    let mut txn = store.transaction().unwrap();
    txn.set_value("sync_token", "s1").unwrap();
    assert_eq!(txn.get_value("sync_token").unwrap().as_deref(), Some("s1"));
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    txn.set_value("sync_token", "s2").unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.get_value("sync_token").unwrap().as_deref(), Some("s2"));
}

fn user(name: &str) -> OwnedUserId {
    format!("@{name}:example.org").try_into().unwrap()
}

fn device(user_id: &OwnedUserId, id: &str) -> DeviceRecord {
    DeviceRecord {
        user_id: user_id.clone(),
        device_id: OwnedDeviceId::from(id),
        keys_json: format!(r#"{{"device_id":"{id}"}}"#),
        ed25519: format!("ed-{id}"),
        curve25519: format!("curve-{id}"),
        algorithms: vec!["m.olm.v1.curve25519-aes-sha2".into()],
        display_name: Some(id.into()),
        local: DeviceLocal::default(),
    }
}

/// Tracking records and devices read back, per user, and replace.
pub fn tracked_users_and_devices<S: Store>(store: &mut S) {
    let (alice, bob) = (user("alice"), user("bob"));
    let mut txn = store.transaction().unwrap();
    let mut tracked = TrackedUser::new(alice.clone());
    txn.save_tracked_user(&tracked).unwrap();
    txn.save_tracked_user(&TrackedUser::new(bob.clone()))
        .unwrap();
    txn.save_device(&device(&alice, "A1")).unwrap();
    txn.save_device(&device(&alice, "A2")).unwrap();
    txn.save_device(&device(&bob, "B1")).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_tracked_users().unwrap().len(), 2);
    assert_eq!(
        txn.load_tracked_user(&alice).unwrap(),
        Some(tracked.clone())
    );
    let outdated = |txn: &mut S::Txn<'_>| -> Vec<OwnedUserId> {
        let mut users: Vec<_> = txn
            .load_outdated_users()
            .unwrap()
            .into_iter()
            .map(|u| u.user_id)
            .collect();
        users.sort();
        users
    };
    assert_eq!(outdated(&mut txn), vec![alice.clone(), bob.clone()]);
    tracked.outdated = false;
    tracked.generation = 7;
    txn.save_tracked_user(&tracked).unwrap();
    // An outdated user no longer tracked (TRK-05) is not queried.
    let mut left = TrackedUser::new(bob.clone());
    left.tracked = false;
    txn.save_tracked_user(&left).unwrap();
    assert!(
        outdated(&mut txn).is_empty(),
        "saves update the outdated set"
    );
    left.tracked = true;
    txn.save_tracked_user(&left).unwrap();
    assert_eq!(outdated(&mut txn), vec![bob.clone()]);
    let mut changed = device(&alice, "A1");
    changed.local.blocked = true;
    txn.save_device(&changed).unwrap();
    txn.delete_device(&alice, &OwnedDeviceId::from("A2"))
        .unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_tracked_user(&alice).unwrap(), Some(tracked));
    assert_eq!(txn.load_devices(&alice).unwrap(), vec![changed]);
    assert_eq!(txn.load_devices(&bob).unwrap(), vec![device(&bob, "B1")]);
    assert!(txn.load_devices(&user("carol")).unwrap().is_empty());
    // In the order asked, an empty list for a user without devices.
    assert_eq!(
        txn.load_devices_of(&[bob.clone(), user("carol"), alice.clone()])
            .unwrap(),
        vec![
            vec![device(&bob, "B1")],
            Vec::new(),
            txn.load_devices(&alice).unwrap()
        ]
    );
}

/// Sessions read back by sender key with their times; saving again
/// replaces by session ID.
pub fn olm_sessions_round_trip<S: Store>(store: &mut S) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(2);
    let otks: Vec<_> = bob.one_time_keys().into_values().collect();
    let config = vodozemac::olm::SessionConfig::version_1();
    let bob_key = bob.curve25519_key().to_base64();
    let mut txn = store.transaction().unwrap();
    let mut ids = Vec::new();
    for (i, otk) in otks.iter().enumerate() {
        let session = alice
            .create_outbound_session(config, bob.curve25519_key(), *otk)
            .unwrap();
        ids.push(session.session_id());
        txn.save_olm_session(OlmSessionRecord {
            sender_key: bob_key.clone(),
            session_id: session.session_id(),
            pickle: Encoded::encode(&session.pickle()).unwrap(),
            created_at_ms: i as u64,
            last_received_at_ms: None,
            retired: false,
        })
        .unwrap();
    }
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let mut loaded = txn.load_olm_sessions(&bob_key).unwrap();
    loaded.sort_by_key(|s| s.created_at_ms);
    assert_eq!(
        loaded
            .iter()
            .map(|s| s.session_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert!(txn.load_olm_sessions("someone-else").unwrap().is_empty());
    let mut first = loaded.remove(0);
    first.last_received_at_ms = Some(99);
    txn.save_olm_session(first).unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let again = txn.load_olm_sessions(&bob_key).unwrap();
    assert_eq!(again.len(), 2);
    assert!(
        again
            .iter()
            .any(|s| s.session_id == ids[0] && s.last_received_at_ms == Some(99))
    );
    let restored = vodozemac::olm::Session::from_pickle(
        again.into_iter().next().unwrap().pickle.decode().unwrap(),
    );
    assert!(ids.contains(&restored.session_id()));
    // One session by its ID, with its metadata; no other key's.
    let one = txn.load_olm_session(&bob_key, &ids[0]).unwrap().unwrap();
    assert_eq!(
        (one.session_id.as_str(), one.last_received_at_ms),
        (ids[0].as_str(), Some(99))
    );
    let other = txn.load_olm_session(&bob_key, &ids[1]).unwrap().unwrap();
    assert_eq!(other.created_at_ms, 1);
    assert_eq!(
        vodozemac::olm::Session::from_pickle(other.pickle.decode().unwrap()).session_id(),
        ids[1]
    );
    assert!(
        txn.load_olm_session(&bob_key, "no-such-session")
            .unwrap()
            .is_none()
    );
    assert!(
        txn.load_olm_session("someone-else", &ids[0])
            .unwrap()
            .is_none()
    );
}

/// An Olm session record filed under `sender_key`.
/// The same record again (records are not `Clone`: they hold secrets).
fn copy(record: &OlmSessionRecord) -> OlmSessionRecord {
    OlmSessionRecord {
        sender_key: record.sender_key.clone(),
        session_id: record.session_id.clone(),
        pickle: Encoded::from_bytes(zeroize::Zeroizing::new(record.pickle.as_bytes().to_vec())),
        created_at_ms: record.created_at_ms,
        last_received_at_ms: record.last_received_at_ms,
        retired: record.retired,
    }
}

fn olm_record(sender_key: &str) -> OlmSessionRecord {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = bob.one_time_keys().into_values().next().unwrap();
    let session = alice
        .create_outbound_session(
            vodozemac::olm::SessionConfig::version_1(),
            bob.curve25519_key(),
            otk,
        )
        .unwrap();
    OlmSessionRecord {
        sender_key: sender_key.to_owned(),
        session_id: session.session_id(),
        pickle: Encoded::encode(&session.pickle()).unwrap(),
        created_at_ms: 1,
        last_received_at_ms: None,
        retired: false,
    }
}

/// The keys an Olm save touched are listed (if tracked) from any revision
/// the store showed, this transaction's saves included; a revision never
/// shown, or a save of many keys, makes them unknown; a rollback takes
/// its saves back out of the list.
/// Returns whether the store lists them at all (not listing is safe).
pub fn olm_changes_follow_saves<S: Store>(store: &mut S) -> bool {
    let sorted = |keys: Option<Vec<String>>| {
        keys.map(|mut k| {
            k.sort();
            k.dedup();
            k
        })
    };
    let mut txn = store.transaction().unwrap();
    txn.save_olm_session(olm_record("start")).unwrap();
    let Some(start) = txn.olm_revision().unwrap() else {
        return false; // Not tracked.
    };
    if txn.olm_changes_since(start).unwrap().is_none() {
        return false; // Not listed: caches drop everything, which is safe.
    }
    assert_eq!(txn.olm_changes_since(start).unwrap(), Some(Vec::new()));
    txn.save_olm_sessions(vec![olm_record("a"), olm_record("b"), olm_record("a")])
        .unwrap();
    let after_ab = txn.olm_revision().unwrap().unwrap();
    txn.commit().unwrap();
    // Saved and not read again: the commit must still change and list it.
    let mut txn = store.transaction().unwrap();
    txn.save_olm_session(olm_record("d")).unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    assert_ne!(txn.olm_revision().unwrap(), Some(after_ab));
    assert_eq!(
        txn.olm_changes_since(after_ab).unwrap(),
        Some(vec!["d".to_owned()])
    );
    let after_ab = txn.olm_revision().unwrap().unwrap();
    txn.save_olm_session(olm_record("c")).unwrap();
    assert_eq!(
        sorted(txn.olm_changes_since(start).unwrap()),
        Some(vec![
            "a".to_owned(),
            "b".to_owned(),
            "c".to_owned(),
            "d".to_owned()
        ])
    );
    assert_eq!(
        txn.olm_changes_since(after_ab).unwrap(),
        Some(vec!["c".to_owned()])
    );
    assert_eq!(txn.olm_changes_since(12345).unwrap(), None, "never shown");
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.olm_changes_since(after_ab).unwrap(),
        Some(Vec::new()),
        "a rolled-back save is still listed"
    );
    let many: Vec<OlmSessionRecord> = (0..=super::OLM_CHANGES_LISTED_MAX)
        .map(|i| olm_record(&format!("k{i}")))
        .collect();
    txn.save_olm_sessions(many).unwrap();
    assert_eq!(txn.olm_changes_since(after_ab).unwrap(), None);
    true
}

/// The Olm revision (if tracked) changes with every save and rolls back
/// with the transaction; after-commit work runs on commit only. Caches
/// of live sessions rely on both.
pub fn olm_revision_follows_saves<S: Store>(store: &mut S) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let record = olm_record("bob");
    let ran = Arc::new(AtomicUsize::new(0));
    let count = |ran: &Arc<AtomicUsize>| {
        let ran = Arc::clone(ran);
        Box::new(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    let mut txn = store.transaction().unwrap();
    let Some(first) = txn.olm_revision().unwrap() else {
        return; // Not tracked: nothing is cached above this store.
    };
    txn.save_olm_session(copy(&record)).unwrap();
    let second = txn.olm_revision().unwrap().unwrap();
    assert_ne!(first, second, "a save must change the revision");
    txn.save_olm_sessions(vec![copy(&record)]).unwrap();
    let third = txn.olm_revision().unwrap().unwrap();
    assert_ne!(second, third, "every save must change the revision");
    txn.after_commit(count(&ran));
    txn.commit().unwrap();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "after-commit work did not run"
    );

    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.olm_revision().unwrap(), Some(third));
    txn.save_olm_session(copy(&record)).unwrap();
    txn.after_commit(count(&ran));
    drop(txn);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "after-commit work ran on rollback"
    );
    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.olm_revision().unwrap(),
        Some(third),
        "rollback kept a revision"
    );
}

/// The device revision (if tracked) differs from every earlier value once
/// a device was saved or deleted, whether read next in the transaction or
/// after it commits, and rolls back with the transaction. The device cache
/// relies on it.
pub fn device_revision_follows_saves<S: Store>(store: &mut S) {
    let alice = user("alice");
    let record = device(&alice, "A1");
    let mut txn = store.transaction().unwrap();
    let Some(first) = txn.device_revision().unwrap() else {
        return; // Not tracked: nothing is cached above this store.
    };
    assert_eq!(
        txn.device_revision().unwrap(),
        Some(first),
        "a read changed it"
    );
    txn.save_device(&record).unwrap();
    let second = txn.device_revision().unwrap().unwrap();
    assert_ne!(first, second, "a save must change the revision");
    txn.delete_device(&alice, &record.device_id).unwrap();
    let third = txn.device_revision().unwrap().unwrap();
    assert!(![first, second].contains(&third), "a delete must change it");
    // Saved and not read again: the commit must still change it.
    txn.save_device(&record).unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let fourth = txn.device_revision().unwrap().unwrap();
    assert!(
        ![first, second, third].contains(&fourth),
        "a committed save kept a revision"
    );
    txn.save_device(&record).unwrap();
    assert_ne!(txn.device_revision().unwrap(), Some(fourth));
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.device_revision().unwrap(),
        Some(fourth),
        "rollback kept a revision"
    );
}

/// The room revision changes whenever a room is saved, whether read
/// next in the transaction or after it commits, and rolls back with the
/// transaction. The room cache relies on it.
pub fn room_revision_follows_saves<S: Store>(store: &mut S) {
    revision_follows_saves(
        store,
        |txn| txn.room_revision().unwrap(),
        |txn| txn.save_room(&RoomRecord::new("!r:x")).unwrap(),
    );
}

/// The same for the tracking revision and tracking records, which the
/// tracked-users cache relies on.
pub fn tracking_revision_follows_saves<S: Store>(store: &mut S) {
    revision_follows_saves(
        store,
        |txn| txn.tracking_revision().unwrap(),
        |txn| {
            txn.save_tracked_user(&TrackedUser::new(user("alice")))
                .unwrap()
        },
    );
}

/// The same for the outbound sets revision and whole outbound records,
/// which the outbound sets cache relies on.
pub fn outbound_sets_revision_follows_saves<S: Store>(store: &mut S) {
    use vodozemac::megolm::{GroupSession, SessionConfig};
    let group = GroupSession::new(SessionConfig::version_1());
    let state = OutboundState {
        created_at_ms: 1,
        message_count: 0,
        shared_history: false,
        invalidated: false,
        shared_with: BTreeMap::new(),
        withheld: BTreeMap::new(),
        pending_requests: Vec::new(),
    };
    let record = outbound("!r:x", &group, state);
    revision_follows_saves(
        store,
        |txn| txn.outbound_sets_revision().unwrap(),
        |txn| txn.save_outbound(&record).unwrap(),
    );
}

/// A revision `read` shows changes with every `save`, read next or after
/// the commit, and rolls back with the transaction.
fn revision_follows_saves<S: Store>(
    store: &mut S,
    read: impl Fn(&mut S::Txn<'_>) -> Option<u64>,
    save: impl Fn(&mut S::Txn<'_>),
) {
    let mut txn = store.transaction().unwrap();
    let Some(first) = read(&mut txn) else {
        return; // Not tracked: nothing is cached above this store.
    };
    assert_eq!(read(&mut txn), Some(first), "a read changed it");
    save(&mut txn);
    let second = read(&mut txn).unwrap();
    assert_ne!(first, second, "a save must change the revision");
    // Saved and not read again: the commit must still change it.
    save(&mut txn);
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let third = read(&mut txn).unwrap();
    assert!(
        ![first, second].contains(&third),
        "a committed save kept a revision"
    );
    save(&mut txn);
    assert_ne!(read(&mut txn), Some(third));
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(read(&mut txn), Some(third), "rollback kept a revision");
}

/// Pending requests come back in creation order, one by ID with its exact
/// body, and can be removed; the next sequence number follows the highest.
pub fn pending_requests_keep_order<S: Store>(store: &mut S) {
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.next_pending_seq().unwrap(), 0);
    for (seq, id) in [(2, "c"), (0, "a"), (1, "b")] {
        txn.save_pending_request(&PendingRequest {
            request_id: id.into(),
            kind: PendingKind::KeysQuery {
                users: BTreeMap::from([(user("alice"), seq)]),
            },
            body: format!("{{\"n\":{seq}}}").into(),
            seq,
        })
        .unwrap();
    }
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let ids: Vec<_> = txn
        .load_pending_requests()
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let c = txn.load_pending_request("c").unwrap().unwrap();
    assert_eq!((c.body.as_str(), c.seq), ("{\"n\":2}", 2));
    assert!(txn.load_pending_request("zz").unwrap().is_none());
    // Bodies the caller holds may be skipped; the others come whole.
    let partial = txn.load_pending_requests_except(&|id| id == "b").unwrap();
    let seen: Vec<_> = partial
        .iter()
        .map(|r| (r.request_id.as_str(), r.seq))
        .collect();
    assert_eq!(seen, [("a", 0), ("b", 1), ("c", 2)]);
    assert_eq!(*partial[0].body, "{\"n\":0}");
    assert!(partial[1].body.is_empty() || *partial[1].body == "{\"n\":1}");
    let meta = txn.load_pending_request_meta("c").unwrap().unwrap();
    assert_eq!((meta.seq, &meta.kind), (2, &c.kind));
    assert!(txn.load_pending_request_meta("zz").unwrap().is_none());
    assert_eq!(txn.next_pending_seq().unwrap(), 3);
    txn.delete_pending_request("b").unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let ids: Vec<_> = txn
        .load_pending_requests()
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
    txn.delete_pending_request("c").unwrap();
    assert_eq!(txn.next_pending_seq().unwrap(), 1);
}

/// A room-key request comes back with its devices and the empty body it
/// was saved with, whichever way it is read.
pub fn room_key_requests_keep_their_devices<S: Store>(store: &mut S) {
    let kind = PendingKind::RoomKey {
        txn_id: "t".into(),
        room_id: "!r:x".into(),
        session_id: "S".into(),
        devices: vec![(user("alice"), "A1".into()), (user("bob"), "B1".into())],
    };
    let mut txn = store.transaction().unwrap();
    txn.save_pending_request(&PendingRequest {
        request_id: "k".into(),
        kind: kind.clone(),
        body: Default::default(),
        seq: 0,
    })
    .unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let whole = txn.load_pending_request("k").unwrap().unwrap();
    assert_eq!((&whole.kind, whole.body.as_str()), (&kind, ""));
    let meta = txn.load_pending_request_meta("k").unwrap().unwrap();
    assert_eq!(meta.kind, kind);
    for listed in [
        txn.load_pending_requests().unwrap(),
        txn.load_pending_requests_except(&|_| false).unwrap(),
    ] {
        assert_eq!(listed.len(), 1);
        assert_eq!((&listed[0].kind, listed[0].body.as_str()), (&kind, ""));
    }
}

/// A room's encryption settings read alone are the ones saved with it,
/// and go with it on rollback; unknown and unencrypted rooms have none.
pub fn room_encryption_follows_the_room<S: Store>(store: &mut S) {
    let settings = |msgs| EncryptionSettings {
        algorithm: "m.megolm.v1.aes-sha2".into(),
        rotation_period_ms: 1000,
        rotation_period_msgs: msgs,
    };
    let mut room = RoomRecord::new("!r:x");
    room.members.insert(user("bob"), Membership::Join);
    let mut txn = store.transaction().unwrap();
    txn.save_room(&room).unwrap();
    assert_eq!(txn.load_room_encryption("!r:x").unwrap(), None);
    room.encryption = Some(settings(5));
    txn.save_room(&room).unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_room_encryption("!r:x").unwrap(), Some(settings(5)));
    assert_eq!(txn.load_room_encryption("!other:x").unwrap(), None);
    room.encryption = Some(settings(9));
    txn.save_room(&room).unwrap();
    assert_eq!(txn.load_room_encryption("!r:x").unwrap(), Some(settings(9)));
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_room_encryption("!r:x").unwrap(), Some(settings(5)));
    room.encryption = None;
    txn.save_room(&room).unwrap();
    assert_eq!(txn.load_room_encryption("!r:x").unwrap(), None);
}

/// Of a list of users, those with no record or a record not tracked, in
/// the list's order, this transaction's own saves included.
pub fn untracked_users_are_found_in_order<S: Store>(store: &mut S) {
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let mut txn = store.transaction().unwrap();
    txn.save_tracked_user(&TrackedUser::new(alice.clone()))
        .unwrap();
    let mut left = TrackedUser::new(bob.clone());
    left.tracked = false;
    txn.save_tracked_user(&left).unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    txn.save_tracked_user(&TrackedUser::new(dave.clone()))
        .unwrap();
    let listed = [carol.clone(), alice.clone(), bob.clone(), dave.clone()];
    assert_eq!(
        txn.untracked_users(&listed).unwrap(),
        [carol.clone(), bob.clone()]
    );
    assert!(txn.untracked_users(&[]).unwrap().is_empty());
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.untracked_users(&listed).unwrap(), [carol, bob, dave]);
}

/// Queued to-device events keep arrival order and their plaintext.
pub fn queued_events_keep_order_and_content<S: Store>(store: &mut S) {
    let mut txn = store.transaction().unwrap();
    for (seq, id) in [(1, "second"), (0, "first")] {
        txn.save_queued_to_device(&QueuedToDevice {
            id: id.into(),
            seq,
            sender: user("alice"),
            sender_key: "curve".into(),
            plaintext: format!("{{\"id\":\"{id}\"}}").into(),
            received_at_ms: 5,
        })
        .unwrap();
    }
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let queued = txn.load_queued_to_device().unwrap();
    assert_eq!(
        queued.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert_eq!(queued[0].plaintext.as_str(), r#"{"id":"first"}"#);
    assert_eq!(queued[0].sender, user("alice"));
    txn.delete_queued_to_device("first").unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_queued_to_device().unwrap().len(), 1);
}

/// The inbound revision (if tracked) changes with every inbound session
/// save and rolls back with the transaction.
pub fn inbound_revision_follows_saves<S: Store>(store: &mut S) {
    use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};
    let group = GroupSession::new(SessionConfig::version_1());
    let record = |session_id: &str| InboundRecord {
        room_id: "!r:example.org".into(),
        session_id: session_id.into(),
        pickle: InboundGroupSession::new(&group.session_key(), SessionConfig::version_1()).pickle(),
        info: InboundInfo {
            sender_key: "curve".into(),
            claimed_ed25519: "ed".into(),
            sender_user: None,
            sender_device: None,
            first_known_index: 0,
            source: KeySource::RoomKey,
            shared_history: false,
        },
    };
    let mut txn = store.transaction().unwrap();
    let Some(first) = txn.inbound_revision().unwrap() else {
        return; // Not tracked: nothing is cached above this store.
    };
    txn.save_inbound(&record("a")).unwrap();
    let second = txn.inbound_revision().unwrap().unwrap();
    assert_ne!(first, second, "a save must change the revision");
    txn.save_inbound(&record("a")).unwrap();
    let third = txn.inbound_revision().unwrap().unwrap();
    assert_ne!(second, third, "every save must change the revision");
    txn.commit().unwrap();
    // Saved and not read again: the commit must still change it.
    let mut txn = store.transaction().unwrap();
    txn.save_inbound(&record("c")).unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let third = {
        let now = txn.inbound_revision().unwrap().unwrap();
        assert!(
            ![first, second, third].contains(&now),
            "a committed save kept a revision"
        );
        now
    };
    txn.save_inbound(&record("b")).unwrap();
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.inbound_revision().unwrap(),
        Some(third),
        "rollback kept a revision"
    );
}

/// Rooms, Megolm sessions, indices, undecryptable events and withheld
/// notices read back by their keys.
pub fn room_records_round_trip<S: Store>(store: &mut S) {
    use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};
    let room_id = "!r:example.org";
    let mut room = RoomRecord::new(room_id);
    room.members.insert(user("alice"), Membership::Join);
    let group = GroupSession::new(SessionConfig::version_1());
    let inbound = InboundGroupSession::new(&group.session_key(), SessionConfig::version_1());
    let info = InboundInfo {
        sender_key: "curve".into(),
        claimed_ed25519: "ed".into(),
        sender_user: Some(user("alice")),
        sender_device: Some("A1".into()),
        first_known_index: 0,
        source: KeySource::RoomKey,
        shared_history: true,
    };
    let state = OutboundState {
        created_at_ms: 1,
        message_count: 2,
        shared_history: false,
        invalidated: false,
        shared_with: BTreeMap::new(),
        withheld: BTreeMap::new(),
        pending_requests: vec!["r1".into()],
    };
    let utd = |id: &str, at| UndecryptedEvent {
        room_id: room_id.into(),
        session_id: group.session_id(),
        event_id: id.into(),
        event_json: "{}".into(),
        received_at_ms: at,
    };
    let notice = WithheldRecord {
        room_id: room_id.into(),
        session_id: "s".into(),
        code: "m.blacklisted".into(),
        reason: None,
        sender: user("alice"),
        sender_key: "curve".into(),
    };
    let mut txn = store.transaction().unwrap();
    txn.save_room(&room).unwrap();
    txn.save_outbound(&outbound(room_id, &group, state.clone()))
        .unwrap();
    txn.save_inbound(&InboundRecord {
        room_id: room_id.into(),
        session_id: group.session_id(),
        pickle: inbound.pickle(),
        info: info.clone(),
    })
    .unwrap();
    let used = IndexUse {
        event_id: "$a".into(),
        origin_server_ts: 5,
    };
    txn.save_index_use(room_id, &group.session_id(), 3, &used)
        .unwrap();
    txn.save_index_use(room_id, &group.session_id(), 7, &used)
        .unwrap();
    // Another session's index 5 must not show up below.
    txn.save_index_use(room_id, "other", 5, &used).unwrap();
    txn.save_undecrypted(&utd("$late", 9)).unwrap();
    txn.save_undecrypted(&utd("$early", 1)).unwrap();
    txn.save_withheld(&notice).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_room(room_id).unwrap(), Some(room));
    let out = txn.load_outbound(room_id).unwrap().unwrap();
    assert_eq!(
        (out.session_id.clone(), out.state),
        (group.session_id(), state)
    );
    assert_eq!(
        GroupSession::from_pickle(out.pickle).session_id(),
        group.session_id()
    );
    let inb = txn
        .load_inbound(room_id, &group.session_id())
        .unwrap()
        .unwrap();
    assert_eq!(inb.info, info);
    assert!(
        txn.load_inbound("!other:example.org", &group.session_id())
            .unwrap()
            .is_none()
    );
    assert_eq!(txn.load_all_inbound().unwrap().len(), 1);
    assert_eq!(
        txn.load_index_use(room_id, &group.session_id(), 3).unwrap(),
        Some(used.clone())
    );
    assert!(
        txn.load_index_use(room_id, &group.session_id(), 4)
            .unwrap()
            .is_none()
    );
    let mut batch = txn
        .load_index_uses(room_id, &group.session_id(), &[9, 3, 5, 4, 7])
        .unwrap();
    batch.sort_by_key(|(index, _)| *index);
    assert_eq!(batch, vec![(3, used.clone()), (7, used.clone())]);
    assert!(
        txn.load_index_uses(room_id, &group.session_id(), &[])
            .unwrap()
            .is_empty()
    );
    let waiting: Vec<_> = txn
        .load_undecrypted(room_id, &group.session_id())
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(waiting, ["$early", "$late"]);
    assert!(
        txn.load_undecrypted_event(room_id, "$late")
            .unwrap()
            .is_some()
    );
    txn.delete_undecrypted(room_id, "$late").unwrap();
    assert!(
        txn.load_undecrypted_event(room_id, "$late")
            .unwrap()
            .is_none()
    );
    assert_eq!(txn.load_withheld(room_id, "s").unwrap(), Some(notice));
}

/// MEG-08 records: a use saved by a rolled-back transaction is gone (and
/// its session can be recorded again), a save replaces, and timestamps
/// keep every bit.
pub fn index_uses_roll_back_and_overwrite<S: Store>(store: &mut S) {
    let room = "!r:example.org";
    let used = |event_id: &str, origin_server_ts: u64| IndexUse {
        event_id: event_id.into(),
        origin_server_ts,
    };
    {
        let mut txn = store.transaction().unwrap();
        txn.save_index_use(room, "s1", 0, &used("$gone", 1))
            .unwrap();
        assert_eq!(
            txn.load_index_use(room, "s1", 0).unwrap(),
            Some(used("$gone", 1)),
            "a use not visible in its own transaction"
        );
    }
    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.load_index_use(room, "s1", 0).unwrap(),
        None,
        "rolled-back index use visible"
    );
    txn.save_index_use(room, "s1", 0, &used("$a", u64::MAX))
        .unwrap();
    txn.save_index_use(room, "s1", 1, &used("$b", 2)).unwrap();
    txn.save_index_use(room, "s2", 0, &used("$c", 3)).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    txn.save_index_use(room, "s1", 1, &used("$b2", 4)).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.load_index_use(room, "s1", 0).unwrap(),
        Some(used("$a", u64::MAX))
    );
    let mut found = txn.load_index_uses(room, "s1", &[0, 1, 2]).unwrap();
    found.sort_by_key(|(index, _)| *index);
    assert_eq!(found, vec![(0, used("$a", u64::MAX)), (1, used("$b2", 4))]);
    assert_eq!(
        txn.load_index_uses("!other:example.org", "s1", &[0])
            .unwrap(),
        Vec::new(),
        "an index use found in another room"
    );
    assert_eq!(
        txn.load_index_use(room, "s2", 0).unwrap(),
        Some(used("$c", 3))
    );
}

/// MEG-08 records of a whole timeline saved at once, over two
/// sessions and out of order: each is found, a later use of
/// an index replaces an earlier one in the same list, and a rolled-back
/// list leaves nothing.
pub fn index_uses_saved_together<S: Store>(store: &mut S) {
    let room = "!r:example.org";
    let used = |n: u32| IndexUse {
        event_id: format!("$e{n}"),
        origin_server_ts: u64::from(n) + 1,
    };
    let session = |n: u32| if n.is_multiple_of(3) { "s2" } else { "s1" }.to_owned();
    let mut uses: Vec<(String, u32, IndexUse)> =
        (0..150).map(|n| (session(n), n, used(n))).collect();
    uses.push(("s1".into(), 1, used(1000)));
    {
        let mut txn = store.transaction().unwrap();
        txn.save_index_uses(room, &uses[..20]).unwrap();
    }
    let mut txn = store.transaction().unwrap();
    assert_eq!(txn.load_index_use(room, "s1", 1).unwrap(), None);
    txn.save_index_uses(room, &uses).unwrap();
    txn.save_index_uses(room, &[]).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    let all: Vec<u32> = (0..150).collect();
    for name in ["s1", "s2"] {
        let mut found = txn.load_index_uses(room, name, &all).unwrap();
        found.sort_by_key(|(index, _)| *index);
        let expected: Vec<(u32, IndexUse)> = (0..150)
            .filter(|n| session(*n) == name)
            .map(|n| (n, if n == 1 { used(1000) } else { used(n) }))
            .collect();
        assert_eq!(found, expected, "uses of {name}");
    }
}

/// The record of `group` as `room_id`'s outbound session.
fn outbound(
    room_id: &str,
    group: &vodozemac::megolm::GroupSession,
    state: OutboundState,
) -> OutboundRecord {
    OutboundRecord {
        room_id: room_id.into(),
        session_id: group.session_id(),
        pickle: group.pickle(),
        state,
    }
}

/// An outbound session's head (what encrypting a room event reads and
/// changes) saves without touching its shared-with and withheld sets, rolls
/// back with its transaction, and a new session never inherits the sets of
/// the one before.
pub fn outbound_head_keeps_the_sets<S: Store>(store: &mut S) {
    use vodozemac::megolm::{GroupSession, SessionConfig};
    let room_id = "!head:example.org";
    let mut group = GroupSession::new(SessionConfig::version_1());
    let alice = user("alice");
    let mut state = OutboundState {
        created_at_ms: 10,
        message_count: 2,
        shared_history: true,
        invalidated: false,
        shared_with: BTreeMap::new(),
        withheld: BTreeMap::new(),
        pending_requests: vec!["r1".into()],
    };
    state
        .shared_with
        .entry(alice.clone())
        .or_default()
        .insert("A1".into(), super::SharedAt { index: 0 });
    state
        .withheld
        .entry(user("bob"))
        .or_default()
        .insert("B1".into(), "m.unverified".into());
    let mut txn = store.transaction().unwrap();
    txn.save_outbound(&outbound(room_id, &group, state.clone()))
        .unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    let head: OutboundHead = txn.load_outbound_head(room_id).unwrap().unwrap();
    assert_eq!(head.session_id, group.session_id());
    assert_eq!(head.state, state.without_sets(), "a head holds no sets");
    // An encryption: the ratchet and the count move on.
    let _ = group.encrypt("event");
    let mut advanced = head;
    advanced.pickle = group.pickle();
    advanced.state.message_count = 3;
    advanced.state.pending_requests.clear();
    txn.save_outbound_head(advanced).unwrap();
    txn.commit().unwrap();

    let mut txn = store.transaction().unwrap();
    let out = txn.load_outbound(room_id).unwrap().unwrap();
    let mut expected = state.clone();
    expected.message_count = 3;
    expected.pending_requests.clear();
    assert_eq!(out.state, expected, "the head saved, the sets kept");
    assert_eq!(
        GroupSession::from_pickle(out.pickle).message_index(),
        group.message_index()
    );
    // A head saved in a transaction that rolls back leaves nothing.
    let mut head = txn.load_outbound_head(room_id).unwrap().unwrap();
    head.state.message_count = 99;
    txn.save_outbound_head(head).unwrap();
    drop(txn);
    let mut txn = store.transaction().unwrap();
    assert_eq!(
        txn.load_outbound_head(room_id)
            .unwrap()
            .unwrap()
            .state
            .message_count,
        3
    );
    // A rotation: the new session starts with its own (empty) sets.
    let next = GroupSession::new(SessionConfig::version_1());
    txn.save_outbound(&outbound(room_id, &next, state.without_sets()))
        .unwrap();
    txn.commit().unwrap();
    let mut txn = store.transaction().unwrap();
    let out = txn.load_outbound(room_id).unwrap().unwrap();
    assert_eq!(out.session_id, next.session_id());
    assert!(out.state.shared_with.is_empty() && out.state.withheld.is_empty());
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        super::run_all(crate::store::MemoryStore::new);
        assert!(super::olm_changes_follow_saves(
            &mut crate::store::MemoryStore::new()
        ));
    }
}

//! Device tracking: TRK-01..05, TRK-10, TRK-11.

use crate::raw_peer::RawPeer;
use crate::router::{Peer, Router, user};
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OutgoingRequest, RequestKind, SyncChanges};
use serde_json::Value;

fn query_count(router: &Router) -> usize {
    router.count(RequestKind::KeysQuery)
}

/// Bob starts tracking eve: both, and bob's one query for eve, handed out
/// and not answered.
fn querying_eve(router: &mut Router) -> (Peer, RawPeer, OutgoingRequest) {
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(router, "eve", "E1");
    let mut txn = bob.store.transaction().unwrap();
    bob.machine
        .update_tracked_users(&mut txn, std::slice::from_ref(&eve.user))
        .unwrap();
    let requests = bob
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap();
    txn.commit().unwrap();
    let queries: Vec<_> = requests
        .into_iter()
        .filter(|r| r.kind() == RequestKind::KeysQuery && r.body().contains("eve"))
        .collect();
    assert_eq!(queries.len(), 1);
    let query = queries.into_iter().next().unwrap();
    (bob, eve, query)
}

/// TRK-01: tracked users are queried once and then current; a second
/// track of the same user sends nothing.
#[test]
fn tracked_users_are_queried_once() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "E1");
    let before = query_count(&router);
    router.introduce(&mut bob, &eve.user);
    assert_eq!(query_count(&router), before + 1);
    router.introduce(&mut bob, &eve.user);
    assert_eq!(query_count(&router), before + 1);
    let mut txn = bob.store.transaction().unwrap();
    assert_eq!(bob.machine.devices(&mut txn, &eve.user).unwrap().len(), 1);
    assert!(
        !bob.machine
            .has_outdated_users(&mut txn, std::slice::from_ref(&eve.user))
            .unwrap()
    );
}

/// TRK-04: a change that arrives while a query is in flight keeps the
/// user outdated; there is one query in flight per user at a time.
#[test]
fn change_during_query_keeps_user_outdated() {
    let mut router = Router::new();
    let (mut bob, eve, query) = querying_eve(&mut router);
    let mut txn = bob.store.transaction().unwrap();
    // The change arrives before the response.
    let mut changes = SyncChanges::default();
    changes.device_lists_changed = vec![eve.user.clone()];
    bob.machine
        .receive_sync_changes(&mut txn, &changes, router.now())
        .unwrap();
    // Still only the one query in flight for eve.
    let again = bob
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap();
    assert_eq!(again.iter().filter(|r| r.body().contains("eve")).count(), 1);
    let body = serde_json::json!({"device_keys": {eve.user.as_str(): router.device_keys[&eve.user].clone()}, "failures": {}});
    bob.machine
        .mark_request_as_sent(
            &mut txn,
            query.request_id(),
            &body.to_string(),
            router.now(),
        )
        .unwrap();
    assert!(
        bob.machine
            .has_outdated_users(&mut txn, std::slice::from_ref(&eve.user))
            .unwrap(),
        "stale response cleared the mark"
    );
    let next = bob
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap();
    assert!(
        next.iter()
            .any(|r| r.kind() == RequestKind::KeysQuery && r.body().contains("eve")),
        "no new query"
    );
    txn.commit().unwrap();
}

/// TRK-02, TRK-05: a change re-queries a tracked user; after `left` the
/// user is no longer tracked, and later changes are ignored.
#[test]
fn changed_and_left() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "E1");
    router.introduce(&mut bob, &eve.user);
    let apply = |bob: &mut crate::router::Peer, router: &mut Router, changed: bool| {
        let mut changes = SyncChanges::default();
        if changed {
            changes.device_lists_changed = vec![eve.user.clone()];
        } else {
            changes.device_lists_left = vec![eve.user.clone()];
        }
        bob.apply(&changes, router.now());
        router.flush(bob);
    };
    let before = query_count(&router);
    apply(&mut bob, &mut router, true);
    assert_eq!(query_count(&router), before + 1);
    apply(&mut bob, &mut router, false);
    apply(&mut bob, &mut router, true);
    assert_eq!(
        query_count(&router),
        before + 1,
        "an untracked user was queried"
    );
}

/// A user tracked again after `left` is queried again, though the machine
/// remembered them as tracked before (a client tracks a room's members
/// before every message): what it remembers goes with any tracking save.
#[test]
fn tracked_again_after_left() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "E1");
    router.introduce(&mut bob, &eve.user);
    let track = |bob: &mut crate::router::Peer| {
        let mut txn = bob.store.transaction().unwrap();
        bob.machine
            .update_tracked_users(&mut txn, std::slice::from_ref(&eve.user))
            .unwrap();
        txn.commit().unwrap();
    };
    track(&mut bob);
    track(&mut bob);
    let before = query_count(&router);
    let mut changes = SyncChanges::default();
    changes.device_lists_left = vec![eve.user.clone()];
    bob.apply(&changes, router.now());
    track(&mut bob);
    router.flush(&mut bob);
    assert_eq!(query_count(&router), before + 1, "not tracked again");
}

/// Devices the server no longer lists are removed.
#[test]
fn removed_devices_are_forgotten() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "E1");
    let _eve2 = RawPeer::new(&mut router, "eve", "E2");
    router.introduce(&mut bob, &eve.user);
    let count = |bob: &mut crate::router::Peer| {
        let mut txn = bob.store.transaction().unwrap();
        bob.machine.devices(&mut txn, &eve.user).unwrap().len()
    };
    assert_eq!(count(&mut bob), 2);
    router.device_keys.get_mut(&eve.user).unwrap().remove("E2");
    let mut changes = SyncChanges::default();
    changes.device_lists_changed = vec![eve.user.clone()];
    bob.apply(&changes, router.now());
    router.flush(&mut bob);
    assert_eq!(count(&mut bob), 1);
}

/// TRK-11: a failing server keeps its users outdated with backoff and
/// does not hold up users on other servers in the same request.
#[test]
fn failing_server_blocks_nobody_else() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let eve = RawPeer::new(&mut router, "eve", "E1");
    let far = RawPeer::new(&mut router, "far:other.org", "F1");
    router.failing_servers = vec!["other.org".into()];
    let mut txn = bob.store.transaction().unwrap();
    bob.machine
        .update_tracked_users(&mut txn, &[eve.user.clone(), far.user.clone()])
        .unwrap();
    txn.commit().unwrap();
    let outcomes = router.flush(&mut bob);
    let query = outcomes
        .iter()
        .filter_map(|o| o.query.clone())
        .find(|q| !q.failed.is_empty())
        .unwrap();
    assert_eq!(query.failed, vec![far.user.clone()]);
    assert!(query.updated.contains(&eve.user));
    let mut txn = bob.store.transaction().unwrap();
    assert!(
        bob.machine
            .has_outdated_users(&mut txn, std::slice::from_ref(&far.user))
            .unwrap()
    );
    assert!(
        !bob.machine
            .has_outdated_users(&mut txn, std::slice::from_ref(&eve.user))
            .unwrap()
    );
    drop(txn);
    // No retry before the backoff; one after it.
    router.failing_servers.clear();
    let before = query_count(&router);
    router.flush(&mut bob);
    assert_eq!(query_count(&router), before);
    router.advance(15_000);
    router.flush(&mut bob);
    assert_eq!(query_count(&router), before + 1);
    let mut txn = bob.store.transaction().unwrap();
    assert_eq!(bob.machine.devices(&mut txn, &far.user).unwrap().len(), 1);
}

/// Queries are chunked: 600 users make three requests.
#[test]
fn queries_are_chunked() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let users: Vec<_> = (0..600).map(|i| user(&format!("u{i}"))).collect();
    let mut txn = bob.store.transaction().unwrap();
    bob.machine.update_tracked_users(&mut txn, &users).unwrap();
    let requests = bob
        .machine
        .outgoing_requests(&mut txn, router.now())
        .unwrap();
    let sizes: Vec<usize> = requests
        .iter()
        .filter(|r| r.kind() == RequestKind::KeysQuery)
        .map(|r| {
            serde_json::from_str::<Value>(r.body()).unwrap()["device_keys"]
                .as_object()
                .unwrap()
                .len()
        })
        .filter(|n| *n > 1)
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 600);
    assert!(sizes.iter().all(|n| *n <= 250), "{sizes:?}");
    assert_eq!(sizes.len(), 3);
}

/// TRK-10: if the server stops listing our own device, its keys are
/// uploaded again.
#[test]
fn own_device_missing_is_reuploaded() {
    let mut router = Router::new();
    let mut bob = router.device("bob", "B1");
    let uploads = router.count(RequestKind::KeysUpload);
    router.tamper_query = Some(Box::new(|resp: &mut Value| {
        if let Some(devices) = resp
            .pointer_mut("/device_keys/@bob:example.org")
            .and_then(Value::as_object_mut)
        {
            devices.remove("B1");
        }
    }));
    let mut changes = SyncChanges::default();
    changes.device_lists_changed = vec![bob.user.clone()];
    bob.apply(&changes, router.now());
    let outcomes = router.flush(&mut bob);
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.query.as_ref())
            .any(|q| q.own_device_missing)
    );
    assert_eq!(
        router.count(RequestKind::KeysUpload),
        uploads + 1,
        "device keys were not uploaded again"
    );
    assert!(router.device_keys[&bob.user].contains_key("B1"));
}

/// SIG-07: a device's keys are kept exactly as received, spacing and key
/// order included. A response that is not a query response changes
/// nothing: the request stays pending and the user outdated.
#[test]
fn device_keys_are_kept_as_received_and_bad_responses_change_nothing() {
    let mut router = Router::new();
    let (mut bob, eve, query) = querying_eve(&mut router);
    let mut txn = bob.store.transaction().unwrap();
    for bad in [
        r#"{"device_keys": []}"#,
        r#"{"device_keys": {"@eve:example.org": "E1"}}"#,
        "[]",
    ] {
        let result =
            bob.machine
                .mark_request_as_sent(&mut txn, query.request_id(), bad, router.now());
        assert!(
            matches!(result, Err(newt_crypto::ResponseError::Malformed(_))),
            "{bad}: {result:?}"
        );
    }
    assert!(
        bob.machine
            .has_outdated_users(&mut txn, std::slice::from_ref(&eve.user))
            .unwrap()
    );
    // The device object pretty-printed: other bytes, the same JSON.
    let device = router.device_keys[&eve.user]["E1"].clone();
    let text = serde_json::to_string_pretty(&device).unwrap();
    let body = format!(
        r#"{{"failures": {{}}, "device_keys": {{"{}": {{"E1": {text}}}}}}}"#,
        eve.user
    );
    bob.machine
        .mark_request_as_sent(&mut txn, query.request_id(), &body, router.now())
        .unwrap();
    let stored = txn.load_devices(&eve.user).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].keys_json, text);
}

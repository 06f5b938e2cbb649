//! The account and its uploads: DEV-01..09, OTK-01..08.

use newt_crypto::ruma::{OwnedDeviceId, OwnedUserId};
use newt_crypto::signing::verify_json;
use newt_crypto::store::{MemoryStore, Store, StoreTxn};
use newt_crypto::{
    OlmMachine, OpenError, OutgoingRequest, RequestKind, ResponseError, SyncChanges, Timestamp,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn alice() -> (OwnedUserId, OwnedDeviceId) {
    ("@alice:example.org".try_into().unwrap(), "ALICEDEV".into())
}

fn open(store: &mut MemoryStore) -> OlmMachine {
    let (user, device) = alice();
    let mut txn = store.transaction().unwrap();
    let machine = OlmMachine::open(&mut txn, &user, &device, T0).unwrap();
    txn.commit().unwrap();
    machine
}

/// The pending key uploads (other requests, such as the query for our
/// own devices, are not this file's concern).
fn pending(store: &mut MemoryStore, machine: &OlmMachine) -> Vec<OutgoingRequest> {
    let mut txn = store.transaction().unwrap();
    let requests = machine.outgoing_requests(&mut txn, T0).unwrap();
    txn.commit().unwrap();
    requests
        .into_iter()
        .filter(|r| r.kind() == RequestKind::KeysUpload)
        .collect()
}

fn upload_body(request: &OutgoingRequest) -> Value {
    assert_eq!(request.kind(), RequestKind::KeysUpload);
    assert_eq!(request.path(), "/_matrix/client/v3/keys/upload");
    serde_json::from_str(request.body()).unwrap()
}

fn respond(store: &mut MemoryStore, machine: &OlmMachine, id: &str, otks: u64) {
    let mut txn = store.transaction().unwrap();
    let body = json!({"one_time_key_counts": {"signed_curve25519": otks}}).to_string();
    machine
        .mark_request_as_sent(&mut txn, id, &body, T0)
        .unwrap();
    txn.commit().unwrap();
}

fn sync(
    store: &mut MemoryStore,
    machine: &OlmMachine,
    otks: Option<u64>,
    fallback: Option<&[&str]>,
    now: Timestamp,
) {
    let mut changes = SyncChanges::default();
    changes.one_time_key_counts =
        otks.map(|n| BTreeMap::from([("signed_curve25519".to_owned(), n)]));
    changes.unused_fallback_key_types = fallback.map(|f| f.iter().map(|s| s.to_string()).collect());
    let mut txn = store.transaction().unwrap();
    machine
        .receive_sync_changes(&mut txn, &changes, now)
        .unwrap();
    txn.commit().unwrap();
}

/// Uploads the first batch so later tests start from a published account.
fn published(store: &mut MemoryStore) -> OlmMachine {
    let machine = open(store);
    let first = pending(store, &machine);
    respond(store, &machine, first[0].request_id(), 25);
    machine
}

/// DEV-03, DEV-04, DEV-05, OTK-01, OTK-02, OTK-04: the first upload holds
/// signed device keys for both algorithms, half of vodozemac's maximum of
/// one-time keys, and a signed fallback key with `fallback` inside the
/// signature.
#[test]
fn first_upload_is_complete_and_signed() {
    let mut store = MemoryStore::new();
    let machine = open(&mut store);
    let requests = pending(&mut store, &machine);
    assert_eq!(requests.len(), 1);
    let body = upload_body(&requests[0]);
    let (user, device) = alice();
    let device_keys = &body["device_keys"];
    let verified = newt_crypto::verify_device_keys(&user, &device, device_keys).unwrap();
    assert_eq!(verified.ed25519_base64().to_owned(), machine.ed25519_key());
    assert_eq!(verified.curve25519().to_base64(), machine.curve25519_key());
    assert_eq!(
        verified.algorithms(),
        ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]
    );
    let ed = newt_crypto::signing::parse_ed25519_key(machine.ed25519_key()).unwrap();
    let otks = body["one_time_keys"].as_object().unwrap();
    assert_eq!(otks.len(), 25);
    for (id, key) in otks {
        assert!(id.starts_with("signed_curve25519:"), "{id}");
        verify_json(key, user.as_str(), "ed25519:ALICEDEV", &ed).unwrap();
        assert!(key.get("fallback").is_none());
    }
    let fallback = body["fallback_keys"].as_object().unwrap();
    assert_eq!(fallback.len(), 1);
    let (_, fallback) = fallback.iter().next().unwrap();
    assert_eq!(fallback["fallback"], json!(true));
    verify_json(fallback, user.as_str(), "ed25519:ALICEDEV", &ed).unwrap();
    // OTK-04: `fallback` is covered by the signature.
    let mut stripped = fallback.clone();
    stripped.as_object_mut().unwrap().remove("fallback");
    assert!(verify_json(&stripped, user.as_str(), "ed25519:ALICEDEV", &ed).is_err());
}

/// DEV-08: the upload is persisted with the account before it is handed
/// out; after a crash (store reopened, nothing acknowledged) the identical
/// request comes back, and nothing new is generated.
#[test]
fn crash_before_response_resends_identical_upload() {
    let mut store = MemoryStore::new();
    let machine = open(&mut store);
    let before = pending(&mut store, &machine);
    drop(machine);
    let machine = open(&mut store);
    assert_eq!(pending(&mut store, &machine), before);
    // A sync meanwhile must not regenerate keys either (DEV-09).
    sync(&mut store, &machine, Some(0), Some(&[]), T0);
    assert_eq!(pending(&mut store, &machine), before);
}

/// DEV-08: keys count as published only after a 2xx is reported.
#[test]
fn published_only_after_response() {
    let mut store = MemoryStore::new();
    let machine = published(&mut store);
    assert!(pending(&mut store, &machine).is_empty());
    // A server at target with an unused fallback needs nothing.
    sync(
        &mut store,
        &machine,
        Some(25),
        Some(&["signed_curve25519"]),
        T0,
    );
    assert!(pending(&mut store, &machine).is_empty());
}

/// OTK-02: top up to the target from the reported count; no device keys
/// and no fallback key when those are fine.
#[test]
fn tops_up_one_time_keys_from_sync_counts() {
    let mut store = MemoryStore::new();
    let machine = published(&mut store);
    sync(
        &mut store,
        &machine,
        Some(5),
        Some(&["signed_curve25519"]),
        T0,
    );
    let requests = pending(&mut store, &machine);
    assert_eq!(requests.len(), 1);
    let body = upload_body(&requests[0]);
    assert_eq!(body["one_time_keys"].as_object().unwrap().len(), 20);
    assert!(body.get("device_keys").is_none());
    assert!(body.get("fallback_keys").is_none());
}

/// OTK-02: an absent algorithm in the counts means zero.
#[test]
fn absent_count_means_zero() {
    let mut store = MemoryStore::new();
    let machine = published(&mut store);
    let mut changes = SyncChanges::default();
    changes.one_time_key_counts = Some(BTreeMap::new());
    changes.unused_fallback_key_types = Some(vec!["signed_curve25519".into()]);
    let mut txn = store.transaction().unwrap();
    machine
        .receive_sync_changes(&mut txn, &changes, T0)
        .unwrap();
    txn.commit().unwrap();
    let body = upload_body(&pending(&mut store, &machine)[0]);
    assert_eq!(body["one_time_keys"].as_object().unwrap().len(), 25);
}

/// OTK-05, OTK-06, OTK-07: a used fallback key is replaced at once; the
/// previous one is kept for an hour, then forgotten.
#[test]
fn used_fallback_is_replaced_and_old_one_kept_an_hour() {
    let mut store = MemoryStore::new();
    let machine = published(&mut store);
    assert!(machine.device_keys().get("signatures").is_some());
    sync(&mut store, &machine, Some(25), Some(&[]), T0);
    let requests = pending(&mut store, &machine);
    let body = upload_body(&requests[0]);
    assert_eq!(body["fallback_keys"].as_object().unwrap().len(), 1);
    assert!(body.get("one_time_keys").is_none());
    respond(&mut store, &machine, requests[0].request_id(), 25);

    let forget_at = |store: &mut MemoryStore| {
        let mut txn = store.transaction().unwrap();
        txn.load_account()
            .unwrap()
            .unwrap()
            .state
            .forget_previous_fallback_at_ms
    };
    assert_eq!(
        forget_at(&mut store),
        Some(T0.plus_ms(Timestamp::HOUR_MS).0)
    );
    sync(
        &mut store,
        &machine,
        Some(25),
        Some(&["signed_curve25519"]),
        T0.plus_ms(1000),
    );
    assert!(forget_at(&mut store).is_some(), "forgotten too early");
    sync(
        &mut store,
        &machine,
        Some(25),
        Some(&["signed_curve25519"]),
        T0.plus_ms(Timestamp::HOUR_MS),
    );
    assert_eq!(forget_at(&mut store), None);
}

/// A server without fallback support omits the field: no fallback churn.
#[test]
fn missing_fallback_field_does_not_regenerate() {
    let mut store = MemoryStore::new();
    let machine = published(&mut store);
    sync(&mut store, &machine, Some(25), None, T0);
    assert!(pending(&mut store, &machine).is_empty());
}

/// DEV-07: a store never serves another user's or device's account.
#[test]
fn store_of_another_device_is_refused() {
    let mut store = MemoryStore::new();
    open(&mut store);
    let mut txn = store.transaction().unwrap();
    let bob: OwnedUserId = "@bob:example.org".try_into().unwrap();
    let err = OlmMachine::open(&mut txn, &bob, &OwnedDeviceId::from("ALICEDEV"), T0).unwrap_err();
    assert!(matches!(err, OpenError::WrongAccount { .. }), "{err}");
    let (alice, _) = alice();
    let err = OlmMachine::open(&mut txn, &alice, &OwnedDeviceId::from("OTHER"), T0).unwrap_err();
    assert!(matches!(err, OpenError::WrongAccount { .. }), "{err}");
}

/// Bad responses are typed errors and change nothing.
#[test]
fn bad_responses_change_nothing() {
    let mut store = MemoryStore::new();
    let machine = open(&mut store);
    let before = pending(&mut store, &machine);
    let mut txn = store.transaction().unwrap();
    let err = machine
        .mark_request_as_sent(&mut txn, "nope", "{}", T0)
        .unwrap_err();
    assert!(matches!(err, ResponseError::UnknownRequest(_)));
    let err = machine
        .mark_request_as_sent(&mut txn, before[0].request_id(), "not json", T0)
        .unwrap_err();
    assert!(matches!(err, ResponseError::Malformed(_)));
    drop(txn);
    assert_eq!(pending(&mut store, &machine), before);
}

//! Device keys, one-time keys and fallback keys on a real server
//! (DEV-01..09, OTK-01..08, SIG-04).

use crate::common::{Peer, login, options, server};
use newt_client::Client;
use newt_client::profile::Profile;
use newt_crypto::ruma::{OwnedDeviceId, OwnedUserId};
use newt_crypto::signing::verify_json;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::verify_device_keys;
use newt_crypto::vodozemac::olm::{Account, OlmMessage, SessionConfig};
use newt_crypto::vodozemac::{Curve25519PublicKey, Ed25519PublicKey};
use newt_testkit::{Action, Proxy, Rule};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// DEV-04, TRK-06: another user's `/keys/query` returns the device with a
/// self-signature that verifies over the JSON as received.
#[tokio::test(flavor = "multi_thread")]
async fn uploaded_device_keys_verify_for_another_user() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = login(&alice, dir.path()).await;
    let me = client.identity();
    let response = Peer::new("bob").query(&me.user_id);
    let json = &response["device_keys"][&me.user_id][&me.device_id];
    let user: OwnedUserId = me.user_id.as_str().try_into().unwrap();
    let device: OwnedDeviceId = me.device_id.as_str().into();
    let verified = verify_device_keys(&user, &device, json).unwrap();
    assert_eq!(verified.ed25519_base64().to_owned(), me.ed25519);
    assert_eq!(verified.curve25519().to_base64(), me.curve25519);
    assert_eq!(verified.untrusted_display_name(), Some("newt test"));
}

/// The device ID and keys are kept across runs: logging in again from the
/// same data directory reuses the device and uploads nothing new.
#[tokio::test(flavor = "multi_thread")]
async fn second_login_keeps_device_and_keys() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = login(&alice, dir.path()).await.identity();
    let proxy = Proxy::start(server().port()).unwrap();
    let again = Client::login(options(&proxy.url(), &alice, dir.path()))
        .await
        .unwrap();
    assert_eq!(again.identity().device_id, first.device_id);
    assert_eq!(again.identity().ed25519, first.ed25519);
    assert_eq!(proxy.count("/keys/upload"), 0);
    let restored = Client::restore(dir.path(), crate::common::fast_retry())
        .await
        .unwrap();
    assert_eq!(restored.identity(), again.identity());
}

fn claimed_key(user: &str, ed: &Ed25519PublicKey, device: &str, object: &Value) -> String {
    verify_json(object, user, &format!("ed25519:{device}"), ed).unwrap();
    object["key"].as_str().unwrap().to_owned()
}

/// OTK-02, OTK-04, OTK-05, OTK-07: after 30 claims (25 one-time keys,
/// then the fallback key) one sync restores the target count; the used
/// fallback key is replaced by a new one.
#[tokio::test(flavor = "multi_thread")]
async fn claims_are_topped_up_and_fallback_replaced() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut client = login(&alice, dir.path()).await;
    let me = client.identity();
    let ed = newt_crypto::signing::parse_ed25519_key(&me.ed25519).unwrap();
    let bob = Peer::new("bob");

    let mut one_time = BTreeSet::new();
    let mut fallbacks = BTreeSet::new();
    for _ in 0..30 {
        let (_id, object) = bob
            .claim(&me.user_id, &me.device_id)
            .expect("a key every time");
        let key = claimed_key(&me.user_id, &ed, &me.device_id, &object);
        if object.get("fallback") == Some(&Value::Bool(true)) {
            fallbacks.insert(key);
        } else {
            one_time.insert(key);
        }
    }
    assert_eq!(one_time.len(), 25, "half of vodozemac's 50 one-time keys");
    assert_eq!(
        fallbacks.len(),
        1,
        "the same fallback key once they ran out"
    );
    let old_fallback = fallbacks.into_iter().next().unwrap();

    let summary = client.sync_once(Duration::from_secs(0)).await.unwrap();
    assert!(summary.requests_sent >= 1, "no upload with new keys");
    // The server holds the target again: 25 fresh one-time keys.
    let mut fresh = BTreeSet::new();
    for _ in 0..25 {
        let (_, object) = bob.claim(&me.user_id, &me.device_id).unwrap();
        assert!(
            object.get("fallback").is_none(),
            "ran out before the target count"
        );
        let key = claimed_key(&me.user_id, &ed, &me.device_id, &object);
        assert!(
            !one_time.contains(&key),
            "a claimed key was handed out again"
        );
        fresh.insert(key);
    }
    assert_eq!(fresh.len(), 25);
    // Then a new fallback key, not the used one.
    let (_, object) = bob.claim(&me.user_id, &me.device_id).unwrap();
    assert_eq!(object["fallback"], Value::Bool(true));
    assert_ne!(
        claimed_key(&me.user_id, &ed, &me.device_id, &object),
        old_fallback
    );
}

/// DEV-08: the process stops after the server stored `/keys/upload` but
/// before the response was read. On restart the identical upload returns
/// 200, and the keys the server hands out are ones the store can use.
#[tokio::test(flavor = "multi_thread")]
async fn crash_after_upload_reached_server_reuploads_identical_keys() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    proxy.add_rule(Rule::new("/keys/upload", 1, Action::HoldResponse));
    let task = tokio::spawn(Client::login(options(&proxy.url(), &alice, dir.path())));
    let reached = proxy.wait_for(Duration::from_secs(30), |r| {
        r.path.contains("/keys/upload") && r.upstream_status == Some(200)
    });
    assert!(reached, "the upload never reached the server");
    // The crash: the task dies with the response unread.
    task.abort();
    let _ = task.await;

    let profile = Profile::current(dir.path()).unwrap();
    let client = Client::open_profile(
        profile.clone(),
        crate::common::fast_retry(),
        Some(&proxy.url()),
    );
    let mut client = client.unwrap();
    assert!(client.process_outgoing().await.unwrap() >= 1);
    let uploads: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|r| r.path.contains("/keys/upload"))
        .collect();
    assert_eq!(uploads.len(), 2);
    assert_eq!(
        uploads[1].upstream_status,
        Some(200),
        "re-upload was refused"
    );
    assert_eq!(
        uploads[0].body, uploads[1].body,
        "re-upload differs from the first"
    );
    let me = client.identity();
    drop(client);

    // Every key the server hands out opens a session with the stored account.
    let mut store = profile.open_store().unwrap();
    let record = store
        .transaction()
        .unwrap()
        .load_account()
        .unwrap()
        .unwrap();
    let mut account = Account::from_pickle(record.pickle);
    let ours = Curve25519PublicKey::from_base64(&me.curve25519).unwrap();
    let bob = Peer::new("bob");
    let bob_account = Account::new();
    for _ in 0..25 {
        let (_, object) = bob.claim(&me.user_id, &me.device_id).unwrap();
        assert!(object.get("fallback").is_none());
        let otk = Curve25519PublicKey::from_base64(object["key"].as_str().unwrap()).unwrap();
        let mut outbound = bob_account
            .create_outbound_session(SessionConfig::version_1(), ours, otk)
            .unwrap();
        let OlmMessage::PreKey(message) = outbound.encrypt(b"hello").unwrap() else {
            panic!("not a pre-key message")
        };
        let inbound = account
            .create_inbound_session(
                SessionConfig::version_1(),
                bob_account.curve25519_key(),
                &message,
            )
            .expect("server holds a key the store does not");
        assert_eq!(inbound.plaintext, b"hello");
    }
}

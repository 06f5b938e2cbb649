//! A lying server, through the proxy's rewrite rules (TRK-06, TRK-08,
//! MEG-10): forged data is refused or flagged, nothing trusted.

use crate::common::{fast_retry, login, options, server};
use newt_client::{Client, CreateRoom};
use newt_crypto::TrustVerdict;
use newt_testkit::{Action, Proxy, Rule};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// TRK-06, TRK-08: the server swaps the Ed25519 key of a device the
/// client already knows: the forged object fails its self-signature and
/// is refused; the known keys stay. (A validly self-signed replacement is
/// flagged as changed keys: `newt-crypto` `attacks::changed_device_keys_are_refused`.)
#[tokio::test(flavor = "multi_thread")]
async fn rewritten_device_keys_are_refused() {
    let (alice, bob) = (
        server().register("alice").unwrap(),
        server().register("bob").unwrap(),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = login(&alice, da.path()).await;
    let proxy = Proxy::start(server().port()).unwrap();
    let mut b = Client::login(options(&proxy.url(), &bob, db.path()))
        .await
        .unwrap();
    let alice_id: newt_crypto::ruma::OwnedUserId =
        a.identity().user_id.as_str().try_into().unwrap();
    let known = b.fresh_devices(&alice_id).await.unwrap();
    assert_eq!(known.len(), 1);
    let real_key = known[0].keys.ed25519_base64().to_owned();
    let (user, device) = (a.identity().user_id, a.identity().device_id);
    let forged = "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI";
    proxy.add_rule(Rule::new(
        "/keys/query",
        100,
        Action::Rewrite(Arc::new(move |resp: &mut Value| {
            if let Some(keys) = resp.pointer_mut(&format!("/device_keys/{user}/{device}/keys")) {
                keys[format!("ed25519:{device}")] = Value::from(forged);
            }
        })),
    ));
    let after = b.fresh_devices(&alice_id).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].keys.ed25519_base64(),
        real_key,
        "the forged key replaced the known one"
    );
    assert!(
        proxy.count("/keys/query") >= 1,
        "the rewrite was never exercised"
    );
}

/// MEG-10: the server rewrites the sender of an encrypted event: the
/// decrypted event is flagged as a mismatched sender.
#[tokio::test(flavor = "multi_thread")]
async fn rewritten_event_sender_is_flagged() {
    let (alice, bob, mallory) = (
        server().register("alice").unwrap(),
        server().register("bob").unwrap(),
        server().register("mallory").unwrap(),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = login(&alice, da.path()).await;
    let proxy = Proxy::start(server().port()).unwrap();
    let mut b = Client::open_profile(
        Client::login(options(&proxy.url(), &bob, db.path()))
            .await
            .unwrap()
            .profile()
            .clone(),
        fast_retry(),
        Some(&proxy.url()),
    )
    .unwrap();
    let room = a
        .create_room(&CreateRoom {
            invite: vec![bob.user_id.clone()],
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    b.sync_once(Duration::ZERO).await.unwrap();
    b.join(&room).await.unwrap();
    b.sync_once(Duration::ZERO).await.unwrap();
    b.take_messages();
    a.sync_once(Duration::ZERO).await.unwrap();
    a.send_text(&room, "signed by alice").await.unwrap();
    let impostor = mallory.user_id.clone();
    proxy.add_rule(Rule::new(
        "/sync",
        100,
        Action::Rewrite(Arc::new(move |resp: &mut Value| {
            if let Some(rooms) = resp
                .pointer_mut("/rooms/join")
                .and_then(Value::as_object_mut)
            {
                for room in rooms.values_mut() {
                    if let Some(events) = room
                        .pointer_mut("/timeline/events")
                        .and_then(Value::as_array_mut)
                    {
                        for event in events {
                            if event["type"] == "m.room.encrypted" {
                                event["sender"] = Value::from(impostor.as_str());
                            }
                        }
                    }
                }
            }
        })),
    ));
    let mut verdict = None;
    for _ in 0..20 {
        b.sync_once(Duration::from_millis(300)).await.unwrap();
        if let Some(m) = b
            .take_messages()
            .into_iter()
            .find(|m| m.body.as_deref() == Some("signed by alice"))
        {
            verdict = Some((m.sender.clone(), m.trust));
            break;
        }
    }
    let (sender, trust) = verdict.expect("the message never arrived");
    assert_eq!(sender, mallory.user_id);
    assert_eq!(trust, Some(TrustVerdict::MismatchedSender));
}

//! Request shaping on a real Synapse (ENC-12, TRK, CLM): the first message
//! to a room of 100 users with two devices each.

use crate::common::{options, server};
use newt_client::{Client, CreateRoom};
use newt_crypto::signing::sign_json;
use newt_crypto::vodozemac::olm::Account;
use newt_testkit::Proxy;
use newt_testkit::synapse::RegisteredUser;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// A device with real, signed keys, made without a newt store.
fn device(user: &RegisteredUser) -> String {
    let (token, device_id) = server().login(user).unwrap();
    let mut account = Account::new();
    let sign = |account: &Account, value: Value| {
        let Value::Object(mut map) = value else {
            unreachable!()
        };
        sign_json(
            &mut map,
            &user.user_id,
            &format!("ed25519:{device_id}"),
            |m| account.sign(m),
        )
        .unwrap();
        Value::Object(map)
    };
    let keys = account.identity_keys();
    let device_keys = sign(
        &account,
        json!({
            "user_id": user.user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {format!("curve25519:{device_id}"): keys.curve25519.to_base64(), format!("ed25519:{device_id}"): keys.ed25519.to_base64()},
        }),
    );
    account.generate_one_time_keys(2);
    let mut otks = Map::new();
    for (id, key) in account.one_time_keys() {
        otks.insert(
            format!("signed_curve25519:{}", id.to_base64()),
            sign(&account, json!({"key": key.to_base64()})),
        );
    }
    let body = json!({"device_keys": device_keys, "one_time_keys": otks});
    server()
        .call(
            &token,
            "POST",
            "/_matrix/client/v3/keys/upload",
            Some(&body),
        )
        .unwrap();
    token
}

#[tokio::test(flavor = "multi_thread")]
async fn first_message_to_a_big_room_is_batched() {
    let alice = server().register("alice").unwrap();
    let users: Vec<RegisteredUser> = (0..100)
        .map(|i| server().register(&format!("m{i}")).unwrap())
        .collect();
    let tokens: Vec<String> = tokio::task::spawn_blocking({
        let users = users.clone();
        move || {
            users
                .iter()
                .map(|u| {
                    let t = device(u);
                    device(u);
                    t
                })
                .collect()
        }
    })
    .await
    .unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut client = Client::login(options(&proxy.url(), &alice, dir.path()))
        .await
        .unwrap();
    let invite: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
    let room = client
        .create_room(&CreateRoom {
            invite,
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    let room_path = format!(
        "/_matrix/client/v3/join/{}",
        room.replace('!', "%21").replace(':', "%3A")
    );
    tokio::task::spawn_blocking(move || {
        for token in tokens {
            server()
                .call(&token, "POST", &room_path, Some(&json!({})))
                .unwrap();
        }
    })
    .await
    .unwrap();
    client.sync_once(Duration::ZERO).await.unwrap();
    client.load_members(&room).await.unwrap();
    client.send_text(&room, "hello, everyone").await.unwrap();

    let log = proxy.log();
    let about_members = |path: &str| {
        log.iter()
            .filter(|r| r.path.contains(path) && users.iter().any(|u| r.body.contains(&u.user_id)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        about_members("/keys/query").len(),
        1,
        "one query for one chunk of 100 users"
    );
    assert_eq!(
        about_members("/keys/claim").len(),
        1,
        "one claim for 200 devices"
    );
    let sends = about_members("/sendToDevice");
    assert_eq!(sends.len(), 1, "one /sendToDevice for 200 devices");
    let body: Value = serde_json::from_str(&sends[0].body).unwrap();
    let messages = body["messages"].as_object().unwrap();
    assert_eq!(messages.len(), 100, "every user in the one request");
    assert!(messages.values().all(|d| d.as_object().unwrap().len() == 2));
}

//! Encrypted rooms on a real Synapse (ENC-*, MEG-*): every device reads
//! every message; late devices, leavers and restarts behave.

use crate::common::{fast_retry, login, server};
use newt_client::{Client, CreateRoom, RoomMessage};
use newt_crypto::TrustVerdict;
use newt_testkit::Proxy;
use std::collections::BTreeMap;
use std::time::Duration;

/// Syncs until `wanted` bodies were read (or 30 syncs); returns every
/// message seen, by body.
async fn read(client: &mut Client, wanted: &[&str]) -> BTreeMap<String, RoomMessage> {
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        client.sync_once(Duration::from_millis(300)).await.unwrap();
        for message in client.take_messages() {
            if let Some(body) = &message.body {
                seen.insert(body.clone(), message);
            }
        }
        if wanted
            .iter()
            .all(|w| seen.get(*w).is_some_and(|m| m.decrypted))
        {
            break;
        }
    }
    seen
}

async fn join_all(room: &str, clients: &mut [&mut Client]) {
    for client in clients.iter_mut() {
        client.sync_once(Duration::ZERO).await.unwrap();
        client.join(room).await.unwrap();
    }
}

/// An encrypted room `owner` made, `guest` (signed in as `guest_user`)
/// invited and joined, with the owner synced since.
async fn room_for_two(
    owner: &mut Client,
    guest: &mut Client,
    guest_user: &newt_testkit::synapse::RegisteredUser,
) -> String {
    let room = owner
        .create_room(&CreateRoom {
            invite: vec![guest_user.user_id.clone()],
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    join_all(&room, &mut [guest]).await;
    owner.sync_once(Duration::ZERO).await.unwrap();
    room
}

/// Three users with two newt devices each: every message is read by every
/// device, with a trust verdict.
#[tokio::test(flavor = "multi_thread")]
async fn three_users_two_devices_each() {
    let users: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| server().register(n).unwrap())
        .collect();
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut clients = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        clients.push(login(&users[i / 2], dir.path()).await);
    }
    let room = clients[0]
        .create_room(&CreateRoom {
            name: Some("six devices".into()),
            invite: vec![users[1].user_id.clone(), users[2].user_id.clone()],
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    {
        let (_, rest) = clients.split_at_mut(2);
        let (bobs, carols) = rest.split_at_mut(2);
        join_all(&room, &mut [&mut bobs[0], &mut carols[0]]).await;
    }
    for client in clients.iter_mut() {
        client.sync_once(Duration::ZERO).await.unwrap();
        client.take_messages();
    }
    let senders = [(0, "from a1"), (3, "from b2"), (4, "from c1")];
    for (index, body) in senders {
        clients[index].sync_once(Duration::ZERO).await.unwrap();
        clients[index].send_text(&room, body).await.unwrap();
    }
    let wanted: Vec<&str> = senders.iter().map(|(_, b)| *b).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let seen = read(client, &wanted).await;
        for body in &wanted {
            let message = seen
                .get(*body)
                .unwrap_or_else(|| panic!("device {i} never saw {body:?}: {seen:?}"));
            assert!(
                message.decrypted,
                "device {i} could not decrypt {body:?}: {:?}",
                message.utd_reason
            );
            assert!(message.trust.is_some());
        }
        // A device's own message is verified; others' are unverified.
        let own = senders.iter().find(|(s, _)| *s == i).map(|(_, b)| *b);
        if let Some(own) = own {
            assert_eq!(seen[own].trust, Some(TrustVerdict::Verified));
        }
    }
}

/// A device that logs in later reads what is sent after it appeared, and
/// not what came before (it never got that key).
#[tokio::test(flavor = "multi_thread")]
async fn late_device_reads_after_it_appeared() {
    let alice = server().register("alice").unwrap();
    let bob = server().register("bob").unwrap();
    let (da, db, db2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut a1 = login(&alice, da.path()).await;
    let mut b1 = login(&bob, db.path()).await;
    let room = room_for_two(&mut a1, &mut b1, &bob).await;
    a1.send_text(&room, "before").await.unwrap();
    assert!(read(&mut b1, &["before"]).await["before"].decrypted);

    let mut b2 = login(&bob, db2.path()).await;
    b2.sync_once(Duration::ZERO).await.unwrap();
    b2.take_messages();
    a1.sync_once(Duration::ZERO).await.unwrap();
    a1.send_text(&room, "after").await.unwrap();
    let seen = read(&mut b2, &["after"]).await;
    assert!(seen["after"].decrypted, "{:?}", seen["after"].utd_reason);
    let history = b2.history(&room, 20).await.unwrap();
    let before = history.iter().find(|m| m.encrypted && !m.decrypted);
    assert!(
        before.is_some_and(|m| m.utd_reason.is_some()),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|m| m.body.as_deref() == Some("after") && m.decrypted)
    );
}

/// A member who leaves cannot read what is sent after leaving.
#[tokio::test(flavor = "multi_thread")]
async fn leaver_cannot_read_later_messages() {
    let alice = server().register("alice").unwrap();
    let carol = server().register("carol").unwrap();
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a1 = login(&alice, da.path()).await;
    let mut c1 = login(&carol, dc.path()).await;
    let room = room_for_two(&mut a1, &mut c1, &carol).await;
    a1.send_text(&room, "while here").await.unwrap();
    assert!(read(&mut c1, &["while here"]).await["while here"].decrypted);
    c1.leave(&room).await.unwrap();
    for _ in 0..3 {
        a1.sync_once(Duration::from_millis(200)).await.unwrap();
    }
    a1.send_text(&room, "after leaving").await.unwrap();
    // Carol gets the raw event anyway (say, from a lying server).
    let page: serde_json::Value = a1
        .http()
        .send_json(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
            None,
        )
        .await
        .unwrap();
    let event = page["chunk"][0].clone();
    assert_eq!(event["type"], "m.room.encrypted");
    let message = c1.decrypt_event(&room, &event).unwrap().unwrap();
    assert!(!message.decrypted, "the leaver read a later message");
}

/// A restart between messages causes no new key share.
#[tokio::test(flavor = "multi_thread")]
async fn restart_causes_no_new_key_share() {
    let alice = server().register("alice").unwrap();
    let bob = server().register("bob").unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a1 = login(&alice, da.path()).await;
    let mut b1 = login(&bob, db.path()).await;
    let room = room_for_two(&mut a1, &mut b1, &bob).await;
    a1.send_text(&room, "one").await.unwrap();
    let profile = a1.profile().clone();
    drop(a1);
    let proxy = Proxy::start(server().port()).unwrap();
    let mut a1 = Client::open_profile(profile, fast_retry(), Some(&proxy.url())).unwrap();
    a1.sync_once(Duration::ZERO).await.unwrap();
    a1.send_text(&room, "two").await.unwrap();
    assert_eq!(
        proxy.count("/sendToDevice"),
        0,
        "the restart caused a key share"
    );
    assert_eq!(proxy.count("/keys/claim"), 0);
    let seen = read(&mut b1, &["one", "two"]).await;
    assert!(seen["one"].decrypted && seen["two"].decrypted);
}

/// Plaintext rooms work; and a device that joined an encrypted room
/// behind newt's back (no state seen yet) still never sends plaintext
/// into it (ENC-02).
#[tokio::test(flavor = "multi_thread")]
async fn plaintext_only_where_the_room_is_unencrypted() {
    let alice = server().register("alice").unwrap();
    let bob = server().register("bob").unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a1 = login(&alice, da.path()).await;
    let mut b1 = login(&bob, db.path()).await;
    let open = a1
        .create_room(&CreateRoom {
            invite: vec![bob.user_id.clone()],
            unencrypted: true,
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    b1.sync_once(Duration::ZERO).await.unwrap();
    b1.join(&open).await.unwrap();
    a1.send_text(&open, "in the clear").await.unwrap();
    let mut plain = None;
    for _ in 0..30 {
        b1.sync_once(Duration::from_millis(300)).await.unwrap();
        plain = b1
            .take_messages()
            .into_iter()
            .find(|m| m.body.as_deref() == Some("in the clear"));
        if plain.is_some() {
            break;
        }
    }
    let plain = plain.expect("plain message missing");
    assert!(!plain.encrypted && !plain.decrypted && plain.trust.is_none());

    let secret = a1
        .create_room(&CreateRoom {
            invite: vec![bob.user_id.clone()],
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    // Bob joins with a raw request: his client has seen nothing of the room.
    let path = format!(
        "/_matrix/client/v3/join/{}",
        secret.replace('!', "%21").replace(':', "%3A")
    );
    b1.http()
        .send(reqwest::Method::POST, &path, Some("{}"))
        .await
        .unwrap();
    b1.send_text(&secret, "must be encrypted").await.unwrap();
    let seen = read(&mut a1, &["must be encrypted"]).await;
    let m = seen.get("must be encrypted").expect("alice never read it");
    assert!(m.encrypted && m.decrypted, "{m:?}");
}

//! Interop with an independent implementation: matrix-nio (PyPI) in the
//! same room as a newt device on the same Synapse. newt's messages
//! decrypt in nio and nio's in newt.

use crate::common::{login, server};
use newt_client::CreateRoom;
use newt_testkit::nio::NioPeer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn newt_and_nio_read_each_other() {
    let alice = server().register("alice").unwrap();
    let nora = server().register("nora").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut newt = login(&alice, dir.path()).await;
    let nio = tokio::task::spawn_blocking({
        let url = server().url();
        move || NioPeer::new(&url, nora)
    })
    .await
    .unwrap()
    .unwrap();
    let room = newt
        .create_room(&CreateRoom {
            invite: vec![nio.user_id().to_owned()],
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    let nio = std::sync::Arc::new(nio);
    let run = |f: Box<
        dyn FnOnce(&NioPeer) -> Result<Vec<serde_json::Value>, newt_testkit::HarnessError> + Send,
    >| {
        let nio = nio.clone();
        async move { tokio::task::spawn_blocking(move || f(&nio)).await.unwrap() }
    };
    let joined = room.clone();
    run(Box::new(move |n| n.join(&joined).map(|_| vec![])))
        .await
        .unwrap();

    // newt → nio.
    for _ in 0..3 {
        newt.sync_once(Duration::from_millis(200)).await.unwrap();
    }
    newt.send_text(&room, "hello from newt").await.unwrap();
    let read_room = room.clone();
    let lines = run(Box::new(move |n| n.read(&read_room, "hello from newt", 30)))
        .await
        .unwrap();
    let line = lines
        .iter()
        .find(|l| l["body"] == "hello from newt")
        .expect("nio never read it");
    assert_eq!(line["decrypted"], true, "{lines:?}");
    assert_eq!(line["sender"], newt.identity().user_id.as_str());

    // nio → newt.
    let send_room = room.clone();
    run(Box::new(move |n| {
        n.send(&send_room, "hello from nio").map(|_| vec![])
    }))
    .await
    .unwrap();
    let mut read = None;
    for _ in 0..30 {
        newt.sync_once(Duration::from_millis(300)).await.unwrap();
        if let Some(m) = newt
            .take_messages()
            .into_iter()
            .find(|m| m.body.as_deref() == Some("hello from nio"))
        {
            read = Some(m);
            break;
        }
    }
    let message = read.expect("newt never read nio's message");
    assert!(message.decrypted);
    assert_eq!(message.sender, nio.user_id());
    assert!(message.trust.is_some());
}

/// Key export files move between newt and nio in both directions: a nio
/// device that never got a key reads newt's message after importing
/// newt's file, and a newt device reads nio's message after importing
/// nio's file.
#[tokio::test(flavor = "multi_thread")]
async fn key_files_move_between_newt_and_nio() {
    use newt_crypto::key_export;
    let alice = server().register("alice").unwrap();
    let nora = server().register("nora").unwrap();
    let (d1, d2, files) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut a1 = login(&alice, d1.path()).await;
    let url = server().url();
    let (n1, n2) = tokio::task::spawn_blocking({
        let (url, nora) = (url.clone(), nora.clone());
        move || {
            (
                NioPeer::new(&url, nora.clone()).unwrap(),
                NioPeer::new(&url, nora).unwrap(),
            )
        }
    })
    .await
    .unwrap();
    let (n1, n2) = (std::sync::Arc::new(n1), std::sync::Arc::new(n2));
    let room = a1
        .create_room(&CreateRoom {
            invite: vec![n1.user_id().to_owned()],
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    let blocking = |f: Box<
        dyn FnOnce() -> Result<Vec<serde_json::Value>, newt_testkit::HarnessError> + Send,
    >| async move { tokio::task::spawn_blocking(f).await.unwrap() };
    {
        let (n1, room) = (n1.clone(), room.clone());
        blocking(Box::new(move || n1.join(&room).map(|_| vec![])))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        a1.sync_once(Duration::from_millis(200)).await.unwrap();
    }
    a1.send_text(&room, "from newt").await.unwrap();
    {
        let (n1, room) = (n1.clone(), room.clone());
        blocking(Box::new(move || n1.send(&room, "from nio").map(|_| vec![])))
            .await
            .unwrap();
    }

    // newt → nio.
    a1.sync_once(Duration::from_millis(200)).await.unwrap();
    let sessions = a1.export_room_keys().unwrap();
    let newt_file = files.path().join("newt-keys.txt");
    let text = key_export::encrypt(
        serde_json::to_string(&sessions).unwrap().as_bytes(),
        "newt pass",
        10_000,
    )
    .unwrap();
    std::fs::write(&newt_file, text).unwrap();
    let lines = {
        let (n2, room, file) = (n2.clone(), room.clone(), newt_file.clone());
        blocking(Box::new(move || {
            n2.import_and_read(&file, "newt pass", &room, "from newt", 30)
        }))
        .await
        .unwrap()
    };
    let line = lines
        .iter()
        .find(|l| l["body"] == "from newt")
        .expect("nio could not read newt's message");
    assert_eq!(line["decrypted"], true);

    // nio → newt.
    let nio_file = files.path().join("nio-keys.txt");
    {
        let (n1, file) = (n1.clone(), nio_file.clone());
        blocking(Box::new(move || {
            n1.export_keys(&file, "nio pass").map(|_| vec![])
        }))
        .await
        .unwrap();
    }
    let text = std::fs::read_to_string(&nio_file).unwrap();
    let plain = key_export::decrypt(&text, "nio pass").expect("newt could not read nio's key file");
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&plain).unwrap();
    let mut a2 = login(&alice, d2.path()).await;
    a2.sync_once(Duration::ZERO).await.unwrap();
    let before = a2.history(&room, 20).await.unwrap();
    assert!(
        before.iter().any(|m| m.encrypted && !m.decrypted),
        "a2 could read before importing"
    );
    let outcome = a2.import_room_keys(&sessions).unwrap();
    assert!(outcome.imported >= 1, "{outcome:?}");
    let after = a2.history(&room, 20).await.unwrap();
    let read = after
        .iter()
        .find(|m| m.body.as_deref() == Some("from nio"))
        .expect("newt could not read nio's message");
    assert!(read.decrypted);
    assert_eq!(
        read.trust,
        Some(newt_crypto::TrustVerdict::AuthenticityNotGuaranteed)
    );
}

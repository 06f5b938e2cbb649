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

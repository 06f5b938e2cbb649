//! `newt demo`: a throwaway local Synapse and an encrypted conversation
//! through the whole key-sharing flow, narrated step by step.
//!
//! Nothing touches the user's real profile: the server and every device
//! live in temporary directories removed at the end.

use crate::output::Output;
use anyhow::Context;
use newt_client::retry::RetryPolicy;
use newt_client::{Client, CreateRoom, LoginOptions, RoomMessage};
use newt_testkit::synapse::RegisteredUser;
use newt_testkit::{Synapse, SynapseOptions};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

async fn device(
    server: &Synapse,
    user: &RegisteredUser,
    dir: &Path,
    name: &str,
) -> anyhow::Result<Client> {
    Client::login(LoginOptions {
        data_dir: dir.join(name),
        homeserver: server.url(),
        user: user.localpart.clone(),
        password: user.password.clone().into(),
        device_name: Some(name.into()),
        retry: RetryPolicy::default(),
    })
    .await
    .map_err(crate::errors::explain)
}

/// Syncs until a message with `body` arrives (or ten tries).
async fn read(client: &mut Client, body: &str) -> anyhow::Result<Option<RoomMessage>> {
    for _ in 0..10 {
        client
            .sync_once(Duration::from_millis(300))
            .await
            .map_err(crate::errors::explain)?;
        if let Some(m) = client
            .take_messages()
            .into_iter()
            .find(|m| m.body.as_deref() == Some(body) || (m.encrypted && !m.decrypted))
        {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

fn share_line(client: &Client) -> (String, serde_json::Value) {
    match client.last_share() {
        Some(s) => (
            format!(
                "   room key {}… {}; sent over Olm to {} device(s)",
                &s.session_id[..8.min(s.session_id.len())],
                if s.rotated {
                    "newly created"
                } else {
                    "reused (no rotation)"
                },
                s.shared_with.len()
            ),
            json!({"session_id": s.session_id, "rotated": s.rotated, "shared_with": s.shared_with.len()}),
        ),
        None => ("   (unencrypted)".into(), json!({})),
    }
}

async fn say(
    out: Output,
    from: &mut Client,
    room: &str,
    who: &str,
    text: &str,
) -> anyhow::Result<()> {
    from.sync_once(Duration::ZERO)
        .await
        .map_err(crate::errors::explain)?;
    let event_id = from
        .send_text(room, text)
        .await
        .map_err(crate::errors::explain)?;
    let (line, mut value) = share_line(from);
    out.emit(&format!("{who} says {text:?}\n{line}"), &{
        value["step"] = json!("send");
        value["event_id"] = json!(event_id);
        value["body"] = json!(text);
        value
    })?;
    Ok(())
}

async fn show(out: Output, reader: &mut Client, who: &str, body: &str) -> anyhow::Result<()> {
    let message = read(reader, body).await?;
    let (human, value) = match &message {
        Some(m) if m.decrypted => (
            format!(
                "   {who} reads {:?} (trust: {})",
                m.body.as_deref().unwrap_or(""),
                m.trust.map(super::render::trust_str).unwrap_or("none")
            ),
            json!({"step": "read", "reader": who, "decrypted": true, "body": m.body, "trust": m.trust}),
        ),
        Some(m) => (
            format!(
                "   {who} cannot read it: {}",
                m.utd_reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            json!({"step": "read", "reader": who, "decrypted": false}),
        ),
        None => (
            format!("   {who} saw nothing"),
            json!({"step": "read", "reader": who, "decrypted": false}),
        ),
    };
    out.emit(&human, &value)?;
    Ok(())
}

/// Runs the demo.
pub async fn run(out: Output) -> anyhow::Result<()> {
    out.step("1. starting a throwaway Synapse on 127.0.0.1 (the first run installs it from PyPI, about a minute)");
    let server = tokio::task::spawn_blocking(|| Synapse::start(SynapseOptions::default()))
        .await
        .context("the Synapse starter crashed")?
        .context("starting Synapse")?;
    out.emit(
        &format!("   Synapse is up at {}", server.url()),
        &json!({"step": "server", "url": server.url()}),
    )?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let alice = server.register("alice").context("registering alice")?;
    let bob = server.register("bob").context("registering bob")?;
    let carol = server.register("carol").context("registering carol")?;

    out.step("2. alice, bob and carol log in; each device publishes signed keys");
    let mut laptop = device(&server, &alice, dir.path(), "alice-laptop").await?;
    let mut phone = device(&server, &bob, dir.path(), "bob-phone").await?;
    let mut carols = device(&server, &carol, dir.path(), "carol-desktop").await?;
    for client in [&laptop, &phone, &carols] {
        let id = client.identity();
        out.emit(
            &format!("   {} on {} — ed25519 {}", id.user_id, id.device_id, id.ed25519),
            &json!({"step": "login", "user_id": id.user_id, "device_id": id.device_id, "ed25519": id.ed25519}),
        )?;
    }

    out.step("3. alice creates an encrypted room and invites bob and carol; they join");
    let room = laptop
        .create_room(&CreateRoom {
            name: Some("newt demo".into()),
            invite: vec![bob.user_id.clone(), carol.user_id.clone()],
            ..CreateRoom::default()
        })
        .await
        .map_err(crate::errors::explain)?;
    for client in [&mut phone, &mut carols] {
        client
            .sync_once(Duration::ZERO)
            .await
            .map_err(crate::errors::explain)?;
        client.join(&room).await.map_err(crate::errors::explain)?;
    }
    out.emit(
        &format!("   room {room}"),
        &json!({"step": "room", "room_id": room}),
    )?;

    out.step("4. alice sends: newt fetches device lists, claims one-time keys, opens Olm sessions, shares a Megolm key, encrypts");
    say(out, &mut laptop, &room, "alice", "Hello Bob and Carol!").await?;
    show(out, &mut phone, "bob's phone", "Hello Bob and Carol!").await?;
    show(out, &mut carols, "carol", "Hello Bob and Carol!").await?;

    out.step("5. bob logs in on a tablet; alice's next message shares the same key with the new device only");
    let mut tablet = device(&server, &bob, dir.path(), "bob-tablet").await?;
    tablet
        .sync_once(Duration::ZERO)
        .await
        .map_err(crate::errors::explain)?;
    tablet.take_messages();
    say(out, &mut laptop, &room, "alice", "Welcome, tablet.").await?;
    show(out, &mut tablet, "bob's tablet", "Welcome, tablet.").await?;

    out.step("6. carol leaves; alice's next message rotates the key so carol cannot read it");
    carols.leave(&room).await.map_err(crate::errors::explain)?;
    say(out, &mut laptop, &room, "alice", "Carol has left.").await?;
    show(out, &mut phone, "bob's phone", "Carol has left.").await?;
    let history = laptop
        .history(&room, 1)
        .await
        .map_err(crate::errors::explain)?;
    if let Some(last) = history.last() {
        let page: serde_json::Value = laptop
            .http()
            .send_json(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/event/{}", room, last.event_id),
                None,
            )
            .await
            .map_err(|e| crate::errors::explain(e.into()))?;
        let readable = carols
            .decrypt_event(&room, &page)
            .map_err(crate::errors::explain)?
            .is_some_and(|m| m.decrypted);
        out.emit(
            &format!("   carol, given the ciphertext anyway, can read it: {readable}"),
            &json!({"step": "leaver", "readable": readable}),
        )?;
    }
    drop((laptop, phone, tablet, carols));
    drop(server);
    out.step("done: the server and every device were temporary and are gone");
    Ok(())
}

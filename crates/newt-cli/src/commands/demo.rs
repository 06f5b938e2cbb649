//! `newt demo`: a throwaway local Synapse and newt at work on it.
//!
//! Nothing touches the user's real profile: the server and the device live
//! in temporary directories removed at the end.

use crate::output::Output;
use anyhow::Context;
use newt_client::retry::RetryPolicy;
use newt_client::{Client, LoginOptions};
use newt_crypto::ruma::{OwnedDeviceId, OwnedUserId};
use newt_crypto::signing::verify_json;
use newt_crypto::verify_device_keys;
use newt_crypto::vodozemac::Ed25519PublicKey;
use newt_testkit::{Synapse, SynapseOptions};
use serde_json::{Value, json};
use std::time::Duration;

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

    let alice = server.register("alice").context("registering alice")?;
    let bob = server.register("bob").context("registering bob")?;
    let (bob_token, _) = server.login(&bob).context("logging bob in")?;

    out.step("2. logging alice's device in with newt and publishing its keys");
    let data = tempfile::tempdir().context("creating a temporary profile directory")?;
    let mut client = Client::login(LoginOptions {
        data_dir: data.path().to_path_buf(),
        homeserver: server.url(),
        user: alice.localpart.clone(),
        password: alice.password.clone().into(),
        device_name: Some("newt demo".into()),
        retry: RetryPolicy::default(),
    })
    .await
    .map_err(crate::errors::explain)?;
    let id = client.identity();
    let mut json_id = super::render::identity_json(&id);
    json_id["step"] = json!("login");
    out.emit(&indent(&super::render::identity_human(&id)), &json_id)?;

    out.step("3. bob asks the server for alice's device keys and checks the self-signature");
    let query = json!({"device_keys": {&id.user_id: []}});
    let response = server.call(
        &bob_token,
        "POST",
        "/_matrix/client/v3/keys/query",
        Some(&query),
    )?;
    let user: OwnedUserId = id.user_id.as_str().try_into().context("user ID")?;
    let device: OwnedDeviceId = id.device_id.as_str().into();
    let verified = verify_device_keys(
        &user,
        &device,
        &response["device_keys"][&id.user_id][&id.device_id],
    )
    .context("alice's device keys did not verify")?;
    out.emit(
        &format!(
            "   signature verified; ed25519 {} matches",
            verified.ed25519().to_base64()
        ),
        &json!({"step": "query", "verified": true, "ed25519": verified.ed25519().to_base64()}),
    )?;

    out.step("4. bob claims one of alice's one-time keys and checks its signature");
    let claim = json!({"one_time_keys": {&id.user_id: {&id.device_id: "signed_curve25519"}}});
    let response = server.call(
        &bob_token,
        "POST",
        "/_matrix/client/v3/keys/claim",
        Some(&claim),
    )?;
    let keys = response["one_time_keys"][&id.user_id][&id.device_id]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (key_id, object) = keys
        .into_iter()
        .next()
        .context("the server handed out no key")?;
    let ed = Ed25519PublicKey::from_base64(&id.ed25519).context("own key")?;
    verify_json(
        &object,
        &id.user_id,
        &format!("ed25519:{}", id.device_id),
        &ed,
    )
    .context("the claimed key's signature did not verify")?;
    out.emit(
        &format!("   claimed {key_id}, signature verified"),
        &json!({"step": "claim", "key_id": key_id, "verified": true, "fallback": object.get("fallback") == Some(&Value::Bool(true))}),
    )?;

    out.step("5. alice syncs: newt sees the lower count and tops the keys up");
    let summary = client
        .sync_once(Duration::from_secs(0))
        .await
        .map_err(crate::errors::explain)?;
    out.emit(
        &format!("   uploads after sync: {}", summary.requests_sent),
        &json!({"step": "sync", "uploads": summary.requests_sent}),
    )?;
    drop(client);
    drop(server);
    out.step("done: the server and the device were temporary and are gone");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

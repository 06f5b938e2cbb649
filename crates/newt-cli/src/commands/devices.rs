//! `devices`, `block`, `unblock`, `verify`.

use super::client;
use crate::config::Config;
use crate::output::Output;
use newt_crypto::ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::json;

/// `newt devices [USER]`
pub async fn list(config: &Config, out: Output, user: Option<&str>) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    let me = client.identity();
    let user: OwnedUserId = user
        .unwrap_or(&me.user_id)
        .try_into()
        .map_err(|e| anyhow::anyhow!("bad user ID: {e}"))?;
    if user.as_str() == me.user_id {
        let human = format!("{}  this device  ed25519 {}", me.device_id, me.ed25519);
        out.emit(
            &human,
            &json!({"user_id": me.user_id, "device_id": me.device_id, "ed25519": me.ed25519,
            "curve25519": me.curve25519, "this_device": true, "trust": "verified"}),
        )?;
    }
    for device in client
        .fresh_devices(&user)
        .await
        .map_err(crate::errors::explain)?
    {
        let keys = &device.keys;
        let trust = if device.keys_changed {
            "keys_changed"
        } else if device.blocked {
            "blocked"
        } else if device.verified {
            "verified"
        } else {
            "unverified"
        };
        let human = format!(
            "{}  {:<12} ed25519 {}  {}",
            keys.device_id(),
            trust,
            keys.ed25519_base64().to_owned(),
            keys.untrusted_display_name().unwrap_or("")
        );
        out.emit(
            &human,
            &json!({"user_id": keys.user_id(), "device_id": keys.device_id(), "ed25519": keys.ed25519_base64().to_owned(),
                "curve25519": keys.curve25519().to_base64(), "display_name": keys.untrusted_display_name(),
                "this_device": false, "trust": trust, "blocked": device.blocked, "verified": device.verified}),
        )?;
    }
    Ok(())
}

/// The device an argument names: `DEVICE` (our user) or `USER DEVICE`.
fn target(ids: &[String], me: &str) -> anyhow::Result<(OwnedUserId, OwnedDeviceId)> {
    let (user, device) = match ids {
        [device] => (me.to_owned(), device.clone()),
        [user, device] => (user.clone(), device.clone()),
        _ => anyhow::bail!("give DEVICE or USER DEVICE"),
    };
    let user = OwnedUserId::try_from(user).map_err(|e| anyhow::anyhow!("bad user ID: {e}"))?;
    Ok((user, device.as_str().into()))
}

/// What `block`, `unblock` and `verify` set.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// Block or unblock.
    Blocked(bool),
    /// Verify.
    Verified,
}

/// `newt block`, `newt unblock`, `newt verify`
pub async fn mark(config: &Config, out: Output, ids: &[String], mark: Mark) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    let me = client.identity().user_id;
    let (user, device) = target(ids, &me)?;
    client
        .fresh_devices(&user)
        .await
        .map_err(crate::errors::explain)?;
    let known = match mark {
        Mark::Blocked(blocked) => client.set_blocked(&user, &device, blocked),
        Mark::Verified => client.set_verified(&user, &device, true),
    }
    .map_err(crate::errors::explain)?;
    anyhow::ensure!(
        known,
        "no device {device} known for {user} (see `newt devices {user}`)"
    );
    let (word, field) = match mark {
        Mark::Blocked(true) => ("blocked", json!({"blocked": true})),
        Mark::Blocked(false) => ("unblocked", json!({"blocked": false})),
        Mark::Verified => ("verified", json!({"verified": true})),
    };
    let mut value = json!({"user_id": user, "device_id": device});
    if let (Some(v), Some(f)) = (value.as_object_mut(), field.as_object()) {
        v.extend(f.clone());
    }
    out.emit(&format!("{word} {user} {device}"), &value)?;
    Ok(())
}

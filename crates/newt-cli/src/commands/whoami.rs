//! `newt whoami` answers from the local store; `newt logout` ends the
//! device.

use super::render::{identity_human, identity_json};
use crate::config::Config;
use crate::output::Output;
use newt_client::Client;
use newt_client::retry::RetryPolicy;
use serde_json::json;

/// Prints the current profile's identity.
pub async fn run(config: &Config, out: Output) -> anyhow::Result<()> {
    let client = Client::restore(&config.data_dir, RetryPolicy::default())
        .await
        .map_err(crate::errors::explain)?;
    let id = client.identity();
    out.emit(&identity_human(&id), &identity_json(&id))?;
    Ok(())
}

/// Logs the device out; keeps the store aside.
pub async fn logout(config: &Config, out: Output) -> anyhow::Result<()> {
    let client = Client::restore(&config.data_dir, RetryPolicy::default())
        .await
        .map_err(crate::errors::explain)?;
    let id = client.identity();
    let kept = client.logout().await.map_err(crate::errors::explain)?;
    let _ = std::fs::remove_file(config.data_dir.join("current"));
    out.emit(
        &format!(
            "logged out {} ({}); the old store is kept at {}",
            id.user_id,
            id.device_id,
            kept.display()
        ),
        &json!({"user_id": id.user_id, "device_id": id.device_id, "kept": kept}),
    )?;
    Ok(())
}

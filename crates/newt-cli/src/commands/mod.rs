//! One module per group of commands.

pub mod demo;
pub mod devices;
pub mod keys;
pub mod login;
pub mod messages;
pub mod render;
pub mod rooms;
pub mod whoami;

use crate::config::Config;
use newt_client::Client;
use newt_client::retry::RetryPolicy;
use std::time::Duration;

/// The current profile's client, caught up with one sync.
pub async fn client(config: &Config) -> anyhow::Result<Client> {
    let mut client = Client::restore(&config.data_dir, RetryPolicy::default())
        .await
        .map_err(crate::errors::explain)?;
    client
        .sync_once(Duration::ZERO)
        .await
        .map_err(crate::errors::explain)?;
    Ok(client)
}

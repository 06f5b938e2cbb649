//! `newt whoami`: answers from the local store, without the network.

use crate::config::Config;
use crate::output::Output;
use newt_client::Client;
use newt_client::retry::RetryPolicy;

/// Prints the current profile's identity.
pub async fn run(config: &Config, out: Output) -> anyhow::Result<()> {
    let client = Client::restore(&config.data_dir, RetryPolicy::default())
        .await
        .map_err(crate::errors::explain)?;
    let id = client.identity();
    out.emit(&super::identity_human(&id), &super::identity_json(&id))?;
    Ok(())
}

//! `newt login`

use crate::args::LoginArgs;
use crate::config::Config;
use crate::output::Output;
use anyhow::Context;
use newt_client::retry::RetryPolicy;
use newt_client::{Client, LoginOptions};
use std::io::BufRead;
use zeroize::Zeroizing;

fn read_password(args: &LoginArgs) -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    match &args.password_file {
        Some(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the password file {}", path.display()))?,
            );
            line.push_str(text.lines().next().unwrap_or_default());
        }
        None => {
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let trimmed = line.trim_end_matches(['\n', '\r']).len();
            line.truncate(trimmed);
        }
    }
    anyhow::ensure!(
        !line.is_empty(),
        "the password is empty (give it with --password-file or on stdin)"
    );
    Ok(line)
}

/// Logs in and prints the device's identity.
pub async fn run(config: &Config, out: Output, args: &LoginArgs) -> anyhow::Result<()> {
    let password = read_password(args)?;
    let homeserver = args.homeserver.trim_end_matches('/').to_owned();
    anyhow::ensure!(
        homeserver.starts_with("http://") || homeserver.starts_with("https://"),
        "--homeserver must be an http:// or https:// URL, got {homeserver:?}"
    );
    out.step(&format!("logging in to {homeserver} as {}", args.user));
    let client = Client::login(LoginOptions {
        data_dir: config.data_dir.clone(),
        homeserver,
        user: args.user.clone(),
        password,
        device_name: args.device_name.clone(),
        retry: RetryPolicy::default(),
    })
    .await
    .map_err(crate::errors::explain)?;
    let mut client = client;
    // One sync now, so later commands start from an incremental sync.
    client
        .sync_once(std::time::Duration::ZERO)
        .await
        .map_err(crate::errors::explain)?;
    client.take_messages();
    let id = client.identity();
    out.emit(
        &format!(
            "logged in; keys published\n{}",
            super::render::identity_human(&id)
        ),
        &super::render::identity_json(&id),
    )?;
    Ok(())
}

//! `newt keys export FILE` and `newt keys import FILE` (EXP-01..04).

use crate::args::KeyFileArgs;
use crate::config::Config;
use crate::output::Output;
use anyhow::Context;
use newt_client::Client;
use newt_client::retry::RetryPolicy;
use newt_crypto::key_export;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Sessions imported per store transaction; also the progress step.
const CHUNK: usize = 200;

fn passphrase(args: &KeyFileArgs, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let phrase = match &args.passphrase_file {
        Some(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or_default().to_owned())
        }
        None => {
            let first = Zeroizing::new(
                rpassword::prompt_password("passphrase: ").context("reading the passphrase")?,
            );
            if confirm {
                let again = Zeroizing::new(
                    rpassword::prompt_password("again: ").context("reading the passphrase")?,
                );
                anyhow::ensure!(*first == *again, "the passphrases differ");
            }
            first
        }
    };
    anyhow::ensure!(!phrase.is_empty(), "the passphrase is empty");
    Ok(phrase)
}

async fn restore(config: &Config) -> anyhow::Result<Client> {
    Client::restore(&config.data_dir, RetryPolicy::default())
        .await
        .map_err(crate::errors::explain)
}

/// Writes every room key to the file.
pub async fn export(config: &Config, out: Output, args: &KeyFileArgs) -> anyhow::Result<()> {
    let phrase = passphrase(args, true)?;
    // Catch up first: keys still in flight to this device get exported too.
    let mut client = super::client(config).await?;
    let sessions = client.export_room_keys().map_err(crate::errors::explain)?;
    let plaintext = Zeroizing::new(serde_json::to_vec(&sessions)?);
    out.step(&format!("encrypting {} sessions...", sessions.len()));
    let file = key_export::encrypt(&plaintext, &phrase, key_export::EXPORT_ROUNDS)?;
    write_private(&args.file, file.as_bytes())?;
    out.emit(
        &format!(
            "exported {} sessions to {}",
            sessions.len(),
            args.file.display()
        ),
        &json!({"exported": sessions.len(), "file": args.file}),
    )?;
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Reads room keys from the file, in chunks with a progress bar.
pub async fn import(config: &Config, out: Output, args: &KeyFileArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let phrase = passphrase(args, false)?;
    let plaintext = key_export::decrypt(&text, &phrase)
        .map_err(|e| anyhow::anyhow!("{e} ({})", args.file.display()))?;
    let sessions: Vec<Value> =
        serde_json::from_slice(&plaintext).context("the key file does not hold a JSON list")?;
    let mut client = restore(config).await?;
    let bar = (!out.is_json() && sessions.len() > CHUNK).then(|| {
        let bar = indicatif::ProgressBar::new(sessions.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("importing {bar:40} {pos}/{len} sessions")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let (mut imported, mut unchanged, mut invalid, mut opened) = (0, 0, 0, 0);
    for chunk in sessions.chunks(CHUNK) {
        let outcome = client
            .import_room_keys(chunk)
            .map_err(crate::errors::explain)?;
        imported += outcome.imported;
        unchanged += outcome.unchanged;
        invalid += outcome.invalid;
        opened += outcome
            .room_events
            .iter()
            .filter(|o| o.result.is_ok())
            .count();
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    out.emit(
        &format!("imported {imported} sessions ({unchanged} already held, {invalid} invalid); {opened} stored events now readable"),
        &json!({"imported": imported, "unchanged": unchanged, "invalid": invalid, "total": sessions.len()}),
    )?;
    Ok(())
}

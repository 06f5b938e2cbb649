//! `send`, `listen`, `history`, `why`.

use super::client;
use super::render::{message_human, message_json};
use crate::args::ListenArgs;
use crate::config::Config;
use crate::output::Output;
use anyhow::Context;
use serde_json::json;
use std::io::Read;
use std::time::{Duration, Instant};

/// `newt send ROOM [TEXT]`
pub async fn send(
    config: &Config,
    out: Output,
    room: &str,
    text: Option<&str>,
) -> anyhow::Result<()> {
    let text = match text {
        Some(text) => text.to_owned(),
        None => {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .context("reading the message from stdin")?;
            buf.trim_end_matches('\n').to_owned()
        }
    };
    anyhow::ensure!(!text.is_empty(), "the message is empty");
    let mut client = client(config).await?;
    let event_id = client
        .send_text(room, &text)
        .await
        .map_err(crate::errors::explain)?;
    out.emit(&event_id, &json!({"room_id": room, "event_id": event_id}))?;
    Ok(())
}

/// `newt listen`: syncs until Ctrl-C, the count or the timeout; a sync in
/// progress finishes and commits before exiting.
pub async fn listen(config: &Config, out: Output, args: &ListenArgs) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut printed = 0usize;
    let mut pending = client.take_messages();
    loop {
        for message in pending.drain(..) {
            if args.room.as_ref().is_some_and(|r| *r != message.room_id) {
                continue;
            }
            out.emit(&message_human(&message), &message_json(&message))?;
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
        if args.auto_join {
            for room in client.rooms().map_err(crate::errors::explain)? {
                if room.membership == "invite" {
                    client
                        .join(&room.room_id)
                        .await
                        .map_err(crate::errors::explain)?;
                    out.step(&format!("joined {}", room.room_id));
                }
            }
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining.is_some_and(|r| r.is_zero()) {
            return Ok(());
        }
        let poll = remaining
            .unwrap_or(Duration::from_secs(30))
            .min(Duration::from_secs(30));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            result = client.sync_once(poll) => { result.map_err(crate::errors::explain)?; }
        }
        pending = client.take_messages();
    }
}

/// `newt history ROOM --limit N`
pub async fn history(config: &Config, out: Output, room: &str, limit: u32) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    for message in client
        .history(room, limit)
        .await
        .map_err(crate::errors::explain)?
    {
        out.emit(&message_human(&message), &message_json(&message))?;
    }
    Ok(())
}

/// `newt why ROOM EVENT_ID`
pub async fn why(config: &Config, out: Output, room: &str, event_id: &str) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    let why = client
        .explain(room, event_id)
        .await
        .map_err(crate::errors::explain)?;
    let mut human = format!("event {} from {}\n", why.event_id, why.sender);
    if let Some(session) = &why.session_id {
        human.push_str(&format!("session:  {session}\n"));
    }
    human.push_str(&match &why.reason {
        None => "status:   decrypts fine\n".to_owned(),
        Some(reason) => format!("status:   {reason}\n"),
    });
    human.push_str(&format!(
        "key held: {}\n",
        match why.first_known_index {
            Some(index) => format!("yes, from index {index}"),
            None => "no".into(),
        }
    ));
    if let Some(by) = &why.withheld_by {
        human.push_str(&format!("withheld by: {by}\n"));
    }
    if why.sent_before_this_device {
        human.push_str("sent before this device existed\n");
    }
    human.push_str(&format!("fix:      {}", why.advice));
    let mut value = serde_json::to_value(&why)?;
    if let Some(reason) = &why.reason {
        value["reason"] = json!(super::render::utd_code(reason));
        value["detail"] = json!(reason.to_string());
        if let newt_crypto::RoomDecryptError::Withheld { code, .. } = reason {
            value["withheld_code"] = json!(code);
        }
    }
    out.emit(&human, &value)?;
    Ok(())
}

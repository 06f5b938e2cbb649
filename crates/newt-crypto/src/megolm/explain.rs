//! Explaining why a room event cannot be read, for people (`newt why`).

use super::RoomDecryptError;
use super::decrypt::{Me, attempt};
use super::event::EncryptedEvent;
use crate::store::{StoreError, StoreTxn};
use serde::Serialize;
use serde_json::Value;

/// What we know about an undecryptable event, and what would fix it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The event.
    pub event_id: String,
    /// Its sender.
    pub sender: String,
    /// The Megolm session it needs.
    pub session_id: Option<String>,
    /// The device the sender's client named (informational, MEG-06).
    pub claimed_device_id: Option<String>,
    /// Why it cannot be read; `None` if it decrypts now.
    pub reason: Option<RoomDecryptError>,
    /// Whether we hold the session at all.
    pub have_session: bool,
    /// The first index we hold, if we hold it.
    pub first_known_index: Option<u32>,
    /// Who withheld the key, if someone told us.
    pub withheld_by: Option<String>,
    /// The event is older than this device.
    pub sent_before_this_device: bool,
    /// What would fix it.
    pub advice: String,
}

fn advice(reason: Option<&RoomDecryptError>, before_device: bool) -> String {
    let import = "import the keys from another of your devices (`newt keys export` there, `newt keys import` here)";
    match reason {
        None => "it decrypts now".into(),
        Some(RoomDecryptError::MissingSession { .. }) if before_device => {
            format!("it was sent before this device existed, so no key was ever shared with it: {import}")
        }
        Some(RoomDecryptError::MissingSession { .. }) => {
            format!("the sender's device has not shared the key with this device (yet): wait for it to arrive, or {import}")
        }
        Some(RoomDecryptError::Withheld { code, .. }) => match code.as_str() {
            "m.blacklisted" => "the sender blocked this device; only they can change that".into(),
            "m.unverified" => "the sender shares keys only with verified devices: ask them to verify this device".into(),
            "m.no_olm" => "the sender could not set up an encrypted channel to this device (it had no one-time keys); \
                           a later message will carry the key once the channel works"
                .into(),
            "m.unauthorised" | "m.unavailable" => format!("the key was not available to this device: {import}"),
            other => format!("the sender withheld the key ({other}): {import}"),
        },
        Some(RoomDecryptError::UnknownIndex { .. }) => {
            format!("this device only got the key for later messages (it arrived after this one was sent): {import}")
        }
        Some(RoomDecryptError::Replay { .. } | RoomDecryptError::WrongRoom { .. } | RoomDecryptError::Failed { .. }) => {
            "the event is forged or damaged; nothing will make it readable".into()
        }
        Some(_) => "the event is not a readable Megolm event".into(),
    }
}

/// Explains `event` in `room_id` without changing anything.
pub(crate) fn explain(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    room_id: &str,
    event: &Value,
) -> Result<Explanation, StoreError> {
    let reason = attempt(txn, me, room_id, &EncryptedEvent::of(event), None)?.err();
    let content = event.get("content");
    let text = |name: &str| {
        content
            .and_then(|c| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let session_id = text("session_id");
    let inbound = match &session_id {
        Some(id) => txn.load_inbound(room_id, id)?,
        None => None,
    };
    let mut withheld_by = None;
    if let Some(id) = &session_id
        && let Some(notice) = txn.load_withheld(room_id, id)?
    {
        withheld_by = Some(notice.sender.to_string());
    } else if let Some(key) = text("sender_key")
        && let Some(notice) = txn.load_withheld("", &key)?
    {
        withheld_by = Some(notice.sender.to_string());
    }
    let ts = event
        .get("origin_server_ts")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let created = txn.load_account()?.and_then(|a| a.state.created_at_ms);
    let sent_before_this_device = created.is_some_and(|c| ts > 0 && ts < c);
    Ok(Explanation {
        event_id: event
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        sender: event
            .get("sender")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        session_id,
        claimed_device_id: text("device_id"),
        advice: advice(reason.as_ref(), sent_before_this_device),
        reason,
        have_session: inbound.is_some(),
        first_known_index: inbound.map(|i| i.info.first_known_index),
        withheld_by,
        sent_before_this_device,
    })
}

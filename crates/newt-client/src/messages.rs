//! Room messages as the application sees them: decrypted, plaintext, or
//! undecryptable with a reason.

use newt_crypto::{DecryptedRoomEvent, RoomDecryptError, RoomEventOutcome, TrustVerdict};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One room message (or other room event with content).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomMessage {
    /// The room.
    pub room_id: String,
    /// The event ID.
    pub event_id: String,
    /// The sender.
    pub sender: String,
    /// The sending device, when known (encrypted events only).
    pub sender_device: Option<String>,
    /// `origin_server_ts`.
    pub origin_server_ts: u64,
    /// The event type (inner type for encrypted events).
    pub event_type: String,
    /// Sent encrypted.
    pub encrypted: bool,
    /// Sent encrypted and decrypted.
    pub decrypted: bool,
    /// `content.body`.
    pub body: Option<String>,
    /// `content.msgtype`.
    pub msgtype: Option<String>,
    /// Trust verdict of a decrypted event (MEG-11).
    pub trust: Option<TrustVerdict>,
    /// Why an encrypted event is not readable (yet).
    pub utd_reason: Option<RoomDecryptError>,
    /// An earlier event that a late key opened.
    pub late: bool,
}

impl RoomMessage {
    fn plain(room_id: &str, event: &Value) -> Option<Self> {
        let content = event.get("content")?;
        Some(Self {
            room_id: room_id.to_owned(),
            event_id: event.get("event_id")?.as_str()?.to_owned(),
            sender: event.get("sender")?.as_str()?.to_owned(),
            sender_device: None,
            origin_server_ts: event
                .get("origin_server_ts")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            event_type: event.get("type")?.as_str()?.to_owned(),
            encrypted: false,
            decrypted: false,
            body: content
                .get("body")
                .and_then(Value::as_str)
                .map(str::to_owned),
            msgtype: content
                .get("msgtype")
                .and_then(Value::as_str)
                .map(str::to_owned),
            trust: None,
            utd_reason: None,
            late: false,
        })
    }

    fn decrypted(event: &DecryptedRoomEvent, late: bool) -> Self {
        Self {
            room_id: event.room_id.clone(),
            event_id: event.event_id.clone(),
            sender: event.sender.to_string(),
            sender_device: event.sender_device.as_ref().map(ToString::to_string),
            origin_server_ts: event.origin_server_ts,
            event_type: event.event_type.clone(),
            encrypted: true,
            decrypted: true,
            body: event
                .content
                .get("body")
                .and_then(Value::as_str)
                .map(str::to_owned),
            msgtype: event
                .content
                .get("msgtype")
                .and_then(Value::as_str)
                .map(str::to_owned),
            trust: Some(event.trust),
            utd_reason: None,
            late,
        }
    }

    /// Builds the message for an encrypted event from its outcome.
    pub fn from_outcome(raw: Option<&Value>, outcome: &RoomEventOutcome) -> Option<Self> {
        match &outcome.result {
            Ok(event) => Some(Self::decrypted(event, outcome.late)),
            Err(RoomDecryptError::Redacted) => None,
            Err(reason) => {
                let raw = raw?;
                let mut message = Self::plain(&outcome.room_id, raw)?;
                message.encrypted = true;
                message.event_type = "m.room.encrypted".into();
                message.utd_reason = Some(reason.clone());
                Some(message)
            }
        }
    }
}

/// Messages of one sync or page, in timeline order: plaintext events
/// straight from the timeline, encrypted ones from their outcomes, then
/// earlier events opened late.
pub fn collect(
    timelines: &[(String, Vec<Value>)],
    outcomes: &[RoomEventOutcome],
) -> Vec<RoomMessage> {
    let by_id: BTreeMap<(&str, &str), &RoomEventOutcome> = outcomes
        .iter()
        .filter(|o| !o.late)
        .map(|o| ((o.room_id.as_str(), o.event_id.as_str()), o))
        .collect();
    let mut out = Vec::new();
    for (room_id, events) in timelines {
        for event in events {
            if event.get("state_key").is_some() {
                continue;
            }
            let event_id = event
                .get("event_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message = match by_id.get(&(room_id.as_str(), event_id)) {
                Some(outcome) => RoomMessage::from_outcome(Some(event), outcome),
                None if event.get("type").and_then(Value::as_str) == Some("m.room.encrypted") => {
                    None
                }
                None => RoomMessage::plain(room_id, event),
            };
            out.extend(message);
        }
    }
    out.extend(
        outcomes
            .iter()
            .filter(|o| o.late)
            .filter_map(|o| RoomMessage::from_outcome(None, o)),
    );
    out
}

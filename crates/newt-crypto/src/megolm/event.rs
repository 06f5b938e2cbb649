//! The fields of an `m.room.encrypted` room event that decrypting reads,
//! found in one pass over the event and one over its content. A
//! `serde_json` object is a sorted map, so each lookup by name compares
//! strings; a timeline of a thousand events made a dozen lookups each.

use serde_json::{Map, Value};

/// An encrypted room event, read once. Fields of the wrong JSON type read
/// as absent, as the lookups they replace did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncryptedEvent<'e> {
    /// The event as received (kept for a retry, REC-05).
    pub(crate) raw: &'e Value,
    pub(crate) event_id: Option<&'e str>,
    pub(crate) sender: Option<&'e str>,
    pub(crate) origin_server_ts: Option<u64>,
    /// `None` when absent or not an object.
    pub(crate) content: Option<&'e Map<String, Value>>,
    pub(crate) algorithm: Option<&'e str>,
    pub(crate) session_id: Option<&'e str>,
    pub(crate) ciphertext: Option<&'e str>,
    pub(crate) sender_key: Option<&'e str>,
    /// ENC-14: the relation in the clear.
    pub(crate) relates_to: Option<&'e Value>,
}

impl<'e> EncryptedEvent<'e> {
    pub(crate) fn of(raw: &'e Value) -> Self {
        let mut event = Self {
            raw,
            event_id: None,
            sender: None,
            origin_server_ts: None,
            content: None,
            algorithm: None,
            session_id: None,
            ciphertext: None,
            sender_key: None,
            relates_to: None,
        };
        let Some(fields) = raw.as_object() else {
            return event;
        };
        for (name, value) in fields {
            match name.as_str() {
                "event_id" => event.event_id = value.as_str(),
                "sender" => event.sender = value.as_str(),
                "origin_server_ts" => event.origin_server_ts = value.as_u64(),
                "content" => event.content = value.as_object(),
                _ => {}
            }
        }
        for (name, value) in event.content.into_iter().flatten() {
            match name.as_str() {
                "algorithm" => event.algorithm = value.as_str(),
                "session_id" => event.session_id = value.as_str(),
                "ciphertext" => event.ciphertext = value.as_str(),
                "sender_key" => event.sender_key = value.as_str(),
                "m.relates_to" => event.relates_to = Some(value),
                _ => {}
            }
        }
        event
    }
}

/// Whether a timeline event is state (it has a `state_key`) and whether
/// it is `m.room.encrypted`, in one pass.
pub(crate) fn kind(event: &Value) -> (bool, bool) {
    let (mut state, mut encrypted) = (false, false);
    for (name, value) in event.as_object().into_iter().flatten() {
        match name.as_str() {
            "state_key" => state = true,
            "type" => encrypted = value.as_str() == Some("m.room.encrypted"),
            _ => {}
        }
    }
    (state, encrypted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_lookups_by_name_read() {
        let raw = json!({
            "type": "m.room.encrypted", "event_id": "$e", "sender": "@a:b.c",
            "origin_server_ts": 7, "room_id": "!r:b.c",
            "content": {"algorithm": "m.megolm.v1.aes-sha2", "session_id": "s",
                "ciphertext": "AwgA", "sender_key": "k", "device_id": "D",
                "m.relates_to": {"rel_type": "m.thread"}},
        });
        let event = EncryptedEvent::of(&raw);
        assert_eq!(event.event_id, Some("$e"));
        assert_eq!(event.sender, Some("@a:b.c"));
        assert_eq!(event.origin_server_ts, Some(7));
        assert_eq!(event.content, raw["content"].as_object());
        assert_eq!(event.algorithm, Some("m.megolm.v1.aes-sha2"));
        assert_eq!(event.session_id, Some("s"));
        assert_eq!(event.ciphertext, Some("AwgA"));
        assert_eq!(event.sender_key, Some("k"));
        assert_eq!(event.relates_to, Some(&json!({"rel_type": "m.thread"})));
        assert_eq!(kind(&raw), (false, true));
    }

    #[test]
    fn wrong_types_read_as_absent() {
        let raw = json!({
            "event_id": 1, "sender": ["@a:b.c"], "origin_server_ts": -1,
            "content": {"session_id": 2, "ciphertext": null, "algorithm": {}},
            "state_key": "", "type": 5,
        });
        let event = EncryptedEvent::of(&raw);
        assert_eq!(
            (event.event_id, event.sender, event.origin_server_ts),
            (None, None, None)
        );
        assert!(event.content.is_some_and(|c| c.len() == 3));
        assert_eq!(
            (event.algorithm, event.session_id, event.ciphertext),
            (None, None, None)
        );
        assert_eq!(kind(&raw), (true, false));
        let not_object = json!("text");
        assert!(EncryptedEvent::of(&not_object).content.is_none());
        assert_eq!(kind(&not_object), (false, false));
        let content_not_object = json!({"content": "x"});
        assert!(EncryptedEvent::of(&content_not_object).content.is_none());
    }
}

/// A decrypted Megolm payload, split into what the event needs. The rest
/// of the object is dropped where it was parsed: on a core decrypting
/// ahead, memory freed by the thread that allocated it stays cheap.
#[derive(Debug)]
pub(crate) struct Payload {
    /// MEG-09: `None` when the payload names the room it was received
    /// in; else the room it names (`""` when absent or not a string).
    pub(crate) other_room: Option<String>,
    pub(crate) event_type: String,
    /// An empty object when absent.
    pub(crate) content: Value,
}

impl Payload {
    /// `None` when the plaintext is not JSON.
    pub(crate) fn parse(plaintext: &[u8], room_id: &str) -> Option<Self> {
        let mut plain: Value = serde_json::from_slice(plaintext).ok()?;
        let other_room = match plain.get("room_id") {
            Some(Value::String(named)) if named == room_id => None,
            Some(Value::String(named)) => Some(named.clone()),
            _ => Some(String::new()),
        };
        let event_type = match plain.get_mut("type").map(Value::take) {
            Some(Value::String(text)) => text,
            _ => String::new(),
        };
        let content = plain
            .get_mut("content")
            .map(Value::take)
            .unwrap_or(Value::Object(Map::new()));
        Some(Self {
            other_room,
            event_type,
            content,
        })
    }
}

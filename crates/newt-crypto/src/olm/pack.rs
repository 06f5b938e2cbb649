//! Packing per-device to-device contents into `/sendToDevice` requests
//! (ENC-12, TD-01, TD-02). Bodies are built as text: the contents are JSON
//! already.

use crate::requests::new_request_id;
use crate::store::{PendingKind, PendingRequest, StoreError, StoreTxn};
use ruma::OwnedUserId;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A request grows until it holds at least this many users and then stops
/// before this many bytes (ENC-12: as few requests as possible, at least
/// 100 users each).
const MIN_USERS_PER_REQUEST: usize = 100;
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A JSON string literal.
pub(super) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_quoted(&mut out, text);
    out
}

/// Appends `text` as a JSON string literal. IDs and base64 keys need no
/// escaping: they are copied; anything else goes through `serde_json`.
pub(super) fn push_quoted(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\"")));
    }
}

/// One user's part of a body: the quoted user ID, each device's
/// `"device":content`, and the length they take.
pub(super) struct UserEntry {
    user: String,
    devices: Vec<String>,
    size: usize,
}

impl UserEntry {
    pub(super) fn new(user: &str) -> Self {
        let user = quoted(user);
        // `"user":{` … `}`.
        let size = user.len() + 3;
        Self {
            user,
            devices: Vec::new(),
            size,
        }
    }

    /// Adds one device's `"device":content` text.
    pub(super) fn push(&mut self, entry: String) {
        // The entry and the comma after it.
        self.size += entry.len() + 1;
        self.devices.push(entry);
    }
}

/// Persists `/sendToDevice` requests for `messages`, packed (ENC-12).
pub(crate) fn queue_to_device(
    txn: &mut impl StoreTxn,
    event_type: &str,
    messages: BTreeMap<OwnedUserId, Map<String, Value>>,
    room_id: Option<&str>,
    next_seq: &mut u64,
) -> Result<Vec<String>, StoreError> {
    let users = messages
        .into_iter()
        .map(|(user, devices)| {
            let mut entry = UserEntry::new(user.as_str());
            for (device, content) in devices {
                let mut text = quoted(&device);
                text.push(':');
                text.push_str(&content.to_string());
                entry.push(text);
            }
            entry
        })
        .collect();
    queue(txn, event_type, users, room_id, next_seq, None)
}

/// Persists the requests `users` pack into; with `bodies`, the machine
/// keeps each body to hand out.
pub(super) fn queue(
    txn: &mut impl StoreTxn,
    event_type: &str,
    users: Vec<UserEntry>,
    room_id: Option<&str>,
    next_seq: &mut u64,
    bodies: Option<&crate::request_bodies::RequestBodies>,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for body in pack(users) {
        let txn_id = new_request_id();
        let request = PendingRequest {
            request_id: txn_id.clone(),
            kind: PendingKind::ToDevice {
                event_type: event_type.to_owned(),
                txn_id,
                room_id: room_id.map(str::to_owned),
            },
            body: body.into(),
            seq: *next_seq,
        };
        *next_seq += 1;
        txn.save_pending_request(&request)?;
        if let Some(bodies) = bodies {
            bodies.insert(&request.request_id, request.body.clone());
        }
        ids.push(request.request_id);
    }
    Ok(ids)
}

/// Packs users' entries into as few request bodies as the size bound
/// allows, each with at least [`MIN_USERS_PER_REQUEST`] users when there
/// are that many. One pass on one core: per-user pieces built apart and
/// joined cost more in fresh pages than the copy they spread.
fn pack(users: Vec<UserEntry>) -> Vec<String> {
    let mut bodies = Vec::new();
    // Reserved up front: a growing megabyte string would be copied often.
    let total: usize = users.iter().map(|u| u.size + 1).sum();
    let capacity = total.min(MAX_REQUEST_BYTES) + 64;
    let mut current = String::with_capacity(capacity);
    let mut count = 0;
    let close = |body: &mut String| {
        body.push_str("}}");
        std::mem::replace(body, String::with_capacity(capacity))
    };
    for UserEntry {
        user,
        devices,
        size,
    } in users
    {
        if count >= MIN_USERS_PER_REQUEST && current.len() + size > MAX_REQUEST_BYTES {
            bodies.push(close(&mut current));
            count = 0;
        }
        current.push_str(if count == 0 { "{\"messages\":{" } else { "," });
        current.push_str(&user);
        current.push_str(":{");
        for (i, entry) in devices.iter().enumerate() {
            if i > 0 {
                current.push(',');
            }
            current.push_str(entry);
        }
        current.push('}');
        count += 1;
    }
    if count > 0 {
        bodies.push(close(&mut current));
    }
    bodies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, devices: &[(&str, &str)]) -> UserEntry {
        let mut entry = UserEntry::new(name);
        for (device, content) in devices {
            entry.push(format!("{}:{content}", quoted(device)));
        }
        entry
    }

    #[test]
    fn packed_bodies_are_valid_json_with_every_message() {
        let users = (0..250)
            .map(|u| {
                user(
                    &format!("@u{u}:example.org"),
                    &[("D\"1", "{\"x\":1}"), ("D2", "{}")],
                )
            })
            .collect();
        let bodies = pack(users);
        assert_eq!(bodies.len(), 1, "250 small messages fit one request");
        let body: Value = serde_json::from_str(&bodies[0]).unwrap();
        let users = body["messages"].as_object().unwrap();
        assert_eq!(users.len(), 250);
        assert_eq!(users["@u7:example.org"]["D\"1"]["x"], 1);
        assert_eq!(users["@u7:example.org"]["D2"], serde_json::json!({}));
    }

    #[test]
    fn large_sends_split_by_size_with_at_least_100_users_each() {
        let content = format!("{{\"x\":\"{}\"}}", "a".repeat(20_000));
        let users = (0..500)
            .map(|u| user(&format!("@u{u}:example.org"), &[("D", &content)]))
            .collect();
        let bodies = pack(users);
        assert!(bodies.len() > 1, "10 MB does not fit one request");
        let mut seen = 0;
        for (i, body) in bodies.iter().enumerate() {
            assert!(body.len() <= MAX_REQUEST_BYTES, "{}", body.len());
            let parsed: Value = serde_json::from_str(body).unwrap();
            let users = parsed["messages"].as_object().unwrap().len();
            // The last request takes what is left.
            assert!(users >= MIN_USERS_PER_REQUEST || i + 1 == bodies.len());
            seen += users;
        }
        assert_eq!(seen, 500);
    }

    #[test]
    fn quoting_matches_serde_json_for_every_kind_of_text() {
        for text in [
            "",
            "@alice:example.org",
            "AbC+/09",
            "say \"hi\"",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "ünïcödé ✓",
            "\u{7f}",
        ] {
            assert_eq!(
                quoted(text),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }
}

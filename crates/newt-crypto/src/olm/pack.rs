//! Packing per-device to-device contents into `/sendToDevice` requests
//! (ENC-12, TD-01, TD-02). Bodies are built as text: the contents are JSON
//! already.

use crate::request_bodies::RequestBodies;
use crate::requests::new_request_id;
use crate::store::{PendingKind, PendingRequest, StoreError, StoreTxn};
use rayon::prelude::*;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

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
    // Every byte checked, without a branch per byte: the compiler can then
    // check many at once (this runs four times per device of a send).
    let plain = text
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\"")));
    }
}

/// One device's `"device":content` text. An Olm message's content ends in
/// the message's base64, which is written straight into the body: the
/// body is laid out from each entry's length and filled on every core,
/// with no per-device copy of the text to join afterwards.
pub(super) struct Entry {
    head: String,
    /// Written as unpadded base64 after `head`.
    message: Vec<u8>,
    tail: &'static str,
}

impl Entry {
    /// An entry that is all text.
    pub(super) fn text(text: String) -> Self {
        Self {
            head: text,
            message: Vec::new(),
            tail: "",
        }
    }

    /// `head`, the base64 of `message`, then `tail`.
    pub(super) fn encoded(head: String, message: Vec<u8>, tail: &'static str) -> Self {
        Self {
            head,
            message,
            tail,
        }
    }

    fn encoded_len(&self) -> usize {
        crate::b64::encoded_len(self.message.len())
    }

    /// The entry's length in bytes.
    fn len(&self) -> usize {
        self.head.len() + self.encoded_len() + self.tail.len()
    }

    /// Writes the entry into `out`, which must be exactly [`Self::len`]
    /// bytes; `None` if it is not.
    fn write(&self, out: &mut [u8]) -> Option<()> {
        let (head, rest) = out.split_at_mut_checked(self.head.len())?;
        let (body, tail) = rest.split_at_mut_checked(self.encoded_len())?;
        if tail.len() != self.tail.len() {
            return None;
        }
        head.copy_from_slice(self.head.as_bytes());
        tail.copy_from_slice(self.tail.as_bytes());
        crate::b64::encode_to_slice(&self.message, body)
    }

    /// Appends the entry to `out`, one piece after another.
    pub(super) fn push_to(&self, out: &mut String) {
        out.push_str(&self.head);
        crate::b64::encode_into(out, &self.message);
        out.push_str(self.tail);
    }
}

/// One user's part of a body: the quoted user ID, each device's entry,
/// and the length they take.
pub(super) struct UserEntry {
    user: String,
    devices: Vec<Entry>,
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

    /// Adds one device's entry.
    pub(super) fn push(&mut self, entry: Entry) {
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
                entry.push(Entry::text(text));
            }
            entry
        })
        .collect();
    queue(txn, event_type, users, next_seq, Kept::Stored)
}

/// Where a queued request's body is kept.
pub(crate) enum Kept<'a> {
    /// In its stored row.
    Stored,
    /// In its row, and by the machine to hand out.
    Held(&'a RequestBodies),
    /// By the machine only: a room's key, which another machine rebuilds
    /// ([`PendingKind::RoomKey`]). A row then lists its devices instead.
    RoomKey {
        bodies: &'a RequestBodies,
        room_id: &'a str,
        session_id: &'a str,
        /// Every device with an entry, in the order of the entries.
        devices: &'a [(OwnedUserId, OwnedDeviceId)],
    },
}

/// Persists the requests `users` pack into.
pub(super) fn queue(
    txn: &mut impl StoreTxn,
    event_type: &str,
    users: Vec<UserEntry>,
    next_seq: &mut u64,
    kept: Kept<'_>,
) -> Result<Vec<String>, StoreError> {
    let counts: Vec<usize> = users.iter().map(|u| u.devices.len()).collect();
    let mut ids = Vec::new();
    let mut done = 0;
    for (body, held) in pack(users) {
        let txn_id = new_request_id();
        let entries: usize = counts.get(held).map_or(0, |c| c.iter().sum());
        let kind = match &kept {
            Kept::RoomKey {
                room_id,
                session_id,
                devices,
                ..
            } => PendingKind::RoomKey {
                txn_id: txn_id.clone(),
                room_id: (*room_id).to_owned(),
                session_id: (*session_id).to_owned(),
                devices: devices
                    .get(done..done + entries)
                    .unwrap_or_default()
                    .to_vec(),
            },
            Kept::Stored | Kept::Held(_) => PendingKind::ToDevice {
                event_type: event_type.to_owned(),
                txn_id: txn_id.clone(),
                room_id: None,
            },
        };
        done += entries;
        let body: Arc<String> = body.into();
        let request = PendingRequest {
            request_id: txn_id,
            kind,
            // A room key's body is the machine's alone.
            body: match kept {
                Kept::RoomKey { .. } => Arc::default(),
                Kept::Stored | Kept::Held(_) => Arc::clone(&body),
            },
            seq: *next_seq,
        };
        *next_seq += 1;
        txn.save_pending_request(&request)?;
        match &kept {
            Kept::Stored => {}
            Kept::Held(bodies) => bodies.insert(&request.request_id, body),
            Kept::RoomKey { bodies, .. } => bodies.pin(&request.request_id, body),
        }
        ids.push(request.request_id);
    }
    Ok(ids)
}

/// Every user's entries in one body, however large: a room-key request
/// rebuilt for the devices it was made for.
pub(super) fn single(users: &[UserEntry]) -> String {
    fill(users).unwrap_or_else(|| join(users))
}

/// Packs users' entries into as few request bodies as the size bound
/// allows, each with at least [`MIN_USERS_PER_REQUEST`] users when there
/// are that many. Each body comes with the users it holds.
fn pack(users: Vec<UserEntry>) -> Vec<(String, Range<usize>)> {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut len = 0;
    for (at, user) in users.iter().enumerate() {
        if at - start >= MIN_USERS_PER_REQUEST && len + user.size > MAX_REQUEST_BYTES {
            groups.push(start..at);
            start = at;
            len = 0;
        }
        // The user and the comma (or opening) before it.
        len += user.size + 1;
    }
    if start < users.len() {
        groups.push(start..users.len());
    }
    groups
        .into_iter()
        .map(|held| {
            let group = &users[held.clone()];
            (single(group), held)
        })
        .collect()
}

/// A piece of a body: structure, or a device's entry.
enum Piece<'a> {
    Text(&'a str),
    Entry(&'a Entry),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::Text(text) => text.len(),
            Piece::Entry(entry) => entry.len(),
        }
    }
}

/// A body's pieces in order. Both ways of building a body follow it, so
/// they agree byte for byte.
fn layout<'u>(users: &'u [UserEntry], mut visit: impl FnMut(Piece<'u>)) {
    visit(Piece::Text("{\"messages\":{"));
    for (i, user) in users.iter().enumerate() {
        if i > 0 {
            visit(Piece::Text(","));
        }
        visit(Piece::Text(&user.user));
        visit(Piece::Text(":{"));
        for (j, device) in user.devices.iter().enumerate() {
            if j > 0 {
                visit(Piece::Text(","));
            }
            visit(Piece::Entry(device));
        }
        visit(Piece::Text("}"));
    }
    visit(Piece::Text("}}"));
}

/// Builds a body in one allocation of its exact length: the structure is
/// written here, the entries (their base64 above all) on every core.
/// `None` if a piece did not fit its place, which [`Entry::len`] rules
/// out; the caller then joins the body piece by piece instead.
fn fill(users: &[UserEntry]) -> Option<String> {
    let mut total = 0;
    layout(users, |piece| total += piece.len());
    let mut bytes = vec![0u8; total];
    let mut rest: &mut [u8] = &mut bytes;
    let mut slots: Vec<(&mut [u8], &Entry)> = Vec::new();
    let mut fits = true;
    layout(users, |piece| {
        let Some((here, after)) = std::mem::take(&mut rest).split_at_mut_checked(piece.len())
        else {
            fits = false;
            return;
        };
        rest = after;
        match piece {
            Piece::Text(text) => here.copy_from_slice(text.as_bytes()),
            Piece::Entry(entry) => slots.push((here, entry)),
        }
    });
    if !fits || !rest.is_empty() {
        return None;
    }
    slots
        .into_par_iter()
        .try_for_each(|(slot, entry)| entry.write(slot))?;
    String::from_utf8(bytes).ok()
}

/// Builds a body by appending each piece in turn.
fn join(users: &[UserEntry]) -> String {
    let mut out = String::new();
    layout(users, |piece| match piece {
        Piece::Text(text) => out.push_str(text),
        Piece::Entry(entry) => entry.push_to(&mut out),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, devices: &[(&str, &str)]) -> UserEntry {
        let mut entry = UserEntry::new(name);
        for (device, content) in devices {
            entry.push(Entry::text(format!("{}:{content}", quoted(device))));
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
        assert_eq!(bodies[0].1, 0..250);
        let body: Value = serde_json::from_str(&bodies[0].0).unwrap();
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
        for (i, (body, held)) in bodies.iter().enumerate() {
            assert!(body.len() <= MAX_REQUEST_BYTES, "{}", body.len());
            let parsed: Value = serde_json::from_str(body).unwrap();
            let users = parsed["messages"].as_object().unwrap();
            // The last request takes what is left.
            assert!(users.len() >= MIN_USERS_PER_REQUEST || i + 1 == bodies.len());
            // Each body says which users it holds, in order.
            assert_eq!(*held, seen..seen + users.len());
            assert!(users.contains_key(&format!("@u{seen}:example.org")));
            seen += users.len();
        }
        assert_eq!(seen, 500);
    }

    /// Users whose devices carry messages of every length modulo 3 (each
    /// base64 remainder), empty ones, and text entries between them.
    fn mixed_users(count: usize) -> Vec<UserEntry> {
        (0..count)
            .map(|u| {
                let mut entry = UserEntry::new(&format!("@u{u}:example.org"));
                for d in 0..(u % 4 + 1) {
                    let message: Vec<u8> = (0..(u * 7 + d * 13) % 50).map(|i| i as u8).collect();
                    let head = format!("{}:{{\"body\":\"", quoted(&format!("D{d}")));
                    entry.push(Entry::encoded(head, message, "\"}"));
                }
                if u % 3 == 0 {
                    entry.push(Entry::text("\"T\":{\"x\":1}".to_owned()));
                }
                entry
            })
            .collect()
    }

    /// A body laid out and filled on every core is byte for byte the one
    /// joined piece by piece, and each message decodes back.
    #[test]
    fn filled_bodies_equal_joined_bodies() {
        for count in [1, 2, 7, 130] {
            let users = mixed_users(count);
            let filled = fill(&users).unwrap();
            assert_eq!(filled, join(&users), "{count} users");
            let parsed: Value = serde_json::from_str(&filled).unwrap();
            let messages = parsed["messages"].as_object().unwrap();
            assert_eq!(messages.len(), count);
            // An empty message is an empty string.
            assert_eq!(messages["@u0:example.org"]["D0"]["body"], "");
            if count > 1 {
                let body = messages["@u1:example.org"]["D1"]["body"].as_str().unwrap();
                // `@u1`'s `D1` carries (1 * 7 + 1 * 13) % 50 bytes.
                let expected: Vec<u8> = (0..20).map(|i| i as u8).collect();
                assert_eq!(crate::b64::decode(body).unwrap(), expected);
            }
        }
    }

    /// An entry is written only into a place of exactly its length.
    #[test]
    fn an_entry_refuses_a_place_of_another_length() {
        let entry = Entry::encoded("\"D\":\"".to_owned(), vec![1, 2, 3, 4], "\"");
        assert_eq!(entry.len(), 5 + 6 + 1);
        for len in [0, 5, 11, 13] {
            assert!(entry.write(&mut vec![0; len]).is_none(), "{len}");
        }
        let mut place = vec![0; 12];
        assert!(entry.write(&mut place).is_some());
        assert_eq!(place, b"\"D\":\"AQIDBA\"");
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

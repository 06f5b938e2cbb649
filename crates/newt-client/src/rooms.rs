//! Rooms: create, invite, join, leave, list, send (the full key-sharing
//! flow before an encrypted event), and history.

use crate::client::{Client, now};
use crate::error::ClientError;
use crate::messages::{RoomMessage, collect};
use newt_crypto::store::StoreTxn;
use newt_crypto::{Recipients, RoomEventOutcome, SharePolicy};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const ROOMS: &str = "rooms";

/// A room as the client lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room.
    pub room_id: String,
    /// `join`, `invite` or `leave`.
    pub membership: String,
    /// `m.room.name`, if any.
    pub name: Option<String>,
    /// Encrypted (ENC-01).
    pub encrypted: bool,
}

/// How to create a room.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    /// `m.room.name`.
    pub name: Option<String>,
    /// Users to invite.
    pub invite: Vec<String>,
    /// `shared`, `invited`, `joined` or `world_readable`.
    pub history_visibility: Option<String>,
    /// `rotation_period_msgs`.
    pub rotation_period_msgs: Option<u64>,
    /// `rotation_period_ms`.
    pub rotation_period_ms: Option<u64>,
    /// Create without encryption.
    pub unencrypted: bool,
}

/// Percent-encodes one path segment.
pub(crate) fn segment(value: &str) -> String {
    crate::client::encode_query(value)
}

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", segment(room_id))
}

/// Updates the stored room list from a sync response.
pub(crate) fn update_room_list(
    txn: &mut impl StoreTxn,
    sync: &Value,
) -> Result<(), newt_crypto::store::StoreError> {
    let mut rooms: BTreeMap<String, RoomSummary> = txn
        .get_value(ROOMS)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    for (section, state_path) in [
        ("join", "/state/events"),
        ("invite", "/invite_state/events"),
        ("leave", "/state/events"),
    ] {
        let Some(map) = sync
            .pointer(&format!("/rooms/{section}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (room_id, room) in map {
            let entry = rooms.entry(room_id.clone()).or_insert_with(|| RoomSummary {
                room_id: room_id.clone(),
                membership: section.into(),
                name: None,
                encrypted: false,
            });
            entry.membership = section.into();
            let state = room
                .pointer(state_path)
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let timeline = room
                .pointer("/timeline/events")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for event in state.chain(timeline) {
                match (
                    event.get("type").and_then(Value::as_str),
                    event.get("state_key").and_then(Value::as_str),
                ) {
                    (Some("m.room.name"), Some("")) => {
                        entry.name = event
                            .pointer("/content/name")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                    }
                    (Some("m.room.encryption"), Some("")) => entry.encrypted = true,
                    _ => {}
                }
            }
        }
    }
    let text = serde_json::to_string(&rooms)
        .map_err(|e| newt_crypto::store::StoreError::Corrupt(e.to_string()))?;
    txn.set_value(ROOMS, &text)
}

/// The timelines of a sync response, per room.
pub(crate) fn timelines(sync: &Value) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for section in ["join", "leave"] {
        let Some(map) = sync
            .pointer(&format!("/rooms/{section}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (room_id, room) in map {
            let events = room
                .pointer("/timeline/events")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            out.push((room_id.clone(), events));
        }
    }
    out
}

impl Client {
    /// Rooms known from sync.
    pub fn rooms(&mut self) -> Result<Vec<RoomSummary>, ClientError> {
        let mut txn = self.store.begin()?;
        let rooms: BTreeMap<String, RoomSummary> = txn
            .get_value(ROOMS)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        Ok(rooms.into_values().collect())
    }

    /// Room messages received since the last call, in order.
    pub fn take_messages(&mut self) -> Vec<RoomMessage> {
        std::mem::take(&mut self.messages)
    }

    /// Creates a room (encrypted unless asked otherwise); returns its ID.
    pub async fn create_room(&mut self, options: &CreateRoom) -> Result<String, ClientError> {
        let mut initial_state = Vec::new();
        if !options.unencrypted {
            let mut encryption = json!({"algorithm": newt_crypto::MEGOLM_ALGORITHM});
            if let Some(msgs) = options.rotation_period_msgs {
                encryption["rotation_period_msgs"] = json!(msgs);
            }
            if let Some(ms) = options.rotation_period_ms {
                encryption["rotation_period_ms"] = json!(ms);
            }
            initial_state
                .push(json!({"type": "m.room.encryption", "state_key": "", "content": encryption}));
        }
        if let Some(visibility) = &options.history_visibility {
            initial_state.push(json!({"type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": visibility}}));
        }
        let mut body = json!({"preset": "private_chat", "invite": options.invite, "initial_state": initial_state});
        if let Some(name) = &options.name {
            body["name"] = json!(name);
        }
        let response: Value = self
            .http
            .send_json(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&body.to_string()),
            )
            .await?;
        let room_id = response
            .get("room_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("createRoom returned no room_id".into()))?
            .to_owned();
        // The room's state arrives with the next sync; have it now.
        self.load_members(&room_id).await?;
        Ok(room_id)
    }

    /// Invites a user. ENC-15: the invitee gets keys from now on, without
    /// waiting for the sync that echoes the invite.
    pub async fn invite(&mut self, room_id: &str, user_id: &str) -> Result<(), ClientError> {
        let body = json!({"user_id": user_id}).to_string();
        self.http
            .send(Method::POST, &room_path(room_id, "invite"), Some(&body))
            .await?;
        let event = json!({"type": "m.room.member", "state_key": user_id, "content": {"membership": "invite"}});
        let mut txn = self.store.begin()?;
        self.machine
            .receive_room_state(&mut txn, room_id, &[event], now())?;
        txn.commit()?;
        Ok(())
    }

    /// Joins a room by ID or alias; returns the room ID.
    pub async fn join(&mut self, room: &str) -> Result<String, ClientError> {
        let path = format!("/_matrix/client/v3/join/{}", segment(room));
        let response: Value = self.http.send_json(Method::POST, &path, Some("{}")).await?;
        let room_id = response
            .get("room_id")
            .and_then(Value::as_str)
            .unwrap_or(room)
            .to_owned();
        self.load_members(&room_id).await?;
        Ok(room_id)
    }

    /// Leaves a room.
    pub async fn leave(&mut self, room_id: &str) -> Result<(), ClientError> {
        self.http
            .send(Method::POST, &room_path(room_id, "leave"), Some("{}"))
            .await?;
        Ok(())
    }

    /// Fetches the room's state (members, encryption, visibility) into the
    /// machine.
    pub async fn load_members(&mut self, room_id: &str) -> Result<(), ClientError> {
        let state: Value = self
            .http
            .send_json(Method::GET, &room_path(room_id, "state"), None)
            .await?;
        let events = state.as_array().cloned().unwrap_or_default();
        let mut txn = self.store.begin()?;
        self.machine
            .receive_room_state(&mut txn, room_id, &events, now())?;
        txn.commit()?;
        Ok(())
    }

    /// Sends a text message; returns the event ID. In an encrypted room the
    /// room key is shared with every device first (ENC-04); plaintext into
    /// an encrypted room is refused (ENC-02).
    pub async fn send_text(&mut self, room_id: &str, body: &str) -> Result<String, ClientError> {
        let content = json!({"msgtype": "m.text", "body": body});
        self.send_event(room_id, "m.room.message", &content).await
    }

    /// Sends any room event, encrypted if the room is.
    pub async fn send_event(
        &mut self,
        room_id: &str,
        event_type: &str,
        content: &Value,
    ) -> Result<String, ClientError> {
        let mut encrypted = {
            let mut txn = self.store.begin()?;
            self.machine.is_room_encrypted(&mut txn, room_id)?
        };
        if !encrypted {
            // ENC-02: never send plaintext into a room that is encrypted
            // but whose state this device has not seen yet.
            self.load_members(room_id).await?;
            let mut txn = self.store.begin()?;
            encrypted = self.machine.is_room_encrypted(&mut txn, room_id)?;
        }
        let (event_type, content) = if encrypted {
            (
                "m.room.encrypted",
                self.encrypt_for_room(room_id, event_type, content).await?,
            )
        } else {
            (event_type, content.clone())
        };
        let txn_id = format!("newt{}", rand::random::<u64>());
        let path = room_path(room_id, &format!("send/{}/{}", segment(event_type), txn_id));
        let response: Value = self
            .http
            .send_json(Method::PUT, &path, Some(&content.to_string()))
            .await?;
        response
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol("send returned no event_id".into()))
    }

    /// track members → query devices → claim sessions → share the key →
    /// encrypt. The steps share one transaction while none of them has a
    /// request to send (before most messages none has): a step that has
    /// one commits, the requests go out, and the next step starts anew.
    async fn encrypt_for_room(
        &mut self,
        room_id: &str,
        event_type: &str,
        content: &Value,
    ) -> Result<Value, ClientError> {
        let mut txn = self.store.begin()?;
        let users = self.machine.room_key_recipients(&mut txn, room_id)?;
        self.machine.update_tracked_users(&mut txn, &users)?;
        if !self.machine.outgoing_requests(&mut txn, now())?.is_empty() {
            txn.commit()?;
            self.process_outgoing().await?;
            txn = self.store.begin()?;
        }
        self.machine
            .get_missing_sessions(&mut txn, &Recipients::Users(users), now())?;
        if !self.machine.outgoing_requests(&mut txn, now())?.is_empty() {
            txn.commit()?;
            self.process_outgoing().await?;
            txn = self.store.begin()?;
        }
        let shared = self
            .machine
            .share_room_key(&mut txn, room_id, self.share_policy, now())
            .map_err(room_error)?;
        self.last_share = Some(shared);
        if !self.machine.outgoing_requests(&mut txn, now())?.is_empty() {
            txn.commit()?;
            self.process_outgoing().await?;
            txn = self.store.begin()?;
        }
        let encrypted = self
            .machine
            .encrypt_room_event(&mut txn, room_id, event_type, content, now())
            .map_err(room_error)?;
        txn.commit()?;
        Ok(encrypted)
    }

    /// What the last key-share run did (for narration and tests).
    pub fn last_share(&self) -> Option<&newt_crypto::ShareOutcome> {
        self.last_share.as_ref()
    }

    /// Sets who gets room keys (ENC-10).
    pub fn set_share_policy(&mut self, policy: SharePolicy) {
        self.share_policy = policy;
    }

    /// The last `limit` messages of a room, oldest first, decrypted where
    /// keys are held; undecryptable ones carry their reason.
    pub async fn history(
        &mut self,
        room_id: &str,
        limit: u32,
    ) -> Result<Vec<RoomMessage>, ClientError> {
        let path = format!("{}?dir=b&limit={limit}", room_path(room_id, "messages"));
        let page: Value = self.http.send_json(Method::GET, &path, None).await?;
        let mut events = page
            .get("chunk")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        events.reverse();
        let mut outcomes: Vec<RoomEventOutcome> = Vec::new();
        {
            let mut txn = self.store.begin()?;
            for event in &events {
                if event.get("type").and_then(Value::as_str) != Some("m.room.encrypted") {
                    continue;
                }
                let event_id = event
                    .get("event_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let result = self
                    .machine
                    .decrypt_room_event(&mut txn, room_id, event, now())?;
                outcomes.push(RoomEventOutcome::new(room_id, &event_id, result, false));
            }
            txn.commit()?;
        }
        Ok(collect(&[(room_id.to_owned(), events)], &outcomes))
    }
}

impl Client {
    /// Why an event cannot be read, and what would fix it.
    pub async fn explain(
        &mut self,
        room_id: &str,
        event_id: &str,
    ) -> Result<newt_crypto::Explanation, ClientError> {
        let path = room_path(room_id, &format!("event/{}", segment(event_id)));
        let event: Value = self.http.send_json(Method::GET, &path, None).await?;
        let mut txn = self.store.begin()?;
        Ok(self.machine.explain_room_event(&mut txn, room_id, &event)?)
    }

    /// Decrypts one raw room event (for events obtained elsewhere).
    pub fn decrypt_event(
        &mut self,
        room_id: &str,
        event: &Value,
    ) -> Result<Option<RoomMessage>, ClientError> {
        let mut txn = self.store.begin()?;
        let event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let result = self
            .machine
            .decrypt_room_event(&mut txn, room_id, event, now())?;
        txn.commit()?;
        let outcome = RoomEventOutcome::new(room_id, &event_id, result, false);
        Ok(RoomMessage::from_outcome(Some(event), &outcome))
    }
}

fn room_error(err: newt_crypto::RoomError) -> ClientError {
    match err {
        newt_crypto::RoomError::Store(e) => ClientError::Store(e),
        other => ClientError::Room(other.to_string()),
    }
}

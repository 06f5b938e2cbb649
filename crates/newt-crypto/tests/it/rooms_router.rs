//! Rooms on the router: a shared timeline per room, delivered to members
//! by sync, and the full send flow of a newt device.

use crate::router::{Peer, Router};
use newt_crypto::ruma::OwnedUserId;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{
    Recipients, RoomEventOutcome, RoomUpdate, ShareOutcome, SharePolicy, SyncOutcome,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One room's timeline.
#[derive(Default)]
pub struct FakeRoom {
    pub timeline: Vec<Value>,
}

/// Room state kept beside the router.
#[derive(Default)]
pub struct Rooms {
    pub rooms: BTreeMap<String, FakeRoom>,
    /// Per device (user|device), per room: how much it has seen.
    cursors: BTreeMap<String, BTreeMap<String, usize>>,
    next_event: u64,
}

fn key(peer: &Peer) -> String {
    format!("{}|{}", peer.user, peer.device)
}

impl Rooms {
    /// A copy of the event with `event_id` in `room_id`'s timeline.
    pub fn event(&self, room_id: &str, event_id: &str) -> Value {
        self.rooms[room_id]
            .timeline
            .iter()
            .find(|e| e["event_id"] == event_id)
            .unwrap_or_else(|| panic!("no event {event_id} in {room_id}"))
            .clone()
    }

    /// Appends an event to a room's timeline; returns its ID.
    pub fn append(
        &mut self,
        router: &Router,
        room_id: &str,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> String {
        self.next_event += 1;
        let event_id = format!("$e{}", self.next_event);
        let mut event = json!({
            "type": event_type, "sender": sender, "content": content,
            "event_id": event_id, "origin_server_ts": router.now, "room_id": room_id,
        });
        if let Some(state_key) = state_key {
            event["state_key"] = json!(state_key);
        }
        self.rooms
            .entry(room_id.to_owned())
            .or_default()
            .timeline
            .push(event);
        event_id
    }

    /// An encrypted room created by `creator`, who joins it.
    pub fn create(
        &mut self,
        router: &Router,
        room_id: &str,
        creator: &OwnedUserId,
        encryption: Value,
    ) {
        self.append(
            router,
            room_id,
            creator.as_str(),
            "m.room.member",
            Some(creator.as_str()),
            json!({"membership": "join"}),
        );
        self.append(
            router,
            room_id,
            creator.as_str(),
            "m.room.history_visibility",
            Some(""),
            json!({"history_visibility": "shared"}),
        );
        self.append(
            router,
            room_id,
            creator.as_str(),
            "m.room.encryption",
            Some(""),
            encryption,
        );
    }

    pub fn membership(
        &mut self,
        router: &Router,
        room_id: &str,
        user: &OwnedUserId,
        membership: &str,
    ) {
        self.append(
            router,
            room_id,
            user.as_str(),
            "m.room.member",
            Some(user.as_str()),
            json!({"membership": membership}),
        );
    }

    fn is_member(&self, room_id: &str, user: &str) -> bool {
        let mut state = "leave";
        for event in &self.rooms[room_id].timeline {
            if event["type"] == "m.room.member" && event["state_key"] == user {
                state = event["content"]["membership"].as_str().unwrap_or("leave");
            }
        }
        matches!(state, "join" | "invite")
    }

    /// The room sections a device's next sync carries: new timeline events
    /// of rooms its user is (or just stopped being) in.
    pub fn updates(&mut self, peer: &Peer) -> Vec<RoomUpdate> {
        let mut out = Vec::new();
        let room_ids: Vec<String> = self.rooms.keys().cloned().collect();
        for room_id in room_ids {
            let seen = self
                .cursors
                .get(&key(peer))
                .and_then(|c| c.get(&room_id))
                .copied()
                .unwrap_or(0);
            let timeline = &self.rooms[&room_id].timeline;
            if seen == timeline.len() {
                continue;
            }
            let member_now = self.is_member(&room_id, peer.user.as_str());
            if seen == 0 && !member_now {
                continue;
            }
            let new: Vec<Value> = timeline[seen..].to_vec();
            let len = timeline.len();
            self.cursors
                .entry(key(peer))
                .or_default()
                .insert(room_id.clone(), len);
            out.push(RoomUpdate::new(&room_id, Vec::new(), new, false));
        }
        out
    }
}

/// Syncs a device with its rooms: to-device first, then room sections.
pub fn sync(router: &mut Router, rooms: &mut Rooms, peer: &mut Peer) -> SyncOutcome {
    router.advance(1);
    let mut changes = router.sync_changes(peer);
    changes.rooms = rooms.updates(peer);
    let mut outcome = peer.apply(&changes, router.now());
    for response in router.flush(peer) {
        outcome.to_device.extend(response.released);
        outcome.room_events.extend(response.room_events);
    }
    outcome
}

/// The full send flow: recipients, devices, sessions, key share (its
/// requests answered), then the encrypted event on the timeline.
pub fn send(
    router: &mut Router,
    rooms: &mut Rooms,
    peer: &mut Peer,
    room_id: &str,
    body: &str,
) -> (String, ShareOutcome) {
    send_with(
        router,
        rooms,
        peer,
        room_id,
        json!({"msgtype": "m.text", "body": body}),
        SharePolicy::default(),
    )
}

pub fn send_with(
    router: &mut Router,
    rooms: &mut Rooms,
    peer: &mut Peer,
    room_id: &str,
    content: Value,
    policy: SharePolicy,
) -> (String, ShareOutcome) {
    let mut txn = peer.store.transaction().unwrap();
    let users = peer.machine.room_key_recipients(&mut txn, room_id).unwrap();
    peer.machine.update_tracked_users(&mut txn, &users).unwrap();
    txn.commit().unwrap();
    router.flush(peer);
    let mut txn = peer.store.transaction().unwrap();
    peer.machine
        .get_missing_sessions(&mut txn, &Recipients::Users(users), router.now())
        .unwrap();
    txn.commit().unwrap();
    router.flush(peer);
    let mut txn = peer.store.transaction().unwrap();
    let shared = peer
        .machine
        .share_room_key(&mut txn, room_id, policy, router.now())
        .unwrap();
    txn.commit().unwrap();
    router.flush(peer);
    let mut txn = peer.store.transaction().unwrap();
    let encrypted = peer
        .machine
        .encrypt_room_event(&mut txn, room_id, "m.room.message", &content, router.now())
        .unwrap();
    txn.commit().unwrap();
    let event_id = rooms.append(
        router,
        room_id,
        peer.user.as_str(),
        "m.room.encrypted",
        None,
        encrypted,
    );
    (event_id, shared)
}

/// The decrypted bodies in outcomes, by event ID.
pub fn bodies(outcomes: &[RoomEventOutcome]) -> BTreeMap<String, String> {
    outcomes
        .iter()
        .filter_map(|o| {
            let event = o.result.as_ref().ok()?;
            Some((
                o.event_id.clone(),
                event.content["body"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

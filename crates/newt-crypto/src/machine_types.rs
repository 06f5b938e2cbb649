//! Inputs, outputs and errors of the machine's facade.

use crate::device_keys::VerifiedDeviceKeys;
use crate::store::StoreError;
use crate::to_device::ToDeviceOutcome;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::Value;
use std::collections::BTreeMap;

/// Why the machine could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds another device's account (DEV-07: keys are never
    /// shared between users or devices).
    #[error("store belongs to {stored_user}/{stored_device}, not {user}/{device}")]
    WrongAccount {
        /// Owner found in the store.
        stored_user: String,
        /// Device found in the store.
        stored_device: String,
        /// Owner asked for.
        user: String,
        /// Device asked for.
        device: String,
    },
}

/// Why a response could not be applied. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No pending request has this ID (already handled, or never made).
    #[error("no pending request with id {0}")]
    UnknownRequest(String),
    /// The body is not the JSON the endpoint returns.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The store has no account; [`crate::OlmMachine::open`] was not called on it.
    #[error("the store holds no account")]
    NoAccount,
}

/// Why sync changes could not be applied. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no account.
    #[error("the store holds no account")]
    NoAccount,
}

/// The E2EE parts of one `/sync` response.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SyncChanges {
    /// `device_one_time_keys_count`, if present.
    pub one_time_key_counts: Option<BTreeMap<String, u64>>,
    /// `device_unused_fallback_key_types`, if present.
    pub unused_fallback_key_types: Option<Vec<String>>,
    /// `to_device.events`, in order, as received.
    pub to_device_events: Vec<Value>,
    /// `device_lists.changed`.
    pub device_lists_changed: Vec<OwnedUserId>,
    /// `device_lists.left`.
    pub device_lists_left: Vec<OwnedUserId>,
    /// The sync had no `since` token. Such a sync reports no device-list
    /// changes (TRK-12), so every tracked user is treated as changed.
    pub initial: bool,
    /// Room sections (joined, invited, left), in the order received.
    pub rooms: Vec<RoomUpdate>,
}

/// One room's part of a sync.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RoomUpdate {
    /// The room.
    pub room_id: String,
    /// `state.events` (or `invite_state.events`).
    pub state_events: Vec<Value>,
    /// `timeline.events`.
    pub timeline_events: Vec<Value>,
    /// `timeline.limited`: events were skipped (ENC-07).
    pub limited: bool,
}

impl RoomUpdate {
    /// A room update from its parts.
    pub fn new(
        room_id: &str,
        state_events: Vec<Value>,
        timeline_events: Vec<Value>,
        limited: bool,
    ) -> Self {
        Self {
            room_id: room_id.to_owned(),
            state_events,
            timeline_events,
            limited,
        }
    }
}

fn events(value: Option<&Value>) -> Vec<Value> {
    value.and_then(Value::as_array).cloned().unwrap_or_default()
}

fn rooms(sync: &Value) -> Vec<RoomUpdate> {
    let mut out = Vec::new();
    for (section, state_path) in [
        ("join", "/state/events"),
        ("invite", "/invite_state/events"),
        ("leave", "/state/events"),
    ] {
        let Some(rooms) = sync
            .pointer(&format!("/rooms/{section}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (room_id, room) in rooms {
            out.push(RoomUpdate {
                room_id: room_id.clone(),
                state_events: events(room.pointer(state_path)),
                timeline_events: events(room.pointer("/timeline/events")),
                limited: room
                    .pointer("/timeline/limited")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
    }
    out
}

fn users(value: Option<&Value>) -> Vec<OwnedUserId> {
    value
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter_map(|u| OwnedUserId::try_from(u).ok())
                .collect()
        })
        .unwrap_or_default()
}

impl SyncChanges {
    /// Reads the E2EE fields from a `/sync` response body. Malformed parts
    /// are skipped, never fatal.
    pub fn from_sync_json(sync: &Value) -> Self {
        let one_time_key_counts = sync
            .get("device_one_time_keys_count")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let unused_fallback_key_types = sync
            .get("device_unused_fallback_key_types")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let to_device_events = sync
            .pointer("/to_device/events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Self {
            one_time_key_counts,
            unused_fallback_key_types,
            to_device_events,
            device_lists_changed: users(sync.pointer("/device_lists/changed")),
            device_lists_left: users(sync.pointer("/device_lists/left")),
            initial: false,
            rooms: rooms(sync),
        }
    }
}

/// What one sync produced.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SyncOutcome {
    /// Each to-device event's fate, in order.
    pub to_device: Vec<ToDeviceOutcome>,
    /// Each encrypted timeline event's fate, then earlier events that a
    /// new key opened (`late`).
    pub room_events: Vec<crate::megolm::RoomEventOutcome>,
}

/// Who to encrypt for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Every known, unblocked device of these users.
    Users(Vec<OwnedUserId>),
    /// These devices, if known and unblocked.
    Devices(Vec<(OwnedUserId, OwnedDeviceId)>),
}

/// A known device and what we decided about it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Its checked keys.
    pub keys: VerifiedDeviceKeys,
    /// Blocked by the user: sent nothing.
    pub blocked: bool,
    /// TRK-08: the server later listed other keys under its ID; refused.
    pub keys_changed: bool,
    /// The user verified it out of band.
    pub verified: bool,
}

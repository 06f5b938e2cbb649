//! Room state for encryption: membership, `m.room.encryption` and history
//! visibility, applied from sync (ENC-01, ENC-02, ENC-07, ENC-10).

use crate::store::{EncryptionSettings, Membership, RoomRecord, StoreError, StoreTxn};
use ruma::OwnedUserId;
use serde_json::Value;

/// One week, the recommended default rotation period (ENC-01).
pub(crate) const DEFAULT_ROTATION_MS: u64 = 604_800_000;
/// The recommended default rotation message count (ENC-01).
pub(crate) const DEFAULT_ROTATION_MSGS: u64 = 100;

/// What a batch of state changed that the outbound session cares about.
#[derive(Debug, Default)]
pub(crate) struct StateEffects {
    /// Members who left, were kicked or banned (ENC-06c).
    pub(crate) left: bool,
    /// Users who joined or were invited (to track, ENC-11).
    pub(crate) arrived: Vec<OwnedUserId>,
    /// Encryption was turned on just now.
    pub(crate) encryption_enabled: bool,
}

/// Whether a visibility lets the room share history (HIS-01).
pub(crate) fn shares_history(visibility: &str) -> bool {
    matches!(visibility, "shared" | "world_readable")
}

/// Applies one state event (from `state` or the timeline).
pub(crate) fn apply_state_event(room: &mut RoomRecord, event: &Value, effects: &mut StateEffects) {
    let Some(state_key) = event.get("state_key").and_then(Value::as_str) else {
        return;
    };
    let content = event.get("content").cloned().unwrap_or(Value::Null);
    match event.get("type").and_then(Value::as_str) {
        Some("m.room.member") => {
            let Ok(user) = OwnedUserId::try_from(state_key) else {
                return;
            };
            let new = Membership::parse(
                content
                    .get("membership")
                    .and_then(Value::as_str)
                    .unwrap_or("leave"),
            );
            let old = room.members.insert(user.clone(), new);
            let was_in = matches!(old, Some(Membership::Join | Membership::Invite));
            let is_in = matches!(new, Membership::Join | Membership::Invite);
            if was_in && !is_in {
                effects.left = true;
            }
            if is_in && !was_in {
                effects.arrived.push(user);
            }
        }
        Some("m.room.encryption") if state_key.is_empty() => {
            let algorithm = content
                .get("algorithm")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if algorithm != crate::MEGOLM_ALGORITHM {
                // ENC-02: a change or removal never turns encryption off.
                return;
            }
            let number = |field: &str, default: u64| {
                content
                    .get(field)
                    .and_then(Value::as_u64)
                    .unwrap_or(default)
            };
            if room.encryption.is_none() {
                effects.encryption_enabled = true;
            }
            room.encryption = Some(EncryptionSettings {
                algorithm: algorithm.to_owned(),
                rotation_period_ms: number("rotation_period_ms", DEFAULT_ROTATION_MS),
                rotation_period_msgs: number("rotation_period_msgs", DEFAULT_ROTATION_MSGS),
            });
        }
        Some("m.room.history_visibility") if state_key.is_empty() => {
            if let Some(visibility) = content.get("history_visibility").and_then(Value::as_str) {
                room.history_visibility = visibility.to_owned();
            }
        }
        _ => {}
    }
}

/// ENC-10: users whose devices get the room key: joined members, and
/// invited ones unless visibility is `joined`.
pub(crate) fn recipient_users(room: &RoomRecord) -> Vec<OwnedUserId> {
    let invited_too = room.history_visibility != "joined";
    room.members
        .iter()
        .filter(|(_, m)| {
            matches!(m, Membership::Join) || (invited_too && matches!(m, Membership::Invite))
        })
        .map(|(u, _)| u.clone())
        .collect()
}

/// Applies a room's sync section. Returns what changed.
pub(crate) fn apply_room_update(
    txn: &mut impl StoreTxn,
    room_id: &str,
    events: &[&Value],
    limited: bool,
) -> Result<(RoomRecord, StateEffects), StoreError> {
    let stored = txn.load_room(room_id)?;
    // A timeline without state changes nothing: most syncs of a busy room.
    let unchanged = stored.is_some() && events.is_empty();
    let mut room = stored.unwrap_or_else(|| RoomRecord::new(room_id));
    let mut effects = StateEffects::default();
    for event in events {
        apply_state_event(&mut room, event, &mut effects);
    }
    // ENC-07: after a gap, anyone not joined may have joined and left.
    if limited
        && room
            .members
            .values()
            .any(|m| !matches!(m, Membership::Join))
    {
        effects.left = true;
    }
    if !unchanged {
        txn.save_room(&room)?;
    }
    Ok((room, effects))
}

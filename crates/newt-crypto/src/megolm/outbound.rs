//! An outbound Megolm session after its key is shared: encrypting room
//! events (ENC-03, ENC-14), its key-share requests answered or given up
//! on (ENC-04), and invalidation when someone may have left (ENC-06c,
//! ENC-07).

use super::RoomError;
use crate::olm::encrypt::Sender;
use crate::store::{StoreError, StoreTxn};
use crate::time::Timestamp;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Value, json};
use vodozemac::megolm::GroupSession;

/// ENC-03, ENC-14: encrypts a room event with the current session. The
/// key must have been shared and its requests answered (ENC-04).
pub(crate) fn encrypt_event(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    room_id: &str,
    event_type: &str,
    content: &Value,
    now: Timestamp,
) -> Result<Value, RoomError> {
    // Not the room's members: this runs for every room event.
    let settings = txn
        .load_room_encryption(room_id)?
        .ok_or_else(|| RoomError::NotEncrypted(room_id.to_owned()))?;
    let not_shared = || RoomError::KeyNotShared(room_id.to_owned());
    // Without the shared-with set: this runs for every room event.
    let mut record = txn.load_outbound_head(room_id)?.ok_or_else(not_shared)?;
    let expired = now.0.saturating_sub(record.state.created_at_ms) >= settings.rotation_period_ms
        || record.state.message_count >= settings.rotation_period_msgs;
    if record.state.invalidated || expired || !record.state.pending_requests.is_empty() {
        return Err(not_shared());
    }
    let mut content = content.clone();
    let relates_to = content
        .as_object_mut()
        .and_then(|c| c.remove("m.relates_to"));
    let plaintext = json!({"type": event_type, "content": content, "room_id": room_id});
    let mut session = GroupSession::from_pickle(record.pickle);
    let message = session.encrypt(plaintext.to_string());
    let mut encrypted = json!({
        "algorithm": crate::MEGOLM_ALGORITHM,
        "ciphertext": message.to_base64(),
        "session_id": session.session_id(),
        "sender_key": sender.curve25519,
        "device_id": sender.device_id,
    });
    if let Some(relates_to) = relates_to {
        encrypted["m.relates_to"] = relates_to;
    }
    record.state.message_count += 1;
    record.pickle = session.pickle();
    txn.save_outbound_head(record)?;
    Ok(encrypted)
}

/// A key-share request was answered: it no longer holds back encryption.
pub(crate) fn request_answered(
    txn: &mut impl StoreTxn,
    room_id: &str,
    request_id: &str,
) -> Result<(), StoreError> {
    if let Some(mut record) = txn.load_outbound_head(room_id)?
        && record
            .state
            .pending_requests
            .iter()
            .any(|id| id == request_id)
    {
        record.state.pending_requests.retain(|id| id != request_id);
        txn.save_outbound_head(record)?;
    }
    Ok(())
}

/// A key-share request failed for good: its devices did not get the key
/// and are shared with again at the next send.
pub(crate) fn request_failed<'d>(
    txn: &mut impl StoreTxn,
    room_id: &str,
    request_id: &str,
    devices: impl IntoIterator<Item = (&'d UserId, &'d DeviceId)>,
) -> Result<(), StoreError> {
    unshare(txn, room_id, Some(request_id), devices)
}

/// `devices` did not get the key: the next send shares it with them.
/// `done`: a request that no longer holds back encryption.
pub(crate) fn unshare<'d>(
    txn: &mut impl StoreTxn,
    room_id: &str,
    done: Option<&str>,
    devices: impl IntoIterator<Item = (&'d UserId, &'d DeviceId)>,
) -> Result<(), StoreError> {
    let Some(mut record) = txn.load_outbound(room_id)? else {
        return Ok(());
    };
    if let Some(done) = done {
        record.state.pending_requests.retain(|id| id != done);
    }
    for (user, device) in devices {
        if let Some(shared) = record.state.shared_with.get_mut(user) {
            shared.remove(device);
        }
    }
    txn.save_outbound(&record)?;
    Ok(())
}

/// The devices of a stored `/sendToDevice` body, for requests from before
/// [`crate::store::PendingKind::RoomKey`].
pub(crate) fn body_devices(body: &str) -> Vec<(OwnedUserId, OwnedDeviceId)> {
    let body: Value = serde_json::from_str(body).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(messages) = body.get("messages").and_then(Value::as_object) {
        for (user, devices) in messages {
            let (Ok(user), Some(devices)) =
                (OwnedUserId::try_from(user.as_str()), devices.as_object())
            else {
                continue;
            };
            for device in devices.keys() {
                out.push((user.clone(), device.as_str().into()));
            }
        }
    }
    out
}

/// ENC-06c, ENC-07: a member left (or a gap hides who did): the next
/// send rotates.
pub(crate) fn invalidate(txn: &mut impl StoreTxn, room_id: &str) -> Result<(), StoreError> {
    if let Some(mut record) = txn.load_outbound_head(room_id)?
        && !record.state.invalidated
    {
        record.state.invalidated = true;
        txn.save_outbound_head(record)?;
    }
    Ok(())
}

//! Room-key requests whose body this machine does not hold: made before a
//! restart, or by another process on the store. A room key's body is
//! never stored (it is megabytes for a large room, written on every
//! share); the request lists its devices, and its body is made again for
//! them under the same transaction ID (TD-02: the server applies one of
//! the two at most, and a recipient ignores a key it already has).

use super::outbound::{request_failed, unshare};
use super::share::room_key_content;
use crate::device_cache::Picked;
use crate::device_keys::VerifiedDeviceKeys;
use crate::olm::encrypt::{Sender, encrypt_body};
use crate::store::{PendingKind, PendingRequest, StoreError, StoreTxn};
use ruma::{OwnedDeviceId, OwnedUserId};
use std::sync::Arc;
use vodozemac::megolm::GroupSession;

/// What became of a room-key request that had no body here.
pub(crate) enum Rebuilt {
    /// Its body, which the machine now holds.
    Body(Arc<String>),
    /// No device needs it any more: the request is gone.
    Gone,
}

/// The room-key request `request` rebuilt, or dropped when its session
/// rotated away or none of its devices can get the key now. Olm sessions
/// advance: the caller commits before the body is sent, and the machine
/// keeps the body only once that commit is done.
pub(crate) fn rebuild(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    request: &PendingRequest,
) -> Result<Rebuilt, StoreError> {
    let PendingKind::RoomKey {
        room_id,
        session_id,
        devices,
        ..
    } = &request.kind
    else {
        return Ok(Rebuilt::Gone);
    };
    let id = request.request_id.as_str();
    let record = txn
        .load_outbound(room_id)?
        .filter(|r| &r.session_id == session_id);
    let Some(record) = record else {
        // Rotated away: ENC-04 held every event back while this key was
        // pending, so nothing encrypted with that session is for these
        // devices; the next share gives them the current one.
        txn.delete_pending_request(id)?;
        return Ok(Rebuilt::Gone);
    };
    let session = GroupSession::from_pickle(record.pickle);
    let index = session.message_index();
    // Only devices still recorded as given the key at this index: the
    // same key the lost body carried. Any other has it from elsewhere or
    // was already given up on.
    let wanted: Vec<_> = devices
        .iter()
        .filter(|(u, d)| {
            record
                .state
                .shared_with
                .get(u)
                .and_then(|s| s.get(d))
                .is_some_and(|at| at.index == index)
        })
        .cloned()
        .collect();
    let picked = pick(txn, sender, &wanted)?;
    let targets: Vec<&VerifiedDeviceKeys> = picked.iter().map(Picked::keys).collect();
    let content = room_key_content(room_id, &session, record.state.shared_history);
    let (outcome, body) = encrypt_body(txn, sender, "m.room_key", &content, &targets)?;
    let mut sent: Vec<&(OwnedUserId, OwnedDeviceId)> = outcome.sent_to.iter().collect();
    sent.sort();
    let lost: Vec<_> = wanted
        .into_iter()
        .filter(|device| sent.binary_search(&device).is_err())
        .collect();
    if outcome.sent_to.is_empty() {
        txn.delete_pending_request(id)?;
        request_failed(txn, room_id, id, lost.iter().map(|(u, d)| (&**u, &**d)))?;
        return Ok(Rebuilt::Gone);
    }
    if !lost.is_empty() {
        // The others are shared with again at the next send; the request
        // keeps the devices its body now has.
        let mut kept = request.clone();
        if let PendingKind::RoomKey { devices, .. } = &mut kept.kind {
            devices.clone_from(&outcome.sent_to);
        }
        txn.save_pending_request(&kept)?;
        unshare(txn, room_id, None, lost.iter().map(|(u, d)| (&**u, &**d)))?;
    }
    let body = Arc::new(body);
    // Kept only once the sessions that made it are stored.
    sender.bodies.pin_on_commit(txn, id, Arc::clone(&body));
    Ok(Rebuilt::Body(body))
}

/// The current keys of `wanted`'s devices, from the device lists.
fn pick(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    wanted: &[(OwnedUserId, OwnedDeviceId)],
) -> Result<Vec<Picked>, StoreError> {
    let mut users: Vec<OwnedUserId> = wanted.iter().map(|(u, _)| u.clone()).collect();
    users.sort();
    users.dedup();
    let mut sorted: Vec<&(OwnedUserId, OwnedDeviceId)> = wanted.iter().collect();
    sorted.sort();
    let mut picked = Vec::new();
    for list in sender.devices.devices_of(txn, &users)? {
        for device in Picked::each(&list) {
            let record = device.record();
            let key = (record.user_id.clone(), record.device_id.clone());
            if sorted.binary_search(&&key).is_ok() {
                picked.push(device);
            }
        }
    }
    Ok(picked)
}

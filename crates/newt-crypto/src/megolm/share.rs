//! Outbound Megolm sessions: creation (ENC-05), rotation (ENC-06..09,
//! HIS-02), sharing with exactly the right devices (ENC-04, ENC-10..13,
//! WHD-01..03) and encrypting room events (ENC-03, ENC-14).

use super::decide::{Decision, decide, find, record_shared, walk};
use super::quiet::{Quiet, QuietShares};
use super::room::shares_history;
use super::{RoomError, ShareOutcome, SharePolicy};
use crate::olm::encrypt::{EncryptOutcome, RoomKeyOf, Sender, encrypt_for_devices};
use crate::olm::pack::queue_to_device;
use crate::store::{
    EncryptionSettings, InboundInfo, InboundRecord, KeySource, OutboundRecord, OutboundState,
    SharedAt, StoreError, StoreTxn,
};
use crate::time::Timestamp;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

type DeviceKey = (OwnedUserId, OwnedDeviceId);

/// ENC-06, ENC-07, HIS-02: whether the current session must go whoever
/// is in the room (its age, its messages, a changed history setting).
/// The other reason, a device that lost access, is [`walk`]'s `lost`.
fn must_rotate(
    state: &OutboundState,
    settings: &EncryptionSettings,
    shared_history: bool,
    now: Timestamp,
) -> bool {
    let expired = now.0.saturating_sub(state.created_at_ms) >= settings.rotation_period_ms
        || state.message_count >= settings.rotation_period_msgs;
    state.invalidated || expired || state.shared_history != shared_history
}

/// ENC-04, ENC-11: the `m.room_key` content for `session` from its
/// current index.
pub(super) fn room_key_content(
    room_id: &str,
    session: &GroupSession,
    shared_history: bool,
) -> Value {
    json!({
        "algorithm": crate::MEGOLM_ALGORITHM,
        "room_id": room_id,
        "session_id": session.session_id(),
        "session_key": session.session_key().to_base64(),
        "chain_index": session.message_index(),
        "shared_history": shared_history,
    })
}

/// ENC-05: a new session, with our own copy stored as inbound.
fn create(
    txn: &mut impl StoreTxn,
    room_id: &str,
    sender: &Sender<'_>,
    shared_history: bool,
    now: Timestamp,
) -> Result<(GroupSession, OutboundState), StoreError> {
    let session = GroupSession::new(SessionConfig::version_1());
    let inbound = InboundGroupSession::new(&session.session_key(), SessionConfig::version_1());
    let own_user =
        OwnedUserId::try_from(sender.user_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    txn.save_inbound(&InboundRecord {
        room_id: room_id.to_owned(),
        session_id: session.session_id(),
        pickle: inbound.pickle(),
        info: InboundInfo {
            sender_key: sender.curve25519.to_owned(),
            claimed_ed25519: sender.ed25519.to_owned(),
            sender_user: Some(own_user),
            sender_device: Some(sender.device_id.into()),
            first_known_index: 0,
            source: KeySource::Own,
            shared_history,
        },
    })?;
    let state = OutboundState {
        created_at_ms: now.0,
        message_count: 0,
        shared_history,
        invalidated: false,
        shared_with: BTreeMap::new(),
        withheld: BTreeMap::new(),
        pending_requests: Vec::new(),
    };
    Ok((session, state))
}

/// Shares the room's current session with every recipient device that
/// lacks it, rotating first when needed. Devices that cannot get it are
/// told why, once.
pub(crate) fn share(
    txn: &mut impl StoreTxn,
    sender: &Sender<'_>,
    room_id: &str,
    policy: SharePolicy,
    now: Timestamp,
    next_seq: &mut u64,
) -> Result<ShareOutcome, RoomError> {
    let room = sender
        .rooms
        .room(txn, room_id)?
        .ok_or_else(|| RoomError::NotEncrypted(room_id.to_owned()))?;
    let settings = room
        .encryption
        .clone()
        .ok_or_else(|| RoomError::NotEncrypted(room_id.to_owned()))?;
    let shared_history = shares_history(&room.history_visibility);
    let revisions = QuietShares::revisions(txn)?;
    let head = txn
        .load_outbound_head(room_id)?
        .filter(|head| !must_rotate(&head.state, &settings, shared_history, now));
    // Before most messages nothing changed since the last share, which
    // had nothing to do.
    let quiet = head.as_ref().zip(revisions).map(|(head, revisions)| Quiet {
        session_id: head.session_id.clone(),
        policy,
        revisions,
    });
    if let Some(quiet) = &quiet
        && sender.quiet.holds(room_id, quiet)
    {
        return Ok(ShareOutcome {
            session_id: quiet.session_id.clone(),
            ..ShareOutcome::default()
        });
    }
    let decided = decide(txn, &room, sender, policy)?;
    // The sets are read from the cache (and copied into the state only if
    // this share changes them), unless the session goes anyway.
    let mut current = None;
    if let Some(head) = head
        && let Some(sets) = sender.outbound_sets.load(txn, room_id, &head.session_id)?
    {
        current = Some((walk(&decided, &sets.0), head, sets));
    }
    let (session, mut state, rotated, has, sets) = match current {
        Some((walked, head, sets)) if !walked.lost => {
            let session = GroupSession::from_pickle(head.pickle);
            (session, head.state, false, walked.has, Some(sets))
        }
        _ => {
            let (session, state) = create(txn, room_id, sender, shared_history, now)?;
            (session, state, true, vec![false; decided.len()], None)
        }
    };
    let withheld_before = sets.as_deref().map(|(_, withheld)| withheld);
    let session_id = session.session_id();
    let mut outcome = ShareOutcome {
        session_id: session_id.clone(),
        rotated,
        ..ShareOutcome::default()
    };

    let mut targets = Vec::new();
    let mut notices: Vec<(DeviceKey, &'static str, &'static str)> = Vec::new();
    for (d, &has_it) in decided.iter().zip(&has) {
        let (user, device) = d.id();
        match d.decision {
            Decision::Share if !has_it => targets.push(d.picked.keys()),
            Decision::Share => {}
            Decision::Withhold(code, reason) => {
                let told = withheld_before
                    .and_then(|w| w.get(user))
                    .and_then(|d| d.get(device))
                    .is_some_and(|c| c == code);
                if !told {
                    notices.push(((user.to_owned(), device.to_owned()), code, reason));
                }
            }
        }
    }
    if let Some((shared_with, withheld)) = sets.as_deref()
        && (!targets.is_empty() || !notices.is_empty())
    {
        state.shared_with = shared_with.clone();
        state.withheld = withheld.clone();
    }
    let nothing_to_do = !rotated && targets.is_empty() && notices.is_empty();
    // ENC-04, ENC-11: the key from the current index, to new devices only.
    let index = session.message_index();
    // Before most messages nobody lacks the key: the key (which signing
    // makes costly) is exported only for someone.
    let sent = if targets.is_empty() {
        EncryptOutcome::default()
    } else {
        let content = room_key_content(room_id, &session, shared_history);
        let of = RoomKeyOf {
            room_id,
            session_id: &session_id,
        };
        encrypt_for_devices(
            txn,
            sender,
            "m.room_key",
            &content,
            &targets,
            Some(of),
            next_seq,
        )?
    };
    state
        .pending_requests
        .extend(sent.request_ids.iter().cloned());
    record_shared(&mut state.shared_with, &sent.sent_to, SharedAt { index });
    outcome.shared_with = sent.sent_to;
    // ENC-13, WHD-03: one `m.no_olm` per device until a session appears.
    for (user, device) in &sent.missing_sessions {
        if let Some(d) = find(&decided, user, device)
            && let record = d.picked.record()
            && !record.local.no_olm_sent
        {
            let mut record = record.clone();
            record.local.no_olm_sent = true;
            txn.save_device(&record)?;
            notices.push((
                (user.clone(), device.clone()),
                "m.no_olm",
                "no Olm session could be made",
            ));
        }
    }
    let mut messages: BTreeMap<OwnedUserId, Map<String, Value>> = BTreeMap::new();
    for ((user, device), code, reason) in notices {
        let mut notice = json!({
            "algorithm": crate::MEGOLM_ALGORITHM,
            "sender_key": sender.curve25519,
            "code": code,
            "reason": reason,
        });
        if code != "m.no_olm" {
            notice["room_id"] = json!(room_id);
            notice["session_id"] = json!(session_id);
            state
                .withheld
                .entry(user.clone())
                .or_default()
                .insert(device.clone(), code.to_owned());
        }
        messages
            .entry(user.clone())
            .or_default()
            .insert(device.to_string(), notice);
        outcome.withheld.push((user, device, code.to_owned()));
    }
    queue_to_device(txn, "m.room_key.withheld", messages, next_seq)?;
    // Before most messages nothing changed: the record is not rewritten,
    // and the next share needs not look again until something does.
    if nothing_to_do && let Some(quiet) = quiet {
        sender.quiet.remember(txn, room_id, quiet);
    }
    if rotated || !outcome.shared_with.is_empty() || !outcome.withheld.is_empty() {
        txn.save_outbound(&OutboundRecord {
            room_id: room_id.to_owned(),
            session_id,
            pickle: session.pickle(),
            state,
        })?;
    }
    Ok(outcome)
}

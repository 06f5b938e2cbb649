//! Receiving room keys (MEG-01..07) and withheld notices (WHD-05), and
//! retrying the events they open (REC-05).

use crate::olm::{DecryptedToDevice, SenderTrust};
use crate::store::{InboundInfo, InboundRecord, KeySource, StoreError, StoreTxn, WithheldRecord};
use ruma::OwnedUserId;
use serde_json::Value;
use vodozemac::megolm::{InboundGroupSession, SessionConfig, SessionKey, SessionOrdering};

/// Why a room key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomKeyError {
    /// A required field is missing or not Megolm.
    #[error("malformed room key: {0}")]
    Malformed(&'static str),
    /// MEG-03: the session key is not a valid signed session key.
    #[error("the session key is invalid or its signature does not verify")]
    InvalidSessionKey,
    /// MEG-03: the `session_id` is not the key's own.
    #[error("session_id does not match the session key")]
    SessionIdMismatch,
}

/// What storing a room key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A new or better session for `(room, session)`; retry its events.
    Updated(String, String),
    /// We already had it from an earlier index (MEG-07).
    Kept,
}

/// A room key's room and its session, or why it was refused.
pub(crate) type ParsedRoomKey = Result<(String, InboundGroupSession), RoomKeyError>;

/// MEG-01..03: reads an `m.room_key` and checks its session key's
/// signature. It touches no store, so a batch runs it on every core.
pub(crate) fn parse_room_key(event: &DecryptedToDevice) -> ParsedRoomKey {
    let field = |name: &'static str| {
        event
            .content
            .get(name)
            .and_then(Value::as_str)
            .ok_or(RoomKeyError::Malformed(name))
    };
    if field("algorithm")? != crate::MEGOLM_ALGORITHM {
        return Err(RoomKeyError::Malformed("algorithm"));
    }
    let room_id = field("room_id")?;
    let session_id = field("session_id")?;
    let key = SessionKey::from_base64(field("session_key")?)
        .map_err(|_| RoomKeyError::InvalidSessionKey)?;
    let session = InboundGroupSession::new(&key, SessionConfig::version_1());
    if session.session_id() != session_id {
        return Err(RoomKeyError::SessionIdMismatch);
    }
    Ok((room_id.to_owned(), session))
}

/// MEG-04..07: stores an `m.room_key` that arrived over Olm, as
/// [`parse_room_key`] read it.
pub(crate) fn room_key(
    txn: &mut impl StoreTxn,
    event: &DecryptedToDevice,
    parsed: ParsedRoomKey,
) -> Result<Result<Stored, RoomKeyError>, StoreError> {
    let content = &event.content;
    let (room_id, mut session) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let session_id = session.session_id();
    if let Some(existing) = txn.load_inbound(&room_id, &session_id)? {
        let mut old = InboundGroupSession::from_pickle(existing.pickle);
        // MEG-07: only a lower first index, from the same sender, replaces.
        let better = existing.info.sender_key == event.sender_curve25519
            && matches!(old.compare(&mut session), SessionOrdering::Worse);
        if !better {
            return Ok(Ok(Stored::Kept));
        }
    }
    let device = match event.trust {
        SenderTrust::KnownDevice => event.sender_device.clone(),
        _ => None,
    };
    txn.save_inbound(&InboundRecord {
        room_id: room_id.clone(),
        session_id: session_id.clone(),
        pickle: session.pickle(),
        info: InboundInfo {
            sender_key: event.sender_curve25519.clone(),
            claimed_ed25519: event.sender_ed25519.clone(),
            sender_user: Some(event.sender.clone()),
            sender_device: device,
            first_known_index: session.first_known_index(),
            source: KeySource::RoomKey,
            shared_history: content
                .get("shared_history")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
    })?;
    Ok(Ok(Stored::Updated(room_id, session_id)))
}

/// WHD-05: remembers a withheld notice to explain undecryptable events.
pub(crate) fn withheld(
    txn: &mut impl StoreTxn,
    sender: &str,
    content: &Value,
) -> Result<(), StoreError> {
    let Ok(sender) = OwnedUserId::try_from(sender) else {
        return Ok(());
    };
    let text = |name: &str| content.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(code), Some(sender_key)) = (text("code"), text("sender_key")) else {
        return Ok(());
    };
    // `m.no_olm` covers every session from that device (WHD-05).
    let (room_id, session_id) = match (text("room_id"), text("session_id")) {
        (Some(room), Some(session)) => (room, session),
        _ => (String::new(), sender_key.clone()),
    };
    txn.save_withheld(&WithheldRecord {
        room_id,
        session_id,
        code,
        reason: text("reason"),
        sender,
        sender_key,
    })
}

//! Exporting and importing room keys (EXP-01, EXP-04, MEG-07).

use super::RoomEventOutcome;
use super::decrypt::{Me, retry};
use crate::store::{InboundInfo, InboundRecord, KeySource, StoreError, StoreTxn};
use serde_json::{Value, json};
use vodozemac::megolm::{ExportedSessionKey, InboundGroupSession, SessionConfig, SessionOrdering};

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ImportOutcome {
    /// Sessions stored or improved.
    pub imported: usize,
    /// Sessions we already held as well or better.
    pub unchanged: usize,
    /// Entries that were not valid sessions.
    pub invalid: usize,
    /// Earlier events the imported keys opened.
    pub room_events: Vec<RoomEventOutcome>,
}

/// EXP-01: every inbound session as `ExportedSessionData`.
pub(crate) fn export(txn: &mut impl StoreTxn) -> Result<Vec<Value>, StoreError> {
    Ok(txn
        .load_all_inbound()?
        .into_iter()
        .map(|record| {
            let session = InboundGroupSession::from_pickle(record.pickle);
            json!({
                "algorithm": crate::MEGOLM_ALGORITHM,
                "room_id": record.room_id,
                "session_id": record.session_id,
                "sender_key": record.info.sender_key,
                "sender_claimed_keys": {"ed25519": record.info.claimed_ed25519},
                "forwarding_curve25519_key_chain": [],
                "session_key": session.export_at_first_known_index().to_base64(),
                "shared_history": record.info.shared_history,
            })
        })
        .collect())
}

fn parse(entry: &Value) -> Option<(String, String, InboundGroupSession, String, String, bool)> {
    let text = |name: &str| entry.get(name).and_then(Value::as_str);
    if text("algorithm")? != crate::MEGOLM_ALGORITHM {
        return None;
    }
    let key = ExportedSessionKey::from_base64(text("session_key")?).ok()?;
    let session = InboundGroupSession::import(&key, SessionConfig::version_1());
    if session.session_id() != text("session_id")? {
        return None;
    }
    let claimed = entry
        .pointer("/sender_claimed_keys/ed25519")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((
        text("room_id")?.to_owned(),
        session.session_id(),
        session,
        text("sender_key")?.to_owned(),
        claimed.to_owned(),
        entry
            .get("shared_history")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    ))
}

/// EXP-04, MEG-07: imports sessions as unauthenticated; a stored session
/// is improved only by an earlier index and keeps its authenticity (its
/// messages are still checked against the same signing key).
pub(crate) fn import(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
    entries: &[Value],
) -> Result<ImportOutcome, StoreError> {
    let mut outcome = ImportOutcome::default();
    for entry in entries {
        let Some((room_id, session_id, mut session, sender_key, claimed, shared_history)) =
            parse(entry)
        else {
            outcome.invalid += 1;
            continue;
        };
        let record = match txn.load_inbound(&room_id, &session_id)? {
            Some(existing) => {
                let mut old = InboundGroupSession::from_pickle(existing.pickle);
                if !matches!(old.compare(&mut session), SessionOrdering::Worse) {
                    outcome.unchanged += 1;
                    continue;
                }
                let Some(merged) = old.merge(&mut session) else {
                    outcome.unchanged += 1;
                    continue;
                };
                let mut info = existing.info;
                info.first_known_index = merged.first_known_index();
                InboundRecord {
                    room_id: room_id.clone(),
                    session_id: session_id.clone(),
                    pickle: merged.pickle(),
                    info,
                }
            }
            None => InboundRecord {
                room_id: room_id.clone(),
                session_id: session_id.clone(),
                pickle: session.pickle(),
                info: InboundInfo {
                    sender_key,
                    claimed_ed25519: claimed,
                    sender_user: None,
                    sender_device: None,
                    first_known_index: session.first_known_index(),
                    source: KeySource::Imported,
                    shared_history,
                },
            },
        };
        txn.save_inbound(&record)?;
        outcome.imported += 1;
        outcome
            .room_events
            .extend(retry(txn, me, &room_id, &session_id)?);
    }
    Ok(outcome)
}

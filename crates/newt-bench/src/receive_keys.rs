//! Receive keys: one sync with 1,000 `m.room_key` to-device events over
//! existing Olm sessions, committed durably. The limit: the same Olm
//! decryptions and Megolm session imports (signature check included).

use crate::fixtures::{self, PeerDevice};
use newt_crypto::ruma::OwnedUserId;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, RequestKind, SyncChanges, Timestamp, ToDeviceOutcome};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use vodozemac::Curve25519PublicKey;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionKey};
use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn event(
    peer: &PeerDevice,
    session: &mut Session,
    me: (&str, &str, &str),
    event_type: &str,
    content: Value,
) -> Value {
    let plaintext = json!({
        "type": event_type, "content": content, "sender": peer.user,
        "recipient": me.0, "recipient_keys": {"ed25519": me.1},
        "keys": {"ed25519": peer.account.ed25519_key().to_base64()},
    });
    let (kind, body) = match session.encrypt(plaintext.to_string()) {
        Ok(OlmMessage::PreKey(m)) => (0, m.to_base64()),
        Ok(OlmMessage::Normal(m)) => (1, m.to_base64()),
        Err(_) => (9, String::new()),
    };
    json!({"sender": peer.user, "type": "m.room.encrypted", "content": {
        "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": peer.account.curve25519_key().to_base64(),
        "ciphertext": {me.2: {"type": kind, "body": body}}}})
}

fn room_key(group: &GroupSession) -> Value {
    json!({"algorithm": "m.megolm.v1.aes-sha2", "room_id": "!bench:bench.example",
        "session_id": group.session_id(), "session_key": group.session_key().to_base64(), "chain_index": 0})
}

/// newt's time for the one sync carrying every room key.
pub fn newt<S: Store>(store: &mut S, peers: &[PeerDevice]) -> Duration {
    let (user, device) = fixtures::me();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let machine =
        OlmMachine::open(&mut txn, &user, &device, NOW).unwrap_or_else(|_| unreachable!());
    let mut fallback = None;
    for request in machine.outgoing_requests(&mut txn, NOW).unwrap_or_default() {
        if request.kind() == RequestKind::KeysUpload {
            let body: Value = serde_json::from_str(request.body()).unwrap_or_default();
            fallback = body["fallback_keys"]
                .as_object()
                .and_then(|m| m.values().next())
                .and_then(|k| k["key"].as_str())
                .map(str::to_owned);
            let _ = machine.mark_request_as_sent(
                &mut txn,
                request.request_id(),
                r#"{"one_time_key_counts":{}}"#,
                NOW,
            );
        }
    }
    let mut users: Vec<OwnedUserId> = peers
        .iter()
        .filter_map(|p| OwnedUserId::try_from(p.user.as_str()).ok())
        .collect();
    users.sort();
    users.dedup();
    let _ = machine.update_tracked_users(&mut txn, &users);
    for request in machine.outgoing_requests(&mut txn, NOW).unwrap_or_default() {
        if request.kind() == RequestKind::KeysQuery {
            let body: Value = serde_json::from_str(request.body()).unwrap_or_default();
            let wanted: Vec<String> = body["device_keys"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let _ = machine.mark_request_as_sent(
                &mut txn,
                request.request_id(),
                &fixtures::query_response(peers, &wanted),
                NOW,
            );
        }
    }
    let _ = txn.commit();
    let me = (
        user.as_str(),
        machine.ed25519_key(),
        machine.curve25519_key(),
    );
    let ours = Curve25519PublicKey::from_base64(me.2).unwrap_or_else(|_| unreachable!());
    let fallback = fallback
        .and_then(|k| Curve25519PublicKey::from_base64(&k).ok())
        .unwrap_or_else(|| unreachable!());
    // Each peer opens a session with a first message (untimed).
    let mut sessions: Vec<Session> = peers
        .iter()
        .filter_map(|p| {
            p.account
                .create_outbound_session(SessionConfig::version_1(), ours, fallback)
                .ok()
        })
        .collect();
    let mut first = SyncChanges::default();
    first.to_device_events = peers
        .iter()
        .zip(&mut sessions)
        .map(|(p, s)| event(p, s, me, "m.dummy", json!({})))
        .collect();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let _ = machine.receive_sync_changes(&mut txn, &first, NOW);
    let _ = txn.commit();
    let groups: Vec<GroupSession> = peers
        .iter()
        .map(|_| GroupSession::new(vodozemac::megolm::SessionConfig::version_1()))
        .collect();
    let mut keys = SyncChanges::default();
    keys.to_device_events = peers
        .iter()
        .zip(&mut sessions)
        .zip(&groups)
        .map(|((p, s), g)| event(p, s, me, "m.room_key", room_key(g)))
        .collect();

    let start = Instant::now();
    let Ok(mut txn) = store.transaction() else {
        unreachable!()
    };
    let outcome = machine.receive_sync_changes(&mut txn, &keys, NOW);
    let committing = Instant::now();
    let _ = txn.commit();
    crate::first_share::phase("commit", committing);
    let elapsed = start.elapsed();
    let accepted = outcome
        .map(|o| {
            o.to_device
                .iter()
                .filter(|t| matches!(t, ToDeviceOutcome::Decrypted(_)))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(accepted, peers.len(), "newt did not accept every room key");
    elapsed
}

/// Untimed: sessions a raw account received one message on, and the next
/// messages carrying room keys.
pub fn limit_input(peers: &[PeerDevice]) -> LimitInput {
    let mut me = Account::new();
    me.generate_fallback_key();
    let fallback = me
        .fallback_key()
        .into_values()
        .next()
        .unwrap_or_else(|| unreachable!());
    let mut inbound = Vec::new();
    let mut next = Vec::new();
    let mut keys = Vec::new();
    for peer in peers {
        let Ok(mut out) = peer.account.create_outbound_session(
            SessionConfig::version_1(),
            me.curve25519_key(),
            fallback,
        ) else {
            continue;
        };
        let Ok(OlmMessage::PreKey(first)) = out.encrypt("{}") else {
            continue;
        };
        let Ok(created) = me.create_inbound_session(
            SessionConfig::version_1(),
            peer.account.curve25519_key(),
            &first,
        ) else {
            continue;
        };
        let group = GroupSession::new(vodozemac::megolm::SessionConfig::version_1());
        let Ok(message) = out.encrypt(room_key(&group).to_string()) else {
            continue;
        };
        inbound.push(created.session);
        next.push(message);
        keys.push(group.session_key().to_base64());
    }
    LimitInput {
        sessions: inbound,
        messages: next,
        keys,
    }
}

/// What the limit works on.
pub struct LimitInput {
    sessions: Vec<Session>,
    messages: Vec<OlmMessage>,
    keys: Vec<String>,
}

/// The limit: each Olm decryption and Megolm session import.
pub fn limit(input: &mut LimitInput) -> Duration {
    let start = Instant::now();
    for ((session, message), key) in input
        .sessions
        .iter_mut()
        .zip(&input.messages)
        .zip(&input.keys)
    {
        let _ = session.decrypt(message);
        // Parsing checks the session key's signature (MEG-03).
        if let Ok(key) = SessionKey::from_base64(key) {
            let _ = InboundGroupSession::new(&key, vodozemac::megolm::SessionConfig::version_1());
        }
    }
    start.elapsed()
}

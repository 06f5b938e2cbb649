//! How identities and messages print, for people and for scripts.

use newt_client::{Identity, RoomMessage};
use newt_crypto::RoomDecryptError;
use serde_json::{Value, json};

/// The identity as printed by `whoami`, `login` and `demo`.
pub fn identity_json(id: &Identity) -> Value {
    json!({
        "homeserver": id.homeserver,
        "user_id": id.user_id,
        "device_id": id.device_id,
        "ed25519": id.ed25519,
        "curve25519": id.curve25519,
    })
}

/// The identity for people.
pub fn identity_human(id: &Identity) -> String {
    format!(
        "user:        {}\ndevice:      {}\nhomeserver:  {}\ned25519:     {}\ncurve25519:  {}",
        id.user_id, id.device_id, id.homeserver, id.ed25519, id.curve25519
    )
}

/// The trust verdict as in JSON output.
pub fn trust_str(trust: newt_crypto::TrustVerdict) -> &'static str {
    use newt_crypto::TrustVerdict::*;
    match trust {
        Verified => "verified",
        UnverifiedDevice => "unverified_device",
        UnknownDevice => "unknown_device",
        AuthenticityNotGuaranteed => "authenticity_not_guaranteed",
        MismatchedSender => "mismatched_sender",
        _ => "other",
    }
}

/// A short, stable code for an undecryptable event's reason.
pub fn utd_code(reason: &RoomDecryptError) -> &'static str {
    match reason {
        RoomDecryptError::Malformed { .. } => "malformed",
        RoomDecryptError::Redacted => "redacted",
        RoomDecryptError::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
        RoomDecryptError::MissingSession { .. } => "missing_session",
        RoomDecryptError::Withheld { .. } => "withheld",
        RoomDecryptError::UnknownIndex { .. } => "unknown_index",
        RoomDecryptError::Replay { .. } => "replay",
        RoomDecryptError::WrongRoom { .. } => "wrong_room",
        RoomDecryptError::Failed { .. } => "decryption_failed",
        _ => "other",
    }
}

/// A message as one JSON object (the `listen`/`history` contract).
pub fn message_json(m: &RoomMessage) -> Value {
    let mut out = json!({
        "room_id": m.room_id,
        "event_id": m.event_id,
        "sender": m.sender,
        "sender_device": m.sender_device,
        "origin_server_ts": m.origin_server_ts,
        "decrypted": m.decrypted,
        "encrypted": m.encrypted,
        "event_type": m.event_type,
    });
    if let Some(body) = &m.body {
        out["body"] = json!(body);
    }
    if let Some(msgtype) = &m.msgtype {
        out["msgtype"] = json!(msgtype);
    }
    if let Some(trust) = m.trust {
        out["trust"] = json!(trust);
    }
    if let Some(reason) = &m.utd_reason {
        out["utd_reason"] = json!(utd_code(reason));
        out["utd_detail"] = json!(reason.to_string());
        if let RoomDecryptError::Withheld { code, .. } = reason {
            out["withheld_code"] = json!(code);
        }
    }
    if m.late {
        out["late"] = json!(true);
    }
    out
}

/// A message for people.
pub fn message_human(m: &RoomMessage) -> String {
    let text = match (&m.body, &m.utd_reason) {
        (Some(body), _) => body.clone(),
        (None, Some(reason)) => format!("** unable to decrypt: {reason} **"),
        (None, None) => format!("[{}]", m.event_type),
    };
    let mark = match m.trust {
        Some(newt_crypto::TrustVerdict::Verified) | None => "",
        Some(newt_crypto::TrustVerdict::UnverifiedDevice) => " (unverified device)",
        Some(newt_crypto::TrustVerdict::UnknownDevice) => " (unknown device)",
        Some(newt_crypto::TrustVerdict::AuthenticityNotGuaranteed) => {
            " (authenticity not guaranteed)"
        }
        Some(newt_crypto::TrustVerdict::MismatchedSender) => " (MISMATCHED SENDER)",
        Some(_) => " (untrusted)",
    };
    format!("[{}] {}{}: {}", m.room_id, m.sender, mark, text)
}

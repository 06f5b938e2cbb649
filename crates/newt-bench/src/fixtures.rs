//! Peers made with raw vodozemac: signed device keys and one-time keys,
//! shaped as `/keys/query` and `/keys/claim` responses. Built before any
//! timing starts.

use newt_crypto::signing::sign_json;
use serde_json::{Map, Value, json};
use vodozemac::olm::Account;

/// The benchmarked device: `@me:bench.example`, device `ME`.
pub fn me() -> (
    newt_crypto::ruma::OwnedUserId,
    newt_crypto::ruma::OwnedDeviceId,
) {
    let user = newt_crypto::ruma::OwnedUserId::try_from("@me:bench.example")
        .unwrap_or_else(|_| unreachable!());
    (user, "ME".into())
}

/// One peer device.
pub struct PeerDevice {
    pub user: String,
    pub device: String,
    pub account: Account,
    pub device_keys: Value,
    pub otk_id: String,
    pub otk: Value,
}

fn signed(account: &Account, user: &str, device: &str, value: Value) -> Value {
    let Value::Object(mut map) = value else {
        return Value::Null;
    };
    let _ = sign_json(&mut map, user, &format!("ed25519:{device}"), |m| {
        account.sign(m)
    });
    Value::Object(map)
}

/// `devices` peer devices spread over `users` users (`@uN:bench.example`).
pub fn peers(users: usize, devices: usize) -> Vec<PeerDevice> {
    (0..devices)
        .map(|i| {
            let user = format!("@u{}:bench.example", i % users);
            let device = format!("D{i}");
            let mut account = Account::new();
            let keys = account.identity_keys();
            let device_keys = signed(
                &account,
                &user,
                &device,
                json!({
                    "user_id": user, "device_id": device,
                    "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                    "keys": {format!("curve25519:{device}"): keys.curve25519.to_base64(),
                             format!("ed25519:{device}"): keys.ed25519.to_base64()},
                    "unsigned": {"device_display_name": "bench"},
                }),
            );
            account.generate_one_time_keys(1);
            let (id, key) = account
                .one_time_keys()
                .into_iter()
                .next()
                .map(|(id, k)| (id.to_base64(), k))
                .expect("one key");
            let otk = signed(&account, &user, &device, json!({"key": key.to_base64()}));
            account.mark_keys_as_published();
            PeerDevice {
                user,
                device,
                account,
                device_keys,
                otk_id: format!("signed_curve25519:{id}"),
                otk,
            }
        })
        .collect()
}

/// The `/keys/query` response for `requested` users.
pub fn query_response(peers: &[PeerDevice], requested: &[String]) -> String {
    let mut users: Map<String, Value> = Map::new();
    for peer in peers.iter().filter(|p| requested.contains(&p.user)) {
        let entry = users.entry(peer.user.clone()).or_insert_with(|| json!({}));
        entry[&peer.device] = peer.device_keys.clone();
    }
    json!({"device_keys": users, "failures": {}}).to_string()
}

/// The `/keys/claim` response for a claim request body.
pub fn claim_response(peers: &[PeerDevice], request: &Value) -> String {
    let mut users: Map<String, Value> = Map::new();
    let wanted = request["one_time_keys"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for peer in peers {
        if wanted
            .get(&peer.user)
            .and_then(|d| d.get(&peer.device))
            .is_some()
        {
            let entry = users.entry(peer.user.clone()).or_insert_with(|| json!({}));
            entry[&peer.device] = json!({ peer.otk_id.clone(): peer.otk.clone() });
        }
    }
    json!({"one_time_keys": users, "failures": {}}).to_string()
}

/// A plausible `m.room_key` content.
/// An Olm plaintext of the size newt encrypts for one device: the room
/// key, both identities, and signed device keys as `sender_device_keys`
/// (a peer's stand in for ours: same shape, same size).
pub fn olm_plaintext(peers: &[PeerDevice]) -> String {
    let device_keys = peers.first().map(|p| p.device_keys.clone());
    json!({
        "type": "m.room_key", "content": room_key_content(),
        "sender": "@me:bench.example", "sender_device": "BENCHDEV",
        "keys": {"ed25519": "y".repeat(43)},
        "sender_device_keys": device_keys,
        "recipient": "@u0:bench.example", "recipient_keys": {"ed25519": "x".repeat(43)},
    })
    .to_string()
}

/// The crypto of a new room session, which a share that rotates does
/// once: the outbound session, its key exported (signed), and the
/// inbound copy made from it (signature checked) to read our own
/// messages.
pub fn new_room_session() {
    use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};
    let session = GroupSession::new(SessionConfig::version_1());
    let key = session.session_key();
    let _ = InboundGroupSession::new(&key, SessionConfig::version_1());
}

/// The room the shares go through.
pub const ROOM: &str = "!bench:bench.example";
/// Its rotation period: a re-share is a rotation by time.
pub const ROTATION_MS: u64 = 3_600_000;

/// The room's state: encrypted, history shared, `@me` and every peer's
/// user joined.
pub fn room_state(peers: &[PeerDevice]) -> Vec<Value> {
    let (me, _) = me();
    let mut users: Vec<&str> = peers.iter().map(|p| p.user.as_str()).collect();
    users.push(me.as_str());
    users.sort_unstable();
    users.dedup();
    let event = |n: usize, kind: &str, key: &str, content: Value| {
        json!({
            "type": kind, "sender": me.as_str(), "state_key": key, "content": content,
            "event_id": format!("$state{n}"), "origin_server_ts": 1, "room_id": ROOM,
        })
    };
    let mut events = vec![
        event(
            0,
            "m.room.encryption",
            "",
            json!({
                "algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": ROTATION_MS,
            }),
        ),
        event(
            1,
            "m.room.history_visibility",
            "",
            json!({"history_visibility": "shared"}),
        ),
    ];
    for (n, user) in users.into_iter().enumerate() {
        events.push(event(
            n + 2,
            "m.room.member",
            user,
            json!({"membership": "join"}),
        ));
    }
    events
}

pub fn room_key_content() -> Value {
    let session =
        vodozemac::megolm::GroupSession::new(vodozemac::megolm::SessionConfig::version_1());
    json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": "!bench:bench.example",
        "session_id": session.session_id(),
        "session_key": session.session_key().to_base64(),
        "chain_index": 0,
        "shared_history": false,
    })
}

/// The stored form of a room key from a bench peer for `group`.
pub fn inbound_record(
    room_id: &str,
    group: &vodozemac::megolm::GroupSession,
) -> newt_crypto::store::InboundRecord {
    use newt_crypto::store::{InboundInfo, InboundRecord, KeySource};
    use vodozemac::megolm::{InboundGroupSession, SessionConfig};
    let inbound = InboundGroupSession::new(&group.session_key(), SessionConfig::version_1());
    InboundRecord {
        room_id: room_id.into(),
        session_id: group.session_id(),
        pickle: inbound.pickle(),
        info: InboundInfo {
            sender_key: "peercurve".into(),
            claimed_ed25519: "peered".into(),
            sender_user: newt_crypto::ruma::OwnedUserId::try_from("@peer:bench.example").ok(),
            sender_device: Some("PEER".into()),
            first_known_index: 0,
            source: KeySource::RoomKey,
            shared_history: false,
        },
    }
}

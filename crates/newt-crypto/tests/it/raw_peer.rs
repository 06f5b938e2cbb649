//! A device driven by raw vodozemac calls, for crafting what a newt
//! device would never send: forged plaintexts, bad signatures.

use crate::router::{Peer, Router, user};
use newt_crypto::ruma::{OwnedDeviceId, OwnedUserId};
use newt_crypto::signing::sign_json;
use newt_crypto::vodozemac::Curve25519PublicKey;
use newt_crypto::vodozemac::olm::{Account, OlmMessage, Session, SessionConfig};
use serde_json::{Map, Value, json};

pub struct RawPeer {
    pub user: OwnedUserId,
    pub device: OwnedDeviceId,
    pub account: Account,
    pub device_keys: Value,
}

fn signed(account: &Account, user: &str, device: &str, value: Value) -> Value {
    let Value::Object(mut map) = value else {
        unreachable!()
    };
    sign_json(&mut map, user, &format!("ed25519:{device}"), |m| {
        account.sign(m)
    })
    .unwrap();
    Value::Object(map)
}

impl RawPeer {
    /// A device with signed keys and five one-time keys on the router.
    pub fn new(router: &mut Router, name: &str, device: &str) -> Self {
        let user = user(name);
        let mut account = Account::new();
        let keys = account.identity_keys();
        let device_keys = signed(
            &account,
            user.as_str(),
            device,
            json!({
                "user_id": user, "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {format!("curve25519:{device}"): keys.curve25519.to_base64(),
                         format!("ed25519:{device}"): keys.ed25519.to_base64()},
            }),
        );
        account.generate_one_time_keys(5);
        let mut otks = Map::new();
        for (id, key) in account.one_time_keys() {
            let object = signed(
                &account,
                user.as_str(),
                device,
                json!({"key": key.to_base64()}),
            );
            otks.insert(format!("signed_curve25519:{}", id.to_base64()), object);
        }
        account.mark_keys_as_published();
        let me = (user.clone(), OwnedDeviceId::from(device));
        router.upload(
            &me,
            &json!({"device_keys": device_keys, "one_time_keys": otks}),
        );
        Self {
            user,
            device: device.into(),
            account,
            device_keys,
        }
    }

    pub fn ed25519(&self) -> String {
        self.account.ed25519_key().to_base64()
    }

    pub fn curve25519(&self) -> String {
        self.account.curve25519_key().to_base64()
    }

    /// Claims one of `target`'s keys and opens an outbound session.
    pub fn session_to(&self, router: &mut Router, target: &Peer) -> Session {
        let body = json!({"one_time_keys": {target.user.as_str(): {target.device.as_str(): "signed_curve25519"}}});
        let response = router.claim(&body);
        let keys = response["one_time_keys"][target.user.as_str()][target.device.as_str()]
            .as_object()
            .unwrap();
        let otk = keys.values().next().unwrap()["key"].as_str().unwrap();
        let otk = Curve25519PublicKey::from_base64(otk).unwrap();
        let their = Curve25519PublicKey::from_base64(target.machine.curve25519_key()).unwrap();
        self.account
            .create_outbound_session(SessionConfig::version_1(), their, otk)
            .unwrap()
    }

    /// The plaintext a correct sender would put in (OLM-02, OLM-03).
    pub fn plaintext(&self, target: &Peer, event_type: &str, content: Value) -> Value {
        json!({
            "type": event_type,
            "content": content,
            "sender": self.user,
            "sender_device": self.device,
            "keys": {"ed25519": self.ed25519()},
            "recipient": target.user,
            "recipient_keys": {"ed25519": target.machine.ed25519_key()},
            "sender_device_keys": self.device_keys,
        })
    }

    /// An `m.room.encrypted` to-device event for `target`.
    pub fn event(
        &self,
        session: &mut Session,
        target: &Peer,
        sender: &str,
        plaintext: &Value,
    ) -> Value {
        let (kind, body) = match session.encrypt(plaintext.to_string()).unwrap() {
            OlmMessage::PreKey(m) => (0, m.to_base64()),
            OlmMessage::Normal(m) => (1, m.to_base64()),
        };
        json!({
            "sender": sender,
            "type": "m.room.encrypted",
            "content": {
                "algorithm": "m.olm.v1.curve25519-aes-sha2",
                "sender_key": self.curve25519(),
                "ciphertext": {target.machine.curve25519_key(): {"type": kind, "body": body}},
            }
        })
    }

    /// Decrypts a to-device event newt sent to this device.
    pub fn open(&mut self, event: &Value) -> Value {
        let content = &event["content"];
        let ours = &content["ciphertext"][self.curve25519()];
        let sender_key =
            Curve25519PublicKey::from_base64(content["sender_key"].as_str().unwrap()).unwrap();
        let bytes = newt_crypto::b64::decode(ours["body"].as_str().unwrap()).unwrap();
        let message =
            OlmMessage::from_parts(ours["type"].as_u64().unwrap() as usize, &bytes).unwrap();
        let OlmMessage::PreKey(pre) = message else {
            panic!("expected a pre-key message")
        };
        let created = self
            .account
            .create_inbound_session(SessionConfig::version_1(), sender_key, &pre)
            .unwrap();
        serde_json::from_slice(&created.plaintext).unwrap()
    }
}

//! An N-device router for sans-I/O scenarios: an in-memory stand-in for
//! the homeserver's E2EE endpoints with a virtual clock, plus hooks to
//! tamper with responses and inject raw events. Only for testing the
//! state machine; integration tests use a real Synapse.

use newt_crypto::ruma::{OwnedDeviceId, OwnedUserId};
use newt_crypto::store::{MemoryStore, Store, StoreTxn};
use newt_crypto::{
    OlmMachine, OutgoingRequest, Recipients, RequestKind, ResponseOutcome, SyncChanges,
    SyncOutcome, Timestamp, ToDeviceOutcome,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub type DeviceKey = (OwnedUserId, OwnedDeviceId);

/// A newt device on the router.
pub struct Peer {
    pub user: OwnedUserId,
    pub device: OwnedDeviceId,
    pub store: MemoryStore,
    pub machine: OlmMachine,
}

impl Peer {
    /// Applies `changes` as one sync in one committed transaction.
    pub fn apply(&mut self, changes: &SyncChanges, now: Timestamp) -> SyncOutcome {
        let mut txn = self.store.transaction().unwrap();
        let outcome = self
            .machine
            .receive_sync_changes(&mut txn, changes, now)
            .unwrap();
        txn.commit().unwrap();
        outcome
    }
}

type Tamper = Box<dyn FnMut(&mut Value)>;

/// The fake server.
#[derive(Default)]
pub struct Router {
    pub now: u64,
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    otks: BTreeMap<DeviceKey, Vec<(String, Value)>>,
    fallback: BTreeMap<DeviceKey, (String, Value, bool)>,
    inbox: BTreeMap<DeviceKey, Vec<Value>>,
    changed: BTreeMap<DeviceKey, Vec<OwnedUserId>>,
    /// Every request seen: (kind, path).
    pub log: Vec<(RequestKind, String)>,
    /// `/sendToDevice` transactions applied, by sending device.
    txns: std::collections::BTreeSet<(DeviceKey, String)>,
    /// Rewrites `/keys/query` responses.
    pub tamper_query: Option<Tamper>,
    /// Rewrites `/keys/claim` responses.
    pub tamper_claim: Option<Tamper>,
    /// Servers to report in `failures` of queries and claims.
    pub failing_servers: Vec<String>,
}

/// `@name:example.org`, or `@name` when `name` names its server.
pub fn user(name: &str) -> OwnedUserId {
    if name.contains(':') {
        format!("@{name}").try_into().unwrap()
    } else {
        format!("@{name}:example.org").try_into().unwrap()
    }
}

impl Router {
    pub fn new() -> Self {
        Self {
            now: 1_700_000_000_000,
            ..Self::default()
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.now)
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// A new device, logged in, with its keys uploaded.
    pub fn device(&mut self, name: &str, device: &str) -> Peer {
        let user = user(name);
        let device: OwnedDeviceId = device.into();
        let mut store = MemoryStore::new();
        let mut txn = store.transaction().unwrap();
        let machine = OlmMachine::open(&mut txn, &user, &device, self.now()).unwrap();
        txn.commit().unwrap();
        let mut peer = Peer {
            user,
            device,
            store,
            machine,
        };
        self.flush(&mut peer);
        peer
    }

    /// Sends everything the peer has queued and applies the responses.
    pub fn flush(&mut self, peer: &mut Peer) -> Vec<ResponseOutcome> {
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let requests = {
                let mut txn = peer.store.transaction().unwrap();
                let r = peer
                    .machine
                    .outgoing_requests(&mut txn, self.now())
                    .unwrap();
                txn.commit().unwrap();
                r
            };
            if requests.is_empty() {
                break;
            }
            for request in requests {
                let response = self.handle(peer, &request);
                let mut txn = peer.store.transaction().unwrap();
                let outcome = peer
                    .machine
                    .mark_request_as_sent(
                        &mut txn,
                        request.request_id(),
                        &response.to_string(),
                        self.now(),
                    )
                    .unwrap();
                txn.commit().unwrap();
                outcomes.push(outcome);
            }
        }
        outcomes
    }

    /// Like [`Self::flush`], but returns the to-device events released.
    pub fn flush_released(&mut self, peer: &mut Peer) -> Vec<ToDeviceOutcome> {
        self.flush(peer)
            .into_iter()
            .flat_map(|o| o.released)
            .collect()
    }

    fn handle(&mut self, peer: &Peer, request: &OutgoingRequest) -> Value {
        self.log.push((request.kind(), request.path().to_owned()));
        let body: Value = serde_json::from_str(request.body()).unwrap();
        let me = (peer.user.clone(), peer.device.clone());
        match request.kind() {
            RequestKind::KeysUpload => self.upload(&me, &body),
            RequestKind::KeysQuery => self.query(&body),
            RequestKind::KeysClaim => self.claim(&body),
            RequestKind::ToDevice => {
                let mut segments = request.path().rsplit('/');
                let txn_id = segments.next().unwrap().to_owned();
                let event_type = segments.next().unwrap().to_owned();
                // TD-02: a transaction ID is applied once per device.
                if self.txns.insert((me, txn_id)) {
                    self.send_to_device(&peer.user, &event_type, &body);
                }
                json!({})
            }
            other => panic!("unexpected request {other:?}"),
        }
    }

    pub fn upload(&mut self, me: &DeviceKey, body: &Value) -> Value {
        if let Some(keys) = body.get("device_keys") {
            self.device_keys
                .entry(me.0.clone())
                .or_default()
                .insert(me.1.to_string(), keys.clone());
            // Everyone sharing a room would see a device-list change.
            for (other, changes) in self.changed.iter_mut() {
                if other != me {
                    changes.push(me.0.clone());
                }
            }
        }
        if let Some(otks) = body.get("one_time_keys").and_then(Value::as_object) {
            let list = self.otks.entry(me.clone()).or_default();
            for (id, key) in otks {
                if !list.iter().any(|(i, _)| i == id) {
                    list.push((id.clone(), key.clone()));
                }
            }
        }
        if let Some(fallback) = body.get("fallback_keys").and_then(Value::as_object)
            && let Some((id, key)) = fallback.iter().next()
        {
            self.fallback
                .insert(me.clone(), (id.clone(), key.clone(), false));
        }
        self.changed.entry(me.clone()).or_default();
        json!({"one_time_key_counts": {"signed_curve25519": self.otk_count(me)}})
    }

    pub fn otk_count(&self, device: &DeviceKey) -> usize {
        self.otks.get(device).map_or(0, Vec::len)
    }

    fn failures(&self) -> Value {
        let map: Map<String, Value> = self
            .failing_servers
            .iter()
            .map(|s| (s.clone(), json!({})))
            .collect();
        Value::Object(map)
    }

    pub fn query(&mut self, body: &Value) -> Value {
        let mut out = Map::new();
        for user in body["device_keys"].as_object().unwrap().keys() {
            let server = user.split(':').nth(1).unwrap_or_default();
            if self.failing_servers.iter().any(|s| s == server) {
                continue;
            }
            let owned: OwnedUserId = user.as_str().try_into().unwrap();
            let devices = self.device_keys.get(&owned).cloned().unwrap_or_default();
            out.insert(user.clone(), json!(devices));
        }
        let mut response = json!({"device_keys": out, "failures": self.failures()});
        if let Some(tamper) = &mut self.tamper_query {
            tamper(&mut response);
        }
        response
    }

    pub fn claim(&mut self, body: &Value) -> Value {
        let mut out = Map::new();
        for (user, devices) in body["one_time_keys"].as_object().unwrap() {
            let server = user.split(':').nth(1).unwrap_or_default();
            if self.failing_servers.iter().any(|s| s == server) {
                continue;
            }
            let owned: OwnedUserId = user.as_str().try_into().unwrap();
            let mut per_device = Map::new();
            for device in devices.as_object().unwrap().keys() {
                let key = (owned.clone(), OwnedDeviceId::from(device.as_str()));
                let otk = self.otks.get_mut(&key).and_then(|l| {
                    if l.is_empty() {
                        None
                    } else {
                        Some(l.remove(0))
                    }
                });
                let claimed = otk.or_else(|| {
                    self.fallback.get_mut(&key).map(|(id, value, used)| {
                        *used = true;
                        (id.clone(), value.clone())
                    })
                });
                if let Some((id, value)) = claimed {
                    per_device.insert(device.clone(), json!({ id: value }));
                }
            }
            out.insert(user.clone(), Value::Object(per_device));
        }
        let mut response = json!({"one_time_keys": out, "failures": self.failures()});
        if let Some(tamper) = &mut self.tamper_claim {
            tamper(&mut response);
        }
        response
    }

    fn send_to_device(&mut self, sender: &OwnedUserId, event_type: &str, body: &Value) {
        for (user, devices) in body["messages"].as_object().unwrap() {
            let owned: OwnedUserId = user.as_str().try_into().unwrap();
            for (device, content) in devices.as_object().unwrap() {
                let event = json!({"sender": sender, "type": event_type, "content": content});
                self.inject(&owned, device, event);
            }
        }
    }

    /// Puts a raw event into a device's to-device inbox.
    pub fn inject(&mut self, user: &OwnedUserId, device: &str, event: Value) {
        self.inbox
            .entry((user.clone(), device.into()))
            .or_default()
            .push(event);
    }

    /// Takes a device's pending to-device events without delivering them.
    pub fn take_inbox(&mut self, user: &OwnedUserId, device: &str) -> Vec<Value> {
        self.inbox
            .remove(&(user.clone(), device.into()))
            .unwrap_or_default()
    }

    /// The sync a device would get now (inbox drained).
    pub fn sync_changes(&mut self, peer: &Peer) -> SyncChanges {
        let key = (peer.user.clone(), peer.device.clone());
        let mut changes = SyncChanges::default();
        changes.to_device_events = self.inbox.remove(&key).unwrap_or_default();
        changes.one_time_key_counts = Some(BTreeMap::from([(
            "signed_curve25519".to_owned(),
            self.otk_count(&key) as u64,
        )]));
        let fallback_unused = self.fallback.get(&key).is_some_and(|(_, _, used)| !used);
        changes.unused_fallback_key_types = Some(if fallback_unused {
            vec!["signed_curve25519".into()]
        } else {
            vec![]
        });
        changes.device_lists_changed = std::mem::take(self.changed.entry(key).or_default());
        changes
    }

    /// Delivers a sync and commits it, then flushes; events released by
    /// the flush's queries follow the sync's own outcomes.
    pub fn sync(&mut self, peer: &mut Peer) -> SyncOutcome {
        // Time passes between syncs, so "most recent" is well defined.
        self.advance(1);
        let changes = self.sync_changes(peer);
        let mut outcome = peer.apply(&changes, self.now());
        let released = self.flush_released(peer);
        outcome.to_device.extend(released);
        outcome
    }

    /// Makes `peer` track `user` and fetch their devices, as sharing a
    /// room would.
    pub fn introduce(&mut self, peer: &mut Peer, user: &OwnedUserId) {
        let mut txn = peer.store.transaction().unwrap();
        peer.machine
            .update_tracked_users(&mut txn, std::slice::from_ref(user))
            .unwrap();
        txn.commit().unwrap();
        self.flush(peer);
    }

    /// Sends `content` as `event_type` from `from` to `to`'s devices, the
    /// whole flow: track, query, claim, encrypt, send.
    pub fn send(
        &mut self,
        from: &mut Peer,
        to: &[OwnedUserId],
        event_type: &str,
        content: Value,
    ) -> newt_crypto::EncryptOutcome {
        let recipients = Recipients::Users(to.to_vec());
        let mut txn = from.store.transaction().unwrap();
        from.machine.update_tracked_users(&mut txn, to).unwrap();
        txn.commit().unwrap();
        self.flush(from);
        let mut txn = from.store.transaction().unwrap();
        from.machine
            .get_missing_sessions(&mut txn, &recipients, self.now())
            .unwrap();
        txn.commit().unwrap();
        self.flush(from);
        let mut txn = from.store.transaction().unwrap();
        let outcome = from
            .machine
            .encrypt_to_device(&mut txn, event_type, &content, &recipients)
            .unwrap();
        txn.commit().unwrap();
        self.flush(from);
        outcome
    }

    /// How many requests of a kind were made.
    pub fn count(&self, kind: RequestKind) -> usize {
        self.log.iter().filter(|(k, _)| *k == kind).count()
    }
}

/// The decrypted events of an outcome list.
pub fn decrypted(outcomes: &[ToDeviceOutcome]) -> Vec<&newt_crypto::DecryptedToDevice> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            ToDeviceOutcome::Decrypted(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The rejection errors of an outcome list.
pub fn rejected(outcomes: &[ToDeviceOutcome]) -> Vec<newt_crypto::ToDeviceError> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            ToDeviceOutcome::Rejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

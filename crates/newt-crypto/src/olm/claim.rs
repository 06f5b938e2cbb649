//! Establishing Olm sessions (CLM-01..06): which devices need a session,
//! the `/keys/claim` requests, and the checks on every claimed key before
//! a session is made from it.

use super::cache::OlmCache;
use super::known::KnownSessions;
use super::sessions::{self, LiveSession};
use crate::SIGNED_CURVE25519;
use crate::backoff;
use crate::device_cache::{DeviceCache, Picked, UserDevices};
use crate::device_keys::VerifiedDeviceKeys;
use crate::requests::new_request_id;
use crate::signing::verify_json;
use crate::store::{DeviceRecord, PendingKind, PendingRequest, StoreError, StoreTxn};
use crate::time::Timestamp;
use rayon::prelude::*;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{Account, SessionConfig};

/// Users per `/keys/claim` request.
pub(crate) const CLAIM_CHUNK: usize = 250;

/// Why no session could be made with a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimFailure {
    /// CLM-02: the server had no key for the device, or its server failed.
    #[error("no one-time key was returned")]
    NoKey,
    /// CLM-01: the key's signature does not verify with the device's key.
    #[error("the one-time key's signature is invalid")]
    BadSignature,
    /// The key is not valid Curve25519.
    #[error("the one-time key is malformed")]
    MalformedKey,
    /// vodozemac refused to make a session from it.
    #[error("session creation failed: {0}")]
    SessionCreation(String),
}

/// What a claim response produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimOutcome {
    /// Devices that now have a new session.
    pub created: Vec<(OwnedUserId, OwnedDeviceId)>,
    /// Devices that failed, backing off (CLM-02).
    pub failed: Vec<(OwnedUserId, OwnedDeviceId, ClaimFailure)>,
    /// Devices whose broken session was replaced; they get an `m.dummy`
    /// over the new one (REC-02).
    pub replaced: Vec<(OwnedUserId, OwnedDeviceId)>,
}

type DeviceKey = (OwnedUserId, OwnedDeviceId);

/// Devices already in a claim in flight.
fn in_flight(txn: &mut impl StoreTxn) -> Result<BTreeSet<DeviceKey>, StoreError> {
    let mut set = BTreeSet::new();
    for request in txn.load_pending_requests()? {
        if let PendingKind::KeysClaim { devices } = request.kind {
            set.extend(devices);
        }
    }
    Ok(set)
}

/// What [`needing_session`] found.
pub(crate) struct Needing {
    /// The devices to claim for.
    pub(crate) devices: Vec<DeviceKey>,
    /// No device was left out for now only (backing off, or its claim in
    /// flight): the answer holds until a device record changes.
    pub(crate) settled: bool,
}

/// Picks the devices that need a session: none yet (CLM-03: never claim
/// for a device that has one) or a broken one (REC-01); not blocked, not
/// backing off, not already being claimed.
pub(crate) fn needing_session(
    txn: &mut impl StoreTxn,
    known: &KnownSessions,
    devices: &[&DeviceRecord],
    now: Timestamp,
) -> Result<Needing, StoreError> {
    let busy = in_flight(txn)?;
    let mut out = Vec::new();
    let mut settled = true;
    // Runs before every message for every device of the room: IDs are
    // copied only for a device that needs a claim, or to look one up
    // among claims in flight.
    let claiming = |record: &DeviceRecord| {
        !busy.is_empty() && busy.contains(&(record.user_id.clone(), record.device_id.clone()))
    };
    for record in devices {
        if record.local.blocked {
            continue;
        }
        if !backoff::ready(record.local.claim_retry_at_ms, now) || claiming(record) {
            settled = false;
            continue;
        }
        // The record's key is the verified key's own encoding.
        if record.local.wants_new_session || !known.exists(txn, &record.curve25519)? {
            out.push((record.user_id.clone(), record.device_id.clone()));
        }
    }
    Ok(Needing {
        devices: out,
        settled,
    })
}

/// Makes `/keys/claim` requests for `devices`, in chunks of users.
pub(crate) fn plan_claims(
    txn: &mut impl StoreTxn,
    devices: Vec<DeviceKey>,
    next_seq: &mut u64,
) -> Result<Vec<PendingRequest>, StoreError> {
    let mut by_user: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>> = BTreeMap::new();
    for (user, device) in devices {
        by_user.entry(user).or_default().push(device);
    }
    let users: Vec<_> = by_user.into_iter().collect();
    let mut requests = Vec::new();
    for chunk in users.chunks(CLAIM_CHUNK) {
        let mut body = Map::new();
        let mut listed = Vec::new();
        for (user, devices) in chunk {
            let mut per_device = Map::new();
            for device in devices {
                per_device.insert(device.to_string(), json!(SIGNED_CURVE25519));
                listed.push((user.clone(), device.clone()));
            }
            body.insert(user.to_string(), Value::Object(per_device));
        }
        let request = PendingRequest {
            request_id: new_request_id(),
            kind: PendingKind::KeysClaim { devices: listed },
            body: json!({"one_time_keys": body, "timeout": 10_000})
                .to_string()
                .into(),
            seq: *next_seq,
        };
        *next_seq += 1;
        txn.save_pending_request(&request)?;
        requests.push(request);
    }
    Ok(requests)
}

/// A `/keys/claim` response: each device's keys kept as received text,
/// parsed on the core that checks them.
#[derive(Deserialize)]
pub(crate) struct ClaimResponse<'a> {
    #[serde(default, borrow)]
    one_time_keys: BTreeMap<String, BTreeMap<String, &'a RawValue>>,
}

impl ClaimResponse<'_> {
    /// One device's claimed keys, parsed.
    fn device(&self, user: &str, device: &str) -> Option<Value> {
        let raw = self.one_time_keys.get(user)?.get(device)?;
        serde_json::from_str(raw.get()).ok()
    }
}

/// The claimed key object among a device's keys, if one is of the right
/// algorithm (CLM-02).
fn claimed_key(keys: &Value) -> Option<&Value> {
    keys.as_object()?
        .iter()
        .find(|(id, _)| id.starts_with(&format!("{SIGNED_CURVE25519}:")))
        .map(|(_, key)| key)
}

/// Checks one claimed key (CLM-01): signed by the device, and a key.
fn check_claimed(
    keys: &VerifiedDeviceKeys,
    ed25519: Option<vodozemac::Ed25519PublicKey>,
    key: Option<&Value>,
) -> Result<Curve25519PublicKey, ClaimFailure> {
    let key = key.ok_or(ClaimFailure::NoKey)?;
    let ed25519 = ed25519.ok_or(ClaimFailure::BadSignature)?;
    verify_json(
        key,
        keys.user_id().as_str(),
        &format!("ed25519:{}", keys.device_id()),
        &ed25519,
    )
    .map_err(|_| ClaimFailure::BadSignature)?;
    key.get("key")
        .and_then(Value::as_str)
        .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
        .ok_or(ClaimFailure::MalformedKey)
}

/// Makes the session with a checked one-time key (CLM-03).
fn establish(
    account: &Account,
    keys: &VerifiedDeviceKeys,
    otk: Curve25519PublicKey,
) -> Result<Box<vodozemac::olm::Session>, ClaimFailure> {
    account
        .create_outbound_session(SessionConfig::version_1(), keys.curve25519(), otk)
        // Boxed at once: a session is about 9 KiB, copied on every move.
        .map(Box::new)
        .map_err(|e| ClaimFailure::SessionCreation(e.to_string()))
}

/// Applies a `/keys/claim` response. Signature checks and session creation
/// run on every core; results are stored in request order.
/// The machine's caches a claim response uses.
pub(crate) struct Caches<'a> {
    pub(crate) keys: &'a crate::key_cache::KeyCache,
    pub(crate) olm: &'a OlmCache,
    pub(crate) devices: &'a DeviceCache,
    pub(crate) known: &'a KnownSessions,
}

pub(crate) fn receive_claim(
    txn: &mut impl StoreTxn,
    account: &Account,
    devices: &[DeviceKey],
    response: &ClaimResponse<'_>,
    caches: &Caches<'_>,
    now: Timestamp,
) -> Result<ClaimOutcome, StoreError> {
    let (key_cache, olm_cache) = (caches.keys, caches.olm);
    let mut work = Vec::new();
    // One batch for every user, not a load per device.
    let users: Vec<OwnedUserId> = devices
        .iter()
        .map(|(user, _)| user.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let lists: BTreeMap<OwnedUserId, UserDevices> = users
        .iter()
        .cloned()
        .zip(caches.devices.devices_of(txn, &users)?)
        .collect();
    for (user, device) in devices {
        let Some(picked) = lists
            .get(user)
            .and_then(|list| Picked::each(list).find(|p| &p.record().device_id == device))
        else {
            continue;
        };
        let ed25519 = key_cache.get(picked.keys().ed25519_base64());
        work.push((picked, ed25519));
    }
    // Every key checked, then every session made: each pass keeps its
    // own precomputed tables in cache, where one device after another
    // through both would evict them.
    let checked: Vec<_> = work
        .par_iter()
        .map(|(picked, ed25519)| {
            let record = picked.record();
            let keys = response.device(record.user_id.as_str(), record.device_id.as_str());
            check_claimed(picked.keys(), *ed25519, keys.as_ref().and_then(claimed_key))
        })
        .collect();
    let results: Vec<_> = work
        .par_iter()
        .zip(checked)
        .map(|((picked, _), otk)| otk.and_then(|otk| establish(account, picked.keys(), otk)))
        .collect();
    let mut outcome = ClaimOutcome::default();
    // New sessions, and whether each is its device's only usable one.
    let mut created: Vec<(LiveSession, bool)> = Vec::new();
    for ((picked, _), result) in work.into_iter().zip(results) {
        let (keys, record) = (picked.keys(), picked.record());
        let id = (record.user_id.clone(), record.device_id.clone());
        // The record is copied only to save a change, which a first
        // session for a device in good standing does not make.
        let mut local = record.local.clone();
        match result {
            Ok(session) => {
                let curve = keys.curve25519().to_base64();
                let only = if local.wants_new_session {
                    // REC-01: the old sessions broke; never encrypt with them again.
                    for mut old in sessions::load(txn, &curve)? {
                        old.retired = true;
                        txn.save_olm_session(old.to_record()?)?;
                    }
                    true
                } else {
                    // Normally none (CLM-03); a pre-key message may have
                    // made one since the claim was planned.
                    !caches.known.exists(txn, &curve)?
                };
                created.push((LiveSession::new(session, curve, now.0), only));
                local.claim_failures = 0;
                local.claim_retry_at_ms = None;
                // WHD-03: a new session allows a later `m.no_olm` again.
                local.no_olm_sent = false;
                if local.wants_new_session {
                    local.wants_new_session = false;
                    crate::wedged::remove(txn, &id)?;
                    local.new_session_at_ms = Some(now.0);
                    outcome.replaced.push(id.clone());
                }
                if local != record.local {
                    txn.save_device(&DeviceRecord {
                        local,
                        ..record.clone()
                    })?;
                }
                outcome.created.push(id);
            }
            Err(failure) => {
                tracing::warn!(user = %id.0, device = %id.1, %failure, "no Olm session");
                local.claim_failures += 1;
                local.claim_retry_at_ms = Some(backoff::retry_at(now, local.claim_failures));
                txn.save_device(&DeviceRecord {
                    local,
                    ..record.clone()
                })?;
                outcome.failed.push((id.0, id.1, failure));
            }
        }
    }
    // One batch, so the next send finds the sessions in the cache.
    let keys: Vec<String> = created.iter().map(|(s, _)| s.sender_key.clone()).collect();
    let taken = olm_cache.take(txn, &keys)?;
    let records: Vec<_> = created
        .par_iter()
        .map(|(s, _)| s.to_record())
        .collect::<Result<_, _>>()?;
    txn.save_olm_sessions(records)?;
    // A key claimed twice (two devices showing one identity key) has
    // two new sessions: leave the choice to the store.
    let mut seen = BTreeMap::new();
    for key in &keys {
        *seen.entry(key.as_str()).or_insert(0) += 1;
    }
    let usable = created
        .into_iter()
        .filter(|(s, only)| *only && seen.get(s.sender_key.as_str()) == Some(&1))
        .map(|(s, _)| s)
        .collect();
    olm_cache.keep(txn, &taken, usable)?;
    Ok(outcome)
}

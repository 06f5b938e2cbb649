//! Device tracking (TRK-01..13): which users we follow, when their device
//! lists are outdated, the `/keys/query` requests that refresh them, and
//! the checks every returned device passes before it is stored.

use crate::backoff;
use crate::device_keys::{DeviceKeysError, VerifiedDeviceKeys, verify_received_device_keys};
use crate::requests::new_request_id;
use crate::store::{DeviceRecord, PendingKind, PendingRequest, StoreError, StoreTxn, TrackedUser};
use crate::time::Timestamp;
use ruma::{DeviceId, OwnedUserId, UserId};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Users per `/keys/query` request.
pub(crate) const QUERY_CHUNK: usize = 250;

/// A device the server listed that failed its checks, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedDevice {
    /// The user it was listed under.
    pub user_id: OwnedUserId,
    /// The device ID it was listed under.
    pub device_id: String,
    /// Why it was refused.
    pub reason: DeviceRejection,
}

/// Why a listed device was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceRejection {
    /// TRK-06/TRK-07: bad signature, mismatched IDs or malformed keys.
    Invalid(crate::device_keys::DeviceKeysError),
    /// TRK-08: a known device ID with different keys; the old keys stay.
    KeysChanged,
}

/// What a `/keys/query` response changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryOutcome {
    /// Users whose device lists are now current.
    pub updated: Vec<OwnedUserId>,
    /// Users whose servers failed; they stay outdated (TRK-11).
    pub failed: Vec<OwnedUserId>,
    /// Devices that were refused.
    pub rejected: Vec<RejectedDevice>,
    /// TRK-10: the server does not list our own device.
    pub own_device_missing: bool,
    /// TRK-10: the server lists other keys for our own device.
    pub own_device_mismatch: bool,
}

/// Starts tracking users; new ones are outdated until queried (TRK-01).
pub(crate) fn track(txn: &mut impl StoreTxn, users: &[OwnedUserId]) -> Result<(), StoreError> {
    for user in &txn.untracked_users(users)? {
        match txn.load_tracked_user(user)? {
            Some(existing) if existing.tracked => {}
            Some(mut existing) => {
                existing.tracked = true;
                mark_outdated(&mut existing);
                txn.save_tracked_user(&existing)?;
            }
            None => txn.save_tracked_user(&TrackedUser::new(user.clone()))?,
        }
    }
    Ok(())
}

fn mark_outdated(user: &mut TrackedUser) {
    user.outdated = true;
    user.generation += 1;
}

/// `device_lists.changed` (TRK-02) and `left` (TRK-05).
pub(crate) fn apply_device_list_changes(
    txn: &mut impl StoreTxn,
    changed: &[OwnedUserId],
    left: &[OwnedUserId],
) -> Result<(), StoreError> {
    for user in changed {
        if let Some(mut tracked) = txn.load_tracked_user(user)?
            && tracked.tracked
        {
            mark_outdated(&mut tracked);
            // A change is news: retry a failing server at once.
            tracked.retry_at_ms = None;
            txn.save_tracked_user(&tracked)?;
        }
    }
    for user in left {
        if let Some(mut tracked) = txn.load_tracked_user(user)? {
            tracked.tracked = false;
            tracked.outdated = false;
            txn.save_tracked_user(&tracked)?;
        }
    }
    Ok(())
}

/// Makes `/keys/query` requests for outdated users that have none in
/// flight and are not backing off, in chunks.
pub(crate) fn plan_queries(
    txn: &mut impl StoreTxn,
    now: Timestamp,
    next_seq: &mut u64,
) -> Result<Vec<PendingRequest>, StoreError> {
    // Only tracked, outdated users are read (the store's contract): this
    // runs on every call for outgoing requests, and most are up to date.
    let mut due: Vec<TrackedUser> = txn
        .load_outdated_users()?
        .into_iter()
        .filter(|u| u.query_in_flight.is_none() && backoff::ready(u.retry_at_ms, now))
        .collect();
    let mut requests = Vec::new();
    for chunk in due.chunks_mut(QUERY_CHUNK) {
        let request_id = new_request_id();
        let mut users = BTreeMap::new();
        let mut body = serde_json::Map::new();
        for user in chunk.iter_mut() {
            users.insert(user.user_id.clone(), user.generation);
            body.insert(user.user_id.to_string(), json!([]));
            user.query_in_flight = Some(request_id.clone());
            txn.save_tracked_user(user)?;
        }
        let request = PendingRequest {
            request_id,
            kind: PendingKind::KeysQuery { users },
            body: json!({"device_keys": body, "timeout": 10_000})
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

/// Our own identity, for TRK-10.
pub(crate) struct Own<'a> {
    pub(crate) user_id: &'a UserId,
    pub(crate) device_id: &'a DeviceId,
    pub(crate) ed25519: &'a str,
    pub(crate) curve25519: &'a str,
}

/// One user's listed devices: each object as received text, parsed on
/// the core that checks it (and kept as it came, SIG-07).
type Listed<'a> = BTreeMap<String, &'a RawValue>;

/// A `/keys/query` response, read in one pass without building a tree of
/// every device's keys on the thread that applies it.
#[derive(Deserialize)]
pub(crate) struct QueryResponse<'a> {
    #[serde(default, borrow)]
    device_keys: BTreeMap<String, Listed<'a>>,
    #[serde(default)]
    failures: BTreeMap<String, IgnoredAny>,
}

impl<'a> QueryResponse<'a> {
    /// TRK-11: the user's server did not answer.
    fn failed(&self, user_id: &UserId) -> bool {
        self.failures.contains_key(user_id.server_name().as_str())
    }

    fn listed(&self, user_id: &UserId) -> Option<&Listed<'a>> {
        self.device_keys.get(user_id.as_str())
    }
}

/// Applies a `/keys/query` response for the users of one request.
pub(crate) fn receive_query(
    txn: &mut impl StoreTxn,
    users: &BTreeMap<OwnedUserId, u64>,
    response: &QueryResponse<'_>,
    own: &Own<'_>,
    caches: (
        &crate::key_cache::KeyCache,
        &crate::device_cache::DeviceCache,
    ),
    now: Timestamp,
) -> Result<QueryOutcome, StoreError> {
    let (keys, device_cache) = caches;
    let mut outcome = QueryOutcome::default();
    let mut checked = check_all(users, response, own);
    let before = device_cache.before_saves(txn)?;
    let mut lists = Vec::new();
    for (user_id, generation) in users {
        let Some(mut tracked) = txn.load_tracked_user(user_id)? else {
            continue;
        };
        if tracked.query_in_flight.is_some() {
            tracked.query_in_flight = None;
        }
        if response.failed(user_id) {
            // TRK-11: keep the user outdated, back off, block nobody else.
            tracked.failures += 1;
            tracked.retry_at_ms = Some(backoff::retry_at(now, tracked.failures));
            txn.save_tracked_user(&tracked)?;
            outcome.failed.push(user_id.clone());
            continue;
        }
        let listed = response.listed(user_id);
        if user_id == own.user_id {
            check_own_device(listed, own, &mut outcome);
        }
        let list = store_devices(txn, user_id, listed, own, keys, &mut checked, &mut outcome)?;
        lists.push((user_id.clone(), list));
        tracked.failures = 0;
        tracked.retry_at_ms = None;
        // TRK-04: a change that arrived while this was in flight keeps the
        // user outdated for another round.
        if tracked.generation == *generation {
            tracked.outdated = false;
        }
        txn.save_tracked_user(&tracked)?;
        outcome.updated.push(user_id.clone());
    }
    device_cache.saved(txn, before, lists)?;
    Ok(outcome)
}

/// A query request failed at the HTTP level: its users stay outdated and
/// are queried again by the next round (TRK-11's backoff is for servers
/// listed in `failures`).
pub(crate) fn query_failed(
    txn: &mut impl StoreTxn,
    users: &BTreeMap<OwnedUserId, u64>,
) -> Result<(), StoreError> {
    for user_id in users.keys() {
        if let Some(mut tracked) = txn.load_tracked_user(user_id)? {
            tracked.query_in_flight = None;
            txn.save_tracked_user(&tracked)?;
        }
    }
    Ok(())
}

fn check_own_device(listed: Option<&Listed<'_>>, own: &Own<'_>, outcome: &mut QueryOutcome) {
    let Some(raw) = listed.and_then(|l| l.get(own.device_id.as_str())) else {
        outcome.own_device_missing = true;
        return;
    };
    let json: Value = serde_json::from_str(raw.get()).unwrap_or_default();
    let keys = json.get("keys");
    let key = |alg: &str| {
        keys.and_then(|k| k.get(format!("{alg}:{}", own.device_id)))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if key("ed25519").as_deref() != Some(own.ed25519)
        || key("curve25519").as_deref() != Some(own.curve25519)
    {
        outcome.own_device_mismatch = true;
    }
}

/// A device's keys as checked: by user and device ID.
type Checked = BTreeMap<(OwnedUserId, String), Result<VerifiedDeviceKeys, DeviceKeysError>>;

/// TRK-06, TRK-07: every listed device's signature checked up front, on
/// every core; the response is then applied in order, in one thread.
fn check_all(
    users: &BTreeMap<OwnedUserId, u64>,
    response: &QueryResponse<'_>,
    own: &Own<'_>,
) -> Checked {
    use rayon::prelude::*;
    let mut work: Vec<(&UserId, &str, &RawValue)> = Vec::new();
    for user_id in users.keys() {
        if response.failed(user_id) {
            continue;
        }
        for (device_id, raw) in response.listed(user_id).into_iter().flatten() {
            if user_id == own.user_id && device_id == own.device_id.as_str() {
                continue;
            }
            work.push((user_id, device_id, raw));
        }
    }
    work.into_par_iter()
        .map(|(user_id, device_id, raw)| {
            let device: ruma::OwnedDeviceId = device_id.into();
            let result = verify_received_device_keys(user_id, &device, raw.get());
            ((user_id.to_owned(), device_id.to_owned()), result)
        })
        .collect()
}

fn store_devices(
    txn: &mut impl StoreTxn,
    user_id: &UserId,
    listed: Option<&Listed<'_>>,
    own: &Own<'_>,
    keys: &crate::key_cache::KeyCache,
    checked: &mut Checked,
    outcome: &mut QueryOutcome,
) -> Result<Vec<(VerifiedDeviceKeys, DeviceRecord)>, StoreError> {
    // The user's list as the store holds it, in its order (by device ID);
    // every save and delete below is applied here too, so it ends as the
    // store's list after them. Each device is looked up before its own
    // save: a lookup sees the stored record.
    let mut held: BTreeMap<String, (Option<VerifiedDeviceKeys>, DeviceRecord)> = txn
        .load_devices(user_id)?
        .into_iter()
        .map(|d| (d.device_id.to_string(), (None, d)))
        .collect();
    let empty = Listed::new();
    let listed = listed.unwrap_or(&empty);
    for (device_id, raw) in listed {
        if user_id == own.user_id && device_id == own.device_id.as_str() {
            continue;
        }
        let result = match checked.remove(&(user_id.to_owned(), device_id.clone())) {
            Some(result) => result,
            None => {
                let device: ruma::OwnedDeviceId = device_id.as_str().into();
                verify_received_device_keys(user_id, &device, raw.get())
            }
        };
        let verified = match result {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%user_id, %device_id, error = %e, "refusing device keys");
                outcome.rejected.push(RejectedDevice {
                    user_id: user_id.to_owned(),
                    device_id: device_id.clone(),
                    reason: DeviceRejection::Invalid(e),
                });
                continue;
            }
        };
        if let Some(parsed) = verified.parsed_ed25519() {
            keys.insert(verified.ed25519_base64(), parsed);
        }
        let mut record = verified.to_record();
        let refused = match held.get(device_id) {
            // TRK-08: never silently replace a known device's keys.
            Some((_, old))
                if old.ed25519 != record.ed25519 || old.curve25519 != record.curve25519 =>
            {
                let mut flagged = old.clone();
                flagged.local.key_change_refused = true;
                Some(flagged)
            }
            Some((_, old)) => {
                record.local = old.local.clone();
                None
            }
            None => None,
        };
        if let Some(flagged) = refused {
            tracing::warn!(%user_id, %device_id, "device keys changed; keeping the old ones");
            txn.save_device(&flagged)?;
            held.insert(device_id.clone(), (None, flagged));
            outcome.rejected.push(RejectedDevice {
                user_id: user_id.to_owned(),
                device_id: device_id.clone(),
                reason: DeviceRejection::KeysChanged,
            });
            continue;
        }
        txn.save_device(&record)?;
        held.insert(device_id.clone(), (Some(verified), record));
    }
    // Devices no longer listed go. Everything inserted above is listed.
    let gone: Vec<String> = held
        .keys()
        .filter(|id| !listed.contains_key(*id))
        .cloned()
        .collect();
    for device_id in gone {
        if let Some((_, old)) = held.remove(&device_id) {
            txn.delete_device(user_id, &old.device_id)?;
        }
    }
    // Devices kept unchanged have their keys parsed again.
    held.into_values()
        .map(|(keys, record)| match keys {
            Some(keys) => Ok((keys, record)),
            None => Ok((VerifiedDeviceKeys::from_record(&record)?, record)),
        })
        .collect()
}

/// A user's stored devices with their local state.
pub(crate) fn devices(
    txn: &mut impl StoreTxn,
    user_id: &UserId,
) -> Result<Vec<(VerifiedDeviceKeys, DeviceRecord)>, StoreError> {
    txn.load_devices(user_id)?
        .into_iter()
        .map(|record| Ok((VerifiedDeviceKeys::from_record(&record)?, record)))
        .collect()
}

/// Changes a known device's local state; returns whether it was known.
pub(crate) fn update_local(
    txn: &mut impl StoreTxn,
    user: &UserId,
    device: &DeviceId,
    change: impl FnOnce(&mut crate::store::DeviceLocal),
) -> Result<bool, StoreError> {
    let Some(mut record) = txn
        .load_devices(user)?
        .into_iter()
        .find(|d| d.device_id == device)
    else {
        return Ok(false);
    };
    change(&mut record.local);
    txn.save_device(&record)?;
    Ok(true)
}

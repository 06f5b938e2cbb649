//! Who gets a room's key: a decision per device of the room (ENC-10,
//! WHD-01), the outbound session's shared-with set walked beside them
//! (ENC-04, ENC-06a/c), and the set grown by a share.

use super::SharePolicy;
use super::room::recipient_users;
use crate::device_cache::Picked;
use crate::olm::encrypt::Sender;
use crate::store::{RoomRecord, SharedAt, SharedWith, StoreError, StoreTxn};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use std::collections::BTreeMap;

/// What a device gets.
pub(super) enum Decision {
    Share,
    Withhold(&'static str, &'static str),
}

/// A recipient device and what it gets.
pub(super) struct Decided {
    pub(super) decision: Decision,
    pub(super) picked: Picked,
}

impl Decided {
    /// The device's IDs, borrowed from the cached list.
    pub(super) fn id(&self) -> (&UserId, &DeviceId) {
        let record = self.picked.record();
        (&record.user_id, &record.device_id)
    }
}

/// The decision for one device, if it is a recipient.
pub(super) fn find<'a>(
    decided: &'a [Decided],
    user: &UserId,
    device: &DeviceId,
) -> Option<&'a Decided> {
    decided
        .binary_search_by(|d| d.id().cmp(&(user, device)))
        .ok()
        .and_then(|at| decided.get(at))
}

/// ENC-10: each recipient device and whether it gets the key, sorted by
/// user and device. This runs before every message, for every device in
/// the room: IDs are borrowed from the cached lists and looked up by
/// binary search, not copied into maps.
pub(super) fn decide(
    txn: &mut impl StoreTxn,
    room: &RoomRecord,
    sender: &Sender<'_>,
    policy: SharePolicy,
) -> Result<Vec<Decided>, StoreError> {
    let mut out = Vec::new();
    let users = recipient_users(room);
    // One batch for the room, from the cache when it is current.
    for list in sender.devices.devices_of(txn, &users)? {
        for picked in Picked::each(&list) {
            let (keys, record) = (picked.keys(), picked.record());
            if keys.user_id() == sender.user_id && keys.device_id() == sender.device_id {
                continue;
            }
            let decision = if record.local.blocked {
                Decision::Withhold("m.blacklisted", "the device is blocked")
            } else if record.local.key_change_refused {
                Decision::Withhold("m.unverified", "the device's keys changed")
            } else if policy.only_verified && !record.local.verified {
                Decision::Withhold("m.unverified", "the device is not verified")
            } else {
                Decision::Share
            };
            out.push(Decided { decision, picked });
        }
    }
    // Users come sorted and each list in store order: usually one pass.
    out.sort_by(|a, b| a.id().cmp(&b.id()));
    Ok(out)
}

/// The shared-with set against the decisions.
pub(super) struct Walked {
    /// Per decided device, whether it has the key.
    pub(super) has: Vec<bool>,
    /// A device that had the key left, was removed or was blocked.
    pub(super) lost: bool,
}

/// Walks the shared-with set and the decisions side by side: both are
/// sorted by user, then device, so this is one pass with no lookups (it
/// runs before every message, for every device in the room).
pub(super) fn walk(decided: &[Decided], shared: &SharedWith) -> Walked {
    let mut walked = Walked {
        has: vec![false; decided.len()],
        lost: false,
    };
    let mut at = 0;
    for (user, devices) in shared {
        for device in devices.keys() {
            let key = (&**user, &**device);
            while decided.get(at).is_some_and(|d| d.id() < key) {
                at += 1;
            }
            match decided.get(at) {
                Some(d) if d.id() == key => {
                    walked.lost |= !matches!(d.decision, Decision::Share);
                    if let Some(flag) = walked.has.get_mut(at) {
                        *flag = true;
                    }
                }
                _ => walked.lost = true,
            }
        }
    }
    walked
}

/// Adds `sent_to` to the shared-with set. A new session's set is built in
/// one go from the devices grouped by user, as encrypting leaves them.
pub(super) fn record_shared(
    shared: &mut SharedWith,
    sent_to: &[(OwnedUserId, OwnedDeviceId)],
    at: SharedAt,
) {
    if shared.is_empty() {
        let mut users: Vec<(OwnedUserId, BTreeMap<OwnedDeviceId, SharedAt>)> = Vec::new();
        for (user, device) in sent_to {
            match users.last_mut() {
                Some((last, devices)) if last == user => {
                    devices.insert(device.clone(), at);
                }
                _ => users.push((user.clone(), BTreeMap::from([(device.clone(), at)]))),
            }
        }
        // Collecting keeps one entry per user: only when grouped.
        if users.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            *shared = users.into_iter().collect();
            return;
        }
    }
    for (user, device) in sent_to {
        match shared.get_mut(user) {
            Some(devices) => devices.insert(device.clone(), at),
            None => shared
                .entry(user.clone())
                .or_default()
                .insert(device.clone(), at),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(pairs: &[(&str, &str)]) -> Vec<(OwnedUserId, OwnedDeviceId)> {
        pairs
            .iter()
            .map(|(u, d)| (OwnedUserId::try_from(*u).unwrap(), (*d).into()))
            .collect()
    }

    fn flat(shared: &SharedWith) -> Vec<(String, String)> {
        shared
            .iter()
            .flat_map(|(u, ds)| ds.keys().map(move |d| (u.to_string(), d.to_string())))
            .collect()
    }

    #[test]
    fn every_device_is_recorded_grouped_or_not() {
        let at = SharedAt { index: 3 };
        let grouped = ids(&[("@a:x", "A1"), ("@a:x", "A2"), ("@b:x", "B1")]);
        let mut shared = SharedWith::new();
        record_shared(&mut shared, &grouped, at);
        assert_eq!(flat(&shared).len(), 3);
        // A user met twice apart must keep both devices.
        let apart = ids(&[("@a:x", "A1"), ("@b:x", "B1"), ("@a:x", "A2")]);
        let mut shared = SharedWith::new();
        record_shared(&mut shared, &apart, at);
        assert_eq!(
            flat(&shared),
            flat(&{
                let mut s = SharedWith::new();
                record_shared(&mut s, &grouped, at);
                s
            })
        );
        // Added to a set that has devices already.
        record_shared(&mut shared, &ids(&[("@c:x", "C1")]), at);
        assert_eq!(flat(&shared).len(), 4);
    }
}

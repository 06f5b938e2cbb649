//! The facade: routes each input to the part that owns it.
//!
//! Method taxonomy: getters take `&self` and no transaction; every input
//! (`receive_sync_changes`, `mark_request_as_sent`, `mark_request_as_failed`)
//! and every command (`update_tracked_users`, `get_missing_sessions`,
//! `encrypt_to_device`, `outgoing_requests`) takes one store transaction,
//! which the caller commits if the call succeeded.
//!
//! Call order: [`OlmMachine::open`] once per process; then for each sync
//! `receive_sync_changes`; after any input, `outgoing_requests` and send
//! them in the order given, reporting each with `mark_request_as_sent`.

use crate::account::{OwnAccount, ServerKeyCounts};
use crate::device_cache::Picked;
use crate::device_keys::VerifiedDeviceKeys;
use crate::olm::claim::{self, ClaimOutcome};
use crate::olm::decrypt::Me;
use crate::olm::encrypt::{self, EncryptOutcome, Sender};
use crate::olm::settled::Settled;
use crate::requests::OutgoingRequest;
use crate::store::{AccountState, StoreError, StoreTxn};
use crate::time::Timestamp;
use crate::to_device::{Batch, ToDeviceOutcome};
use crate::tracking::{self, Own, QueryOutcome};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value;
use vodozemac::olm::Account;

use crate::machine_types::{
    DeviceInfo, OpenError, Recipients, SyncChanges, SyncError, SyncOutcome,
};

/// The sans-I/O E2EE state machine for one device.
#[derive(Debug)]
pub struct OlmMachine {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    ed25519: String,
    curve25519: String,
    device_keys: Value,
    pub(crate) keys: crate::key_cache::KeyCache,
    pub(crate) olm: crate::olm::cache::OlmCache,
    pub(crate) inbound: crate::megolm::cache::InboundCache,
    pub(crate) devices: crate::device_cache::DeviceCache,
    pub(crate) bodies: crate::request_bodies::RequestBodies,
    /// Peers known to have a committed Olm session.
    pub(crate) known_sessions: crate::olm::known::KnownSessions,
    /// Room records from earlier inputs.
    pub(crate) rooms: crate::room_cache::RoomCache,
    /// Users known to be tracked.
    tracked: crate::tracked_cache::TrackedCache,
    /// Outbound sessions' sets from earlier inputs.
    pub(crate) outbound_sets: crate::megolm::sets_cache::SetsCache,
    /// The last recipients that needed no Olm session.
    settled: Settled,
    /// Rooms whose last key share had nothing to do.
    quiet_shares: crate::megolm::quiet::QuietShares,
    /// The account as opened, only for making outbound sessions, which
    /// use nothing but its identity keys (they never change): unpickling
    /// the stored account computes every one-time key, per claim response.
    /// Its one-time keys are stale; it is never saved.
    pub(crate) outbound_account: crate::account::IdentityOnly,
}

pub(crate) fn load(txn: &mut impl StoreTxn) -> Result<Option<OwnAccount>, StoreError> {
    Ok(txn.load_account()?.map(OwnAccount::from_record))
}

impl OlmMachine {
    /// Loads the device's account, or creates and persists a new one
    /// together with its first upload (DEV-08: persisted before sent).
    /// Our own user is tracked, so our other devices are found (TRK-10).
    pub fn open(
        txn: &mut impl StoreTxn,
        user_id: &UserId,
        device_id: &DeviceId,
        now: Timestamp,
    ) -> Result<Self, OpenError> {
        let account = match load(txn)? {
            Some(account) => {
                if account.state.user_id != user_id || account.state.device_id != device_id {
                    return Err(OpenError::WrongAccount {
                        stored_user: account.state.user_id.to_string(),
                        stored_device: account.state.device_id.to_string(),
                        user: user_id.to_string(),
                        device: device_id.to_string(),
                    });
                }
                account
            }
            None => {
                let mut state = AccountState::new(user_id, device_id);
                state.created_at_ms = Some(now.0);
                let mut account = OwnAccount {
                    inner: Account::new(),
                    state,
                };
                account.plan_upload(&ServerKeyCounts::default(), now);
                txn.save_account(&account.to_record())?;
                tracking::track(txn, &[user_id.to_owned()])?;
                account
            }
        };
        let keys = account.identity_keys();
        Ok(Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            ed25519: keys.ed25519.to_base64(),
            curve25519: keys.curve25519.to_base64(),
            device_keys: account.device_keys(),
            keys: crate::key_cache::KeyCache::default(),
            olm: Default::default(),
            inbound: Default::default(),
            devices: Default::default(),
            bodies: Default::default(),
            known_sessions: Default::default(),
            rooms: Default::default(),
            tracked: Default::default(),
            outbound_sets: Default::default(),
            settled: Default::default(),
            quiet_shares: Default::default(),
            outbound_account: crate::account::IdentityOnly::new(account.inner),
        })
    }

    /// Our user ID.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// Our device ID.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// Our Ed25519 fingerprint key, unpadded base64.
    pub fn ed25519_key(&self) -> &str {
        &self.ed25519
    }

    /// Our Curve25519 identity key, unpadded base64.
    pub fn curve25519_key(&self) -> &str {
        &self.curve25519
    }

    /// Our signed device keys, as uploaded.
    pub fn device_keys(&self) -> &Value {
        &self.device_keys
    }

    pub(crate) fn next_request_seq(&self, txn: &mut impl StoreTxn) -> Result<u64, StoreError> {
        txn.next_pending_seq()
    }

    pub(crate) fn me(&self) -> Me<'_> {
        Me {
            user_id: self.user_id.as_str(),
            ed25519: &self.ed25519,
            curve25519: &self.curve25519,
        }
    }

    pub(crate) fn own(&self) -> Own<'_> {
        Own {
            user_id: &self.user_id,
            device_id: &self.device_id,
            ed25519: &self.ed25519,
            curve25519: &self.curve25519,
        }
    }

    pub(crate) fn sender(&self) -> Sender<'_> {
        Sender {
            user_id: self.user_id.as_str(),
            device_id: self.device_id.as_str(),
            ed25519: &self.ed25519,
            curve25519: &self.curve25519,
            device_keys: &self.device_keys,
            cache: &self.olm,
            devices: &self.devices,
            bodies: &self.bodies,
            rooms: &self.rooms,
            outbound_sets: &self.outbound_sets,
            quiet: &self.quiet_shares,
        }
    }

    /// Applies one sync: key counts, device-list changes, and its to-device
    /// events in order. Commit it in the same transaction as the sync
    /// token that acknowledges it (TD-04).
    pub fn receive_sync_changes(
        &self,
        txn: &mut impl StoreTxn,
        changes: &SyncChanges,
        now: Timestamp,
    ) -> Result<SyncOutcome, SyncError> {
        let state = txn.load_account_state()?.ok_or(SyncError::NoAccount)?;
        let counts = ServerKeyCounts::from_sync(
            changes.one_time_key_counts.as_ref(),
            changes.unused_fallback_key_types.clone(),
        );
        // The keys are unpickled only when an upload is due or a to-device
        // event may need them.
        let mut account = None;
        if OwnAccount::upload_due(&state, &counts, now) {
            let mut loaded = load(txn)?.ok_or(SyncError::NoAccount)?;
            if loaded.plan_upload(&counts, now) {
                txn.save_account(&loaded.to_record())?;
            }
            account = Some(loaded);
        }
        if changes.initial {
            // TRK-12: an initial sync reports no device-list changes.
            let everyone: Vec<OwnedUserId> = txn
                .load_tracked_users()?
                .into_iter()
                .filter(|u| u.tracked)
                .map(|u| u.user_id)
                .collect();
            tracking::apply_device_list_changes(txn, &everyone, &[])?;
        }
        tracking::apply_device_list_changes(
            txn,
            &changes.device_lists_changed,
            &changes.device_lists_left,
        )?;
        let mut batch = Batch::new(txn, self.me(), now)?;
        let mut outcome = SyncOutcome::default();
        if !changes.to_device_events.is_empty() {
            let mut account = match account {
                Some(account) => account,
                None => load(txn)?.ok_or(SyncError::NoAccount)?,
            };
            for event in &changes.to_device_events {
                if let Some(result) = batch.process(txn, &mut account, event)? {
                    outcome.to_device.push(result);
                }
            }
        }
        batch.finish(txn)?;
        self.absorb_rooms(txn, &changes.rooms, &mut outcome, now)?;
        Ok(outcome)
    }

    /// Starts following these users' devices (TRK-01).
    pub fn update_tracked_users(
        &self,
        txn: &mut impl StoreTxn,
        users: &[OwnedUserId],
    ) -> Result<(), StoreError> {
        self.tracked.track(txn, users)
    }

    /// Whether any of these users' device lists still needs a query.
    pub fn has_outdated_users(
        &self,
        txn: &mut impl StoreTxn,
        users: &[OwnedUserId],
    ) -> Result<bool, StoreError> {
        for user in users {
            if txn
                .load_tracked_user(user)?
                .is_some_and(|u| u.tracked && u.outdated)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A user's known devices (our own device excluded).
    pub fn devices(
        &self,
        txn: &mut impl StoreTxn,
        user: &UserId,
    ) -> Result<Vec<DeviceInfo>, StoreError> {
        Ok(tracking::devices(txn, user)?
            .into_iter()
            .filter(|(keys, _)| {
                !(keys.user_id() == self.user_id && keys.device_id() == self.device_id)
            })
            .map(|(keys, record)| DeviceInfo {
                keys,
                blocked: record.local.blocked,
                keys_changed: record.local.key_change_refused,
                verified: record.local.verified,
            })
            .collect())
    }

    /// Blocks or unblocks a device: a blocked device is sent nothing.
    pub fn set_blocked(
        &self,
        txn: &mut impl StoreTxn,
        user: &UserId,
        device: &DeviceId,
        blocked: bool,
    ) -> Result<bool, StoreError> {
        tracking::update_local(txn, user, device, |local| local.blocked = blocked)
    }

    /// The recipients' known, unblocked devices (our own excluded), with
    /// their records.
    fn resolve(
        &self,
        txn: &mut impl StoreTxn,
        recipients: &Recipients,
    ) -> Result<Vec<Picked>, StoreError> {
        let mut wanted: Vec<(&OwnedUserId, Option<&OwnedDeviceId>)> = match recipients {
            Recipients::Users(users) => users.iter().map(|u| (u, None)).collect(),
            Recipients::Devices(devices) => devices.iter().map(|(u, d)| (u, Some(d))).collect(),
        };
        // Grouped by user by sorting (one pass when already sorted), not
        // through a map: this runs for every send.
        wanted.sort_by(|a, b| a.0.cmp(b.0));
        let groups: Vec<&[(&OwnedUserId, Option<&OwnedDeviceId>)]> =
            wanted.chunk_by(|a, b| a.0 == b.0).collect();
        let users: Vec<OwnedUserId> = groups.iter().map(|g| g[0].0.clone()).collect();
        let lists = self.devices.devices_of(txn, &users)?;
        let mut chosen = Vec::new();
        for (group, list) in groups.iter().zip(lists) {
            for picked in Picked::each(&list) {
                let record = picked.record();
                let ours = record.user_id == self.user_id && record.device_id == self.device_id;
                let listed = group
                    .iter()
                    .any(|(_, d)| d.is_none_or(|d| *d == record.device_id));
                if listed && !ours && !record.local.blocked {
                    chosen.push(picked);
                }
            }
        }
        Ok(chosen)
    }

    /// CLM-01..04: `/keys/claim` requests for the recipients' devices that
    /// have no Olm session (and are not backing off or blocked). The
    /// requests also appear in [`Self::outgoing_requests`].
    pub fn get_missing_sessions(
        &self,
        txn: &mut impl StoreTxn,
        recipients: &Recipients,
        now: Timestamp,
    ) -> Result<Vec<OutgoingRequest>, StoreError> {
        // Before most messages the room's devices are as they were when
        // none needed a session.
        let revision = Settled::revision(txn)?;
        if self.settled.holds(revision, recipients) {
            return Ok(Vec::new());
        }
        let picked = self.resolve(txn, recipients)?;
        let devices: Vec<_> = picked.iter().map(|p| p.record()).collect();
        let mut seq = self.next_request_seq(txn)?;
        // Planned claims can be planned again.
        let planned = crate::store::redoable(txn, |txn| {
            let needed = claim::needing_session(txn, &self.known_sessions, &devices, now)?;
            if needed.devices.is_empty() && needed.settled {
                self.settled.remember(txn, revision, recipients);
            }
            claim::plan_claims(txn, needed.devices, &mut seq)
        })?;
        Ok(planned
            .into_iter()
            .map(|r| OutgoingRequest::pending(r, None))
            .collect())
    }

    /// OLM-01..03: encrypts `content` as `event_type` for every recipient
    /// device with an Olm session and queues the `/sendToDevice` requests.
    pub fn encrypt_to_device(
        &self,
        txn: &mut impl StoreTxn,
        event_type: &str,
        content: &Value,
        recipients: &Recipients,
    ) -> Result<EncryptOutcome, StoreError> {
        let picked = self.resolve(txn, recipients)?;
        let devices: Vec<&VerifiedDeviceKeys> = picked.iter().map(Picked::keys).collect();
        let mut seq = self.next_request_seq(txn)?;
        encrypt::encrypt_for_devices(
            txn,
            &self.sender(),
            event_type,
            content,
            &devices,
            None,
            &mut seq,
        )
    }
}

/// What a response produced.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ResponseOutcome {
    /// For `/keys/query`: what changed.
    pub query: Option<QueryOutcome>,
    /// For `/keys/claim`: sessions made and failures.
    pub claim: Option<ClaimOutcome>,
    /// Queued to-device events released by a device-list update (OLM-11).
    pub released: Vec<ToDeviceOutcome>,
    /// Earlier room events opened by room keys among `released`.
    pub room_events: Vec<crate::megolm::RoomEventOutcome>,
}

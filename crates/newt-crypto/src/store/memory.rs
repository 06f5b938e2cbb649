//! An in-memory store for tests and ephemeral clients.

use super::{
    AccountRecord, DeviceRecord, OlmSessionRecord, OlmSessionTimes, PendingRequest, QueuedToDevice,
    Store, StoreError, StoreTxn, TrackedUser,
};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Committed state of a [`MemoryStore`]. Pickles are kept serialised, as
/// a real store would, so a load never shares state with a save.
#[derive(Clone, Default)]
struct State {
    account: Option<(Zeroizing<String>, String)>,
    values: BTreeMap<String, String>,
    users: BTreeMap<OwnedUserId, TrackedUser>,
    devices: BTreeMap<(OwnedUserId, OwnedDeviceId), DeviceRecord>,
    sessions: BTreeMap<(String, String), (Zeroizing<String>, OlmSessionTimes)>,
    pending: BTreeMap<String, PendingRequest>,
    queued: BTreeMap<String, QueuedToDevice>,
}

/// A store that lives in memory. Transactions copy the state and write it
/// back on commit, so a dropped transaction leaves no trace.
#[derive(Default)]
pub struct MemoryStore {
    state: State,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A transaction on a [`MemoryStore`].
pub struct MemoryTxn<'a> {
    target: &'a mut State,
    working: State,
}

impl std::fmt::Debug for MemoryTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTxn").finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    type Txn<'a> = MemoryTxn<'a>;

    fn transaction(&mut self) -> Result<MemoryTxn<'_>, StoreError> {
        let working = self.state.clone();
        Ok(MemoryTxn {
            target: &mut self.state,
            working,
        })
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl StoreTxn for MemoryTxn<'_> {
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError> {
        let Some((pickle, state)) = &self.working.account else {
            return Ok(None);
        };
        Ok(Some(AccountRecord {
            pickle: serde_json::from_str(pickle).map_err(corrupt)?,
            state: serde_json::from_str(state).map_err(corrupt)?,
        }))
    }

    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        let pickle = Zeroizing::new(serde_json::to_string(&record.pickle).map_err(corrupt)?);
        let state = serde_json::to_string(&record.state).map_err(corrupt)?;
        self.working.account = Some((pickle, state));
        Ok(())
    }

    fn load_tracked_users(&mut self) -> Result<Vec<TrackedUser>, StoreError> {
        Ok(self.working.users.values().cloned().collect())
    }

    fn load_tracked_user(&mut self, user: &UserId) -> Result<Option<TrackedUser>, StoreError> {
        Ok(self.working.users.get(user).cloned())
    }

    fn save_tracked_user(&mut self, user: &TrackedUser) -> Result<(), StoreError> {
        self.working
            .users
            .insert(user.user_id.clone(), user.clone());
        Ok(())
    }

    fn load_devices(&mut self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        Ok(self
            .working
            .devices
            .iter()
            .filter(|((u, _), _)| u == user)
            .map(|(_, d)| d.clone())
            .collect())
    }

    fn save_device(&mut self, device: &DeviceRecord) -> Result<(), StoreError> {
        let key = (device.user_id.clone(), device.device_id.clone());
        self.working.devices.insert(key, device.clone());
        Ok(())
    }

    fn delete_device(&mut self, user: &UserId, device: &DeviceId) -> Result<(), StoreError> {
        self.working
            .devices
            .remove(&(user.to_owned(), device.to_owned()));
        Ok(())
    }

    fn load_olm_sessions(&mut self, sender_key: &str) -> Result<Vec<OlmSessionRecord>, StoreError> {
        let mut out = Vec::new();
        for ((key, id), (pickle, times)) in &self.working.sessions {
            if key == sender_key {
                out.push(OlmSessionRecord {
                    sender_key: key.clone(),
                    session_id: id.clone(),
                    pickle: serde_json::from_str(pickle).map_err(corrupt)?,
                    created_at_ms: times.created_at_ms,
                    last_received_at_ms: times.last_received_at_ms,
                });
            }
        }
        Ok(out)
    }

    fn save_olm_session(&mut self, session: &OlmSessionRecord) -> Result<(), StoreError> {
        let pickle = Zeroizing::new(serde_json::to_string(&session.pickle).map_err(corrupt)?);
        let times = OlmSessionTimes {
            created_at_ms: session.created_at_ms,
            last_received_at_ms: session.last_received_at_ms,
        };
        self.working.sessions.insert(
            (session.sender_key.clone(), session.session_id.clone()),
            (pickle, times),
        );
        Ok(())
    }

    fn load_pending_requests(&mut self) -> Result<Vec<PendingRequest>, StoreError> {
        let mut all: Vec<_> = self.working.pending.values().cloned().collect();
        all.sort_by_key(|r| r.seq);
        Ok(all)
    }

    fn save_pending_request(&mut self, request: &PendingRequest) -> Result<(), StoreError> {
        self.working
            .pending
            .insert(request.request_id.clone(), request.clone());
        Ok(())
    }

    fn delete_pending_request(&mut self, request_id: &str) -> Result<(), StoreError> {
        self.working.pending.remove(request_id);
        Ok(())
    }

    fn load_queued_to_device(&mut self) -> Result<Vec<QueuedToDevice>, StoreError> {
        let mut all: Vec<_> = self.working.queued.values().cloned().collect();
        all.sort_by_key(|q| q.seq);
        Ok(all)
    }

    fn save_queued_to_device(&mut self, event: &QueuedToDevice) -> Result<(), StoreError> {
        self.working.queued.insert(event.id.clone(), event.clone());
        Ok(())
    }

    fn delete_queued_to_device(&mut self, id: &str) -> Result<(), StoreError> {
        self.working.queued.remove(id);
        Ok(())
    }

    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.working.values.get(key).cloned())
    }

    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.working.values.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        *self.target = self.working;
        Ok(())
    }
}

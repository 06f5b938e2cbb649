//! An in-memory store for tests and ephemeral clients.

use super::{
    AccountRecord, DeviceRecord, InboundInfo, InboundRecord, IndexUse, OlmSessionRecord,
    OlmSessionTimes, OutboundRecord, OutboundState, PendingRequest, QueuedToDevice, RoomRecord,
    Store, StoreError, StoreTxn, TrackedUser, UndecryptedEvent, WithheldRecord,
};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Committed state of a [`MemoryStore`]. Pickles are kept serialised, as
/// a real store would, so a load never shares state with a save.
#[derive(Clone, Default)]
struct State {
    account: Option<(Zeroizing<Vec<u8>>, String)>,
    values: BTreeMap<String, String>,
    users: BTreeMap<OwnedUserId, TrackedUser>,
    devices: BTreeMap<(OwnedUserId, OwnedDeviceId), DeviceRecord>,
    sessions: BTreeMap<(String, String), (Zeroizing<Vec<u8>>, OlmSessionTimes)>,
    pending: BTreeMap<String, PendingRequest>,
    queued: BTreeMap<String, QueuedToDevice>,
    rooms: BTreeMap<String, RoomRecord>,
    outbound: BTreeMap<String, (String, Zeroizing<Vec<u8>>, OutboundState)>,
    inbound: BTreeMap<(String, String), (Zeroizing<Vec<u8>>, InboundInfo)>,
    indices: BTreeMap<(String, String, u32), IndexUse>,
    undecrypted: BTreeMap<(String, String), UndecryptedEvent>,
    withheld: BTreeMap<(String, String), WithheldRecord>,
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
            pickle: super::codec::decode_pickle(pickle)?,
            state: serde_json::from_str(state).map_err(corrupt)?,
        }))
    }

    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        let pickle = super::codec::encode_pickle(&record.pickle)?;
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
        // A range over the user's prefix keeps lookups O(log n).
        let start = (user.to_owned(), OwnedDeviceId::from(""));
        Ok(self
            .working
            .devices
            .range(start..)
            .take_while(|((u, _), _)| u == user)
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
        let start = (sender_key.to_owned(), String::new());
        for ((key, id), (pickle, times)) in self.working.sessions.range(start..) {
            if key != sender_key {
                break;
            }
            {
                out.push(OlmSessionRecord {
                    sender_key: key.clone(),
                    session_id: id.clone(),
                    pickle: super::codec::decode_pickle(pickle)?,
                    created_at_ms: times.created_at_ms,
                    last_received_at_ms: times.last_received_at_ms,
                    retired: times.retired,
                });
            }
        }
        Ok(out)
    }

    fn has_olm_session(&mut self, sender_key: &str) -> Result<bool, StoreError> {
        let start = (sender_key.to_owned(), String::new());
        Ok(self
            .working
            .sessions
            .range(start..)
            .next()
            .is_some_and(|((key, _), _)| key == sender_key))
    }

    fn save_olm_session(&mut self, session: &OlmSessionRecord) -> Result<(), StoreError> {
        let pickle = super::codec::encode_pickle(&session.pickle)?;
        let times = OlmSessionTimes {
            created_at_ms: session.created_at_ms,
            last_received_at_ms: session.last_received_at_ms,
            retired: session.retired,
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

    fn load_room(&mut self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.working.rooms.get(room_id).cloned())
    }

    fn save_room(&mut self, room: &RoomRecord) -> Result<(), StoreError> {
        self.working
            .rooms
            .insert(room.room_id.clone(), room.clone());
        Ok(())
    }

    fn load_outbound(&mut self, room_id: &str) -> Result<Option<OutboundRecord>, StoreError> {
        let Some((session_id, pickle, state)) = self.working.outbound.get(room_id) else {
            return Ok(None);
        };
        Ok(Some(OutboundRecord {
            room_id: room_id.to_owned(),
            session_id: session_id.clone(),
            pickle: super::codec::decode_pickle(pickle)?,
            state: state.clone(),
        }))
    }

    fn save_outbound(&mut self, session: &OutboundRecord) -> Result<(), StoreError> {
        let pickle = super::codec::encode_pickle(&session.pickle)?;
        self.working.outbound.insert(
            session.room_id.clone(),
            (session.session_id.clone(), pickle, session.state.clone()),
        );
        Ok(())
    }

    fn load_inbound(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<InboundRecord>, StoreError> {
        let Some((pickle, info)) = self
            .working
            .inbound
            .get(&(room_id.to_owned(), session_id.to_owned()))
        else {
            return Ok(None);
        };
        Ok(Some(InboundRecord {
            room_id: room_id.to_owned(),
            session_id: session_id.to_owned(),
            pickle: super::codec::decode_pickle(pickle)?,
            info: info.clone(),
        }))
    }

    fn save_inbound(&mut self, session: &InboundRecord) -> Result<(), StoreError> {
        let pickle = super::codec::encode_pickle(&session.pickle)?;
        self.working.inbound.insert(
            (session.room_id.clone(), session.session_id.clone()),
            (pickle, session.info.clone()),
        );
        Ok(())
    }

    fn load_all_inbound(&mut self) -> Result<Vec<InboundRecord>, StoreError> {
        let keys: Vec<_> = self.working.inbound.keys().cloned().collect();
        let mut out = Vec::new();
        for (room, session) in keys {
            if let Some(record) = self.load_inbound(&room, &session)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn load_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
    ) -> Result<Option<IndexUse>, StoreError> {
        Ok(self
            .working
            .indices
            .get(&(room_id.to_owned(), session_id.to_owned(), index))
            .cloned())
    }

    fn save_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
        used: &IndexUse,
    ) -> Result<(), StoreError> {
        self.working.indices.insert(
            (room_id.to_owned(), session_id.to_owned(), index),
            used.clone(),
        );
        Ok(())
    }

    fn save_undecrypted(&mut self, event: &UndecryptedEvent) -> Result<(), StoreError> {
        self.working.undecrypted.insert(
            (event.room_id.clone(), event.event_id.clone()),
            event.clone(),
        );
        Ok(())
    }

    fn load_undecrypted(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Vec<UndecryptedEvent>, StoreError> {
        let mut out: Vec<_> = self
            .working
            .undecrypted
            .values()
            .filter(|e| e.room_id == room_id && e.session_id == session_id)
            .cloned()
            .collect();
        out.sort_by_key(|e| e.received_at_ms);
        Ok(out)
    }

    fn load_undecrypted_event(
        &mut self,
        room_id: &str,
        event_id: &str,
    ) -> Result<Option<UndecryptedEvent>, StoreError> {
        Ok(self
            .working
            .undecrypted
            .get(&(room_id.to_owned(), event_id.to_owned()))
            .cloned())
    }

    fn delete_undecrypted(&mut self, room_id: &str, event_id: &str) -> Result<(), StoreError> {
        self.working
            .undecrypted
            .remove(&(room_id.to_owned(), event_id.to_owned()));
        Ok(())
    }

    fn save_withheld(&mut self, notice: &WithheldRecord) -> Result<(), StoreError> {
        self.working.withheld.insert(
            (notice.room_id.clone(), notice.session_id.clone()),
            notice.clone(),
        );
        Ok(())
    }

    fn load_withheld(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<WithheldRecord>, StoreError> {
        Ok(self
            .working
            .withheld
            .get(&(room_id.to_owned(), session_id.to_owned()))
            .cloned())
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

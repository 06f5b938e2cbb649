//! An in-memory store for tests and ephemeral clients.

use super::{
    AccountRecord, AccountState, AfterCommit, DeviceRecord, EncryptionSettings, InboundInfo,
    InboundRecord, IndexUse, OlmSessionRecord, OlmSessionTimes, OutboundHead, OutboundRecord,
    OutboundState, PendingRequest, QueuedToDevice, RoomRecord, Store, StoreError, StoreTxn,
    TrackedUser, UndecryptedEvent, WithheldRecord,
};
use crate::megolm::by_session::BySession;
use rayon::prelude::*;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// An encoded pickle with its public metadata.
type Sealed<T> = (Zeroizing<Vec<u8>>, T);

/// Committed state of a [`MemoryStore`]. Pickles are kept serialised, as
/// a real store would, so a load never shares state with a save.
#[derive(Default)]
struct State {
    account: Option<(Zeroizing<Vec<u8>>, String)>,
    values: BTreeMap<String, String>,
    users: BTreeMap<OwnedUserId, TrackedUser>,
    devices: BTreeMap<(OwnedUserId, OwnedDeviceId), DeviceRecord>,
    sessions: BTreeMap<(String, String), (OlmPickle, OlmSessionTimes)>,
    pending: BTreeMap<String, PendingRequest>,
    queued: BTreeMap<String, QueuedToDevice>,
    rooms: BTreeMap<String, RoomRecord>,
    /// The state's sets are kept apart, in `outbound_sets`.
    outbound: BTreeMap<String, (String, Zeroizing<Vec<u8>>, OutboundState)>,
    /// By room: the session they belong to, then its shared-with and
    /// withheld sets (see [`StoreTxn::load_outbound_head`]).
    outbound_sets: BTreeMap<String, (String, OutboundSets)>,
    inbound: BTreeMap<(String, String), Sealed<InboundInfo>>,
    /// By room and session, then index: a decrypted event reads and
    /// writes one, and a flat map of (room, session, index) keys compared
    /// two heap strings at every step of a large tree.
    indices: BySession<BTreeMap<u32, IndexUse>>,
    undecrypted: BTreeMap<(String, String), UndecryptedEvent>,
    withheld: BTreeMap<(String, String), WithheldRecord>,
    /// See [`StoreTxn::olm_revision`].
    olm_revision: u64,
    /// See [`StoreTxn::olm_changes_since`]: the revision each save made
    /// and the keys it touched (`None`: too many to list).
    olm_changes: Vec<(u64, Option<Vec<String>>)>,
    /// See [`StoreTxn::inbound_revision`].
    inbound_revision: u64,
    /// See [`StoreTxn::device_revision`].
    device_revision: u64,
    /// See [`StoreTxn::room_revision`].
    room_revision: u64,
    /// See [`StoreTxn::tracking_revision`].
    tracking_revision: u64,
    /// See [`StoreTxn::outbound_sets_revision`].
    outbound_sets_revision: u64,
}

/// A store that lives in memory. Transactions write in place and keep an
/// undo log, so a dropped transaction leaves no trace and a commit costs
/// nothing.
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

type Undo = Box<dyn FnOnce(&mut State) + Send>;

/// A transaction on a [`MemoryStore`].
pub struct MemoryTxn<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
    after_commit: Vec<AfterCommit>,
}

impl std::fmt::Debug for MemoryTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTxn").finish_non_exhaustive()
    }
}

impl Drop for MemoryTxn<'_> {
    fn drop(&mut self) {
        // Not committed: roll back, newest write first.
        while let Some(undo) = self.undo.pop() {
            undo(self.state);
        }
    }
}

/// Puts back what a key held before.
fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(value) => {
            map.insert(key, value);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// Writes (or removes) `key` in the table `$table`, logging the undo.
macro_rules! write {
    ($txn:expr, $table:ident, $key:expr, $value:expr) => {{
        let key = $key;
        let old = match $value {
            Some(value) => $txn.state.$table.insert(key.clone(), value),
            None => $txn.state.$table.remove(&key),
        };
        $txn.undo.push(Box::new(move |s: &mut State| {
            restore(&mut s.$table, key, old)
        }));
    }};
}

/// Log entries kept, about.
const OLM_CHANGE_ROWS: usize = 4096;

/// Sets the revision `$field` to a fresh random value, logging the undo.
macro_rules! bump {
    ($txn:expr, $field:ident) => {{
        let old = std::mem::replace(&mut $txn.state.$field, rand::random());
        $txn.undo
            .push(Box::new(move |s: &mut State| s.$field = old));
    }};
}

type OlmPickle = super::codec::Encoded<vodozemac::olm::SessionPickle>;

/// An outbound session's shared-with and withheld sets.
type OutboundSets = (super::SharedWith, super::WithheldFrom);

/// A stored Olm session made a record again; whoever uses it decodes it.
fn olm_record(
    sender_key: &str,
    session_id: &str,
    (pickle, times): &(OlmPickle, OlmSessionTimes),
) -> Result<OlmSessionRecord, StoreError> {
    Ok(OlmSessionRecord {
        sender_key: sender_key.to_owned(),
        session_id: session_id.to_owned(),
        pickle: pickle.clone(),
        created_at_ms: times.created_at_ms,
        last_received_at_ms: times.last_received_at_ms,
        retired: times.retired,
    })
}

impl Store for MemoryStore {
    type Txn<'a> = MemoryTxn<'a>;

    fn transaction(&mut self) -> Result<MemoryTxn<'_>, StoreError> {
        Ok(MemoryTxn {
            state: &mut self.state,
            undo: Vec::new(),
            after_commit: Vec::new(),
        })
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl StoreTxn for MemoryTxn<'_> {
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError> {
        let Some((pickle, state)) = &self.state.account else {
            return Ok(None);
        };
        Ok(Some(AccountRecord {
            pickle: super::codec::decode_pickle(pickle)?,
            state: serde_json::from_str(state).map_err(corrupt)?,
        }))
    }

    fn load_account_state(&mut self) -> Result<Option<AccountState>, StoreError> {
        self.state
            .account
            .as_ref()
            .map(|(_, state)| serde_json::from_str(state).map_err(corrupt))
            .transpose()
    }

    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        let pickle = super::codec::encode_pickle(&record.pickle)?;
        let state = serde_json::to_string(&record.state).map_err(corrupt)?;
        let old = self.state.account.replace((pickle, state));
        self.undo
            .push(Box::new(move |s: &mut State| s.account = old));
        Ok(())
    }

    fn load_tracked_users(&mut self) -> Result<Vec<TrackedUser>, StoreError> {
        Ok(self.state.users.values().cloned().collect())
    }

    fn load_outdated_users(&mut self) -> Result<Vec<TrackedUser>, StoreError> {
        // Filtered before copying: most users are up to date.
        Ok(self
            .state
            .users
            .values()
            .filter(|u| u.tracked && u.outdated)
            .cloned()
            .collect())
    }

    fn load_tracked_user(&mut self, user: &UserId) -> Result<Option<TrackedUser>, StoreError> {
        Ok(self.state.users.get(user).cloned())
    }

    fn save_tracked_user(&mut self, user: &TrackedUser) -> Result<(), StoreError> {
        write!(self, users, user.user_id.clone(), Some(user.clone()));
        bump!(self, tracking_revision);
        Ok(())
    }

    fn load_devices(&mut self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        // A range over the user's prefix keeps lookups O(log n).
        let start = (user.to_owned(), OwnedDeviceId::from(""));
        Ok(self
            .state
            .devices
            .range(start..)
            .take_while(|((u, _), _)| u == user)
            .map(|(_, d)| d.clone())
            .collect())
    }

    fn save_device(&mut self, device: &DeviceRecord) -> Result<(), StoreError> {
        let key = (device.user_id.clone(), device.device_id.clone());
        write!(self, devices, key, Some(device.clone()));
        bump!(self, device_revision);
        Ok(())
    }

    fn delete_device(&mut self, user: &UserId, device: &DeviceId) -> Result<(), StoreError> {
        write!(self, devices, (user.to_owned(), device.to_owned()), None);
        bump!(self, device_revision);
        Ok(())
    }

    fn device_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state.device_revision))
    }

    fn room_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state.room_revision))
    }

    fn tracking_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state.tracking_revision))
    }

    fn outbound_sets_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state.outbound_sets_revision))
    }

    fn load_olm_sessions_of(
        &mut self,
        sender_keys: &[String],
    ) -> Result<Vec<Vec<OlmSessionRecord>>, StoreError> {
        let sessions = &self.state.sessions;
        sender_keys
            .par_iter()
            .map(|sender_key| {
                let start = (sender_key.clone(), String::new());
                sessions
                    .range(start..)
                    .take_while(|((key, _), _)| key == sender_key)
                    .map(|((key, id), stored)| olm_record(key, id, stored))
                    .collect()
            })
            .collect()
    }

    fn load_olm_session(
        &mut self,
        sender_key: &str,
        session_id: &str,
    ) -> Result<Option<OlmSessionRecord>, StoreError> {
        let key = (sender_key.to_owned(), session_id.to_owned());
        self.state
            .sessions
            .get(&key)
            .map(|stored| olm_record(sender_key, session_id, stored))
            .transpose()
    }

    fn has_olm_session(&mut self, sender_key: &str) -> Result<bool, StoreError> {
        let start = (sender_key.to_owned(), String::new());
        Ok(self
            .state
            .sessions
            .range(start..)
            .next()
            .is_some_and(|((key, _), _)| key == sender_key))
    }

    fn save_olm_sessions(&mut self, sessions: Vec<OlmSessionRecord>) -> Result<(), StoreError> {
        // Listed only when few: stop counting past the bound.
        let mut keys = std::collections::BTreeSet::new();
        for session in &sessions {
            keys.insert(session.sender_key.as_str());
            if keys.len() > super::OLM_CHANGES_LISTED_MAX {
                break;
            }
        }
        let listed: Option<Vec<String>> = (keys.len() <= super::OLM_CHANGES_LISTED_MAX)
            .then(|| keys.into_iter().map(str::to_owned).collect());
        // The records are kept as given; one undo entry for the batch. A
        // session saved before is replaced in place, its key moved into
        // the undo log rather than copied.
        let mut undone = Vec::with_capacity(sessions.len());
        for session in sessions {
            let times = OlmSessionTimes {
                created_at_ms: session.created_at_ms,
                last_received_at_ms: session.last_received_at_ms,
                retired: session.retired,
            };
            let key = (session.sender_key, session.session_id);
            let value = (session.pickle, times);
            let old = match self.state.sessions.get_mut(&key) {
                Some(slot) => Some(std::mem::replace(slot, value)),
                None => self.state.sessions.insert(key.clone(), value),
            };
            undone.push((key, old));
        }
        self.undo.push(Box::new(move |s: &mut State| {
            // Newest first: a batch may name a session twice.
            for (key, old) in undone.into_iter().rev() {
                restore(&mut s.sessions, key, old);
            }
        }));
        bump!(self, olm_revision);
        let log = &mut self.state.olm_changes;
        if log.len() >= OLM_CHANGE_ROWS {
            // Rare: the undo keeps the whole log.
            let old = std::mem::take(log);
            log.extend(old[old.len() / 2..].iter().cloned());
            self.undo
                .push(Box::new(move |s: &mut State| s.olm_changes = old));
        } else {
            self.undo.push(Box::new(|s: &mut State| {
                s.olm_changes.pop();
            }));
        }
        self.state
            .olm_changes
            .push((self.state.olm_revision, listed));
        Ok(())
    }

    fn olm_changes_since(&mut self, since: u64) -> Result<Option<Vec<String>>, StoreError> {
        let log = &self.state.olm_changes;
        let Some(at) = log.iter().rposition(|(revision, _)| *revision == since) else {
            return Ok(None);
        };
        let mut changed = Vec::new();
        for (_, keys) in &log[at + 1..] {
            let Some(keys) = keys else {
                return Ok(None);
            };
            changed.extend(keys.iter().cloned());
        }
        Ok(Some(changed))
    }

    fn olm_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state.olm_revision))
    }

    fn after_commit(&mut self, f: AfterCommit) {
        self.after_commit.push(f);
    }

    fn load_pending_requests(&mut self) -> Result<Vec<PendingRequest>, StoreError> {
        let mut all: Vec<_> = self.state.pending.values().cloned().collect();
        all.sort_by_key(|r| r.seq);
        Ok(all)
    }

    fn load_pending_request(
        &mut self,
        request_id: &str,
    ) -> Result<Option<PendingRequest>, StoreError> {
        Ok(self.state.pending.get(request_id).cloned())
    }

    fn next_pending_seq(&mut self) -> Result<u64, StoreError> {
        Ok(self
            .state
            .pending
            .values()
            .map(|r| r.seq + 1)
            .max()
            .unwrap_or(0))
    }

    fn save_pending_request(&mut self, request: &PendingRequest) -> Result<(), StoreError> {
        write!(
            self,
            pending,
            request.request_id.clone(),
            Some(request.clone())
        );
        Ok(())
    }

    fn delete_pending_request(&mut self, request_id: &str) -> Result<(), StoreError> {
        write!(self, pending, request_id.to_owned(), None);
        Ok(())
    }

    fn load_queued_to_device(&mut self) -> Result<Vec<QueuedToDevice>, StoreError> {
        let mut all: Vec<_> = self.state.queued.values().cloned().collect();
        all.sort_by_key(|q| q.seq);
        Ok(all)
    }

    fn save_queued_to_device(&mut self, event: &QueuedToDevice) -> Result<(), StoreError> {
        write!(self, queued, event.id.clone(), Some(event.clone()));
        Ok(())
    }

    fn delete_queued_to_device(&mut self, id: &str) -> Result<(), StoreError> {
        write!(self, queued, id.to_owned(), None);
        Ok(())
    }

    fn load_room(&mut self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.state.rooms.get(room_id).cloned())
    }

    fn save_room(&mut self, room: &RoomRecord) -> Result<(), StoreError> {
        write!(self, rooms, room.room_id.clone(), Some(room.clone()));
        bump!(self, room_revision);
        Ok(())
    }

    fn load_room_encryption(
        &mut self,
        room_id: &str,
    ) -> Result<Option<EncryptionSettings>, StoreError> {
        // Not a clone of the members.
        Ok(self
            .state
            .rooms
            .get(room_id)
            .and_then(|room| room.encryption.clone()))
    }

    fn load_outbound(&mut self, room_id: &str) -> Result<Option<OutboundRecord>, StoreError> {
        let Some(head) = self.load_outbound_head(room_id)? else {
            return Ok(None);
        };
        let mut state = head.state;
        if let Some((session_id, (shared_with, withheld))) = self.state.outbound_sets.get(room_id)
            && *session_id == head.session_id
        {
            state.shared_with = shared_with.clone();
            state.withheld = withheld.clone();
        }
        Ok(Some(OutboundRecord {
            room_id: head.room_id,
            session_id: head.session_id,
            pickle: head.pickle,
            state,
        }))
    }

    fn save_outbound(&mut self, session: &OutboundRecord) -> Result<(), StoreError> {
        let sets = (
            session.state.shared_with.clone(),
            session.state.withheld.clone(),
        );
        let room_id = session.room_id.clone();
        write!(
            self,
            outbound_sets,
            room_id.clone(),
            Some((session.session_id.clone(), sets))
        );
        let pickle = super::codec::encode_pickle(&session.pickle)?;
        let head = (
            session.session_id.clone(),
            pickle,
            session.state.without_sets(),
        );
        write!(self, outbound, room_id, Some(head));
        bump!(self, outbound_sets_revision);
        Ok(())
    }

    fn load_outbound_head(&mut self, room_id: &str) -> Result<Option<OutboundHead>, StoreError> {
        let Some((session_id, pickle, state)) = self.state.outbound.get(room_id) else {
            return Ok(None);
        };
        Ok(Some(OutboundHead {
            room_id: room_id.to_owned(),
            session_id: session_id.clone(),
            pickle: super::codec::decode_pickle(pickle)?,
            state: state.clone(),
        }))
    }

    fn save_outbound_head(&mut self, head: OutboundHead) -> Result<(), StoreError> {
        let pickle = super::codec::encode_pickle(&head.pickle)?;
        // The sets stay in `outbound_sets`: the head is stored without them.
        let state = head.state.without_sets();
        write!(
            self,
            outbound,
            head.room_id,
            Some((head.session_id, pickle, state))
        );
        Ok(())
    }

    fn load_inbound(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<InboundRecord>, StoreError> {
        let Some((pickle, info)) = self
            .state
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
        let key = (session.room_id.clone(), session.session_id.clone());
        write!(self, inbound, key, Some((pickle, session.info.clone())));
        bump!(self, inbound_revision);
        Ok(())
    }

    fn inbound_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state.inbound_revision))
    }

    fn load_all_inbound(&mut self) -> Result<Vec<InboundRecord>, StoreError> {
        let keys: Vec<_> = self.state.inbound.keys().cloned().collect();
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
            .state
            .indices
            .get(room_id, session_id)
            .and_then(|uses| uses.get(&index))
            .cloned())
    }

    fn save_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
        used: &IndexUse,
    ) -> Result<(), StoreError> {
        let indices = &mut self.state.indices;
        let old = match indices.get_mut(room_id, session_id) {
            Some(uses) => uses.insert(index, used.clone()),
            None => {
                indices.insert(room_id, session_id, BTreeMap::from([(index, used.clone())]));
                None
            }
        };
        let (room_id, session_id) = (room_id.to_owned(), session_id.to_owned());
        self.undo.push(Box::new(move |s: &mut State| {
            if let Some(uses) = s.indices.get_mut(&room_id, &session_id) {
                restore(uses, index, old);
            }
        }));
        Ok(())
    }

    fn save_undecrypted(&mut self, event: &UndecryptedEvent) -> Result<(), StoreError> {
        write!(
            self,
            undecrypted,
            (event.room_id.clone(), event.event_id.clone()),
            Some(event.clone())
        );
        Ok(())
    }

    fn load_undecrypted(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Vec<UndecryptedEvent>, StoreError> {
        let mut out: Vec<_> = self
            .state
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
            .state
            .undecrypted
            .get(&(room_id.to_owned(), event_id.to_owned()))
            .cloned())
    }

    fn delete_undecrypted(&mut self, room_id: &str, event_id: &str) -> Result<(), StoreError> {
        write!(
            self,
            undecrypted,
            (room_id.to_owned(), event_id.to_owned()),
            None
        );
        Ok(())
    }

    fn save_withheld(&mut self, notice: &WithheldRecord) -> Result<(), StoreError> {
        write!(
            self,
            withheld,
            (notice.room_id.clone(), notice.session_id.clone()),
            Some(notice.clone())
        );
        Ok(())
    }

    fn load_withheld(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<WithheldRecord>, StoreError> {
        Ok(self
            .state
            .withheld
            .get(&(room_id.to_owned(), session_id.to_owned()))
            .cloned())
    }

    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state.values.get(key).cloned())
    }

    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        write!(self, values, key.to_owned(), Some(value.to_owned()));
        Ok(())
    }

    fn commit(mut self) -> Result<(), StoreError> {
        // Keep every write: nothing to undo.
        self.undo.clear();
        for f in std::mem::take(&mut self.after_commit) {
            f();
        }
        Ok(())
    }
}

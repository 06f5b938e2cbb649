//! Storage seen from the state machine: one transaction per input.
//!
//! The machine never opens, commits or rolls back: the caller begins a
//! transaction, hands it to one `handle_*` call or command, and commits it
//! if the call succeeded. Dropping an uncommitted transaction rolls it back.

pub mod codec;
mod memory;
mod msgpack;
mod records;
mod room_records;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use memory::{MemoryStore, MemoryTxn};
pub use room_records::{
    EncryptionSettings, InboundInfo, InboundRecord, IndexUse, KeySource, Membership, OutboundHead,
    OutboundRecord, OutboundState, RoomRecord, SharedAt, SharedWith, UndecryptedEvent,
    WithheldFrom, WithheldRecord,
};

pub use records::{
    AccountRecord, AccountState, DeviceLocal, DeviceRecord, OlmSessionRecord, OlmSessionTimes,
    PendingKind, PendingRequest, PendingUpload, QueuedToDevice, TrackedUser,
};
use ruma::{DeviceId, OwnedUserId, UserId};
use std::collections::BTreeMap;

/// A storage failure. The input that hit it must be retried or dropped as a
/// whole; nothing was committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, SQL, locking).
    #[error("store backend failed: {0}")]
    Backend(String),
    /// A stored secret could not be decrypted: wrong store key or tampering.
    #[error("stored secret could not be decrypted (wrong store key?)")]
    Decryption,
    /// A stored value could not be decoded.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// Work to run once a transaction has committed.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// A store: something that can begin a transaction.
pub trait Store {
    /// The transaction type.
    type Txn<'a>: StoreTxn
    where
        Self: 'a;

    /// Begins a transaction. Writes become visible only on commit.
    fn transaction(&mut self) -> Result<Self::Txn<'_>, StoreError>;
}

/// Everything the machine reads or writes, inside one transaction.
///
/// Each fact has exactly one place: the account (with its upload state),
/// tracked users, devices, Olm sessions, pending requests, queued
/// to-device events, and small named values for driver bookkeeping such
/// as the sync token.
/// A store lists at most this many sender keys per Olm save in
/// [`StoreTxn::olm_changes_since`]; a save of more counts as "everything
/// changed" (large saves are one's own sends, which the cache knows).
pub const OLM_CHANGES_LISTED_MAX: usize = 32;

pub trait StoreTxn {
    /// The account, if one was created.
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError>;
    /// The account's public state alone. Stores override this to skip
    /// decrypting the keys.
    fn load_account_state(&mut self) -> Result<Option<AccountState>, StoreError> {
        Ok(self.load_account()?.map(|a| a.state))
    }
    /// Replaces the account. The pickle is a secret: stores encrypt it.
    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError>;

    /// Every user with a tracking record.
    fn load_tracked_users(&mut self) -> Result<Vec<TrackedUser>, StoreError>;
    /// The tracked users marked outdated: what planning `/keys/query`
    /// (TRK-01) reads on every call for outgoing requests. The default
    /// reads every record; stores should read only these.
    fn load_outdated_users(&mut self) -> Result<Vec<TrackedUser>, StoreError> {
        let mut users = self.load_tracked_users()?;
        users.retain(|u| u.tracked && u.outdated);
        Ok(users)
    }
    /// One user's tracking record.
    fn load_tracked_user(&mut self, user: &UserId) -> Result<Option<TrackedUser>, StoreError>;
    /// Inserts or replaces a tracking record.
    fn save_tracked_user(&mut self, user: &TrackedUser) -> Result<(), StoreError>;
    /// Those of `users` not tracked (no record, or not `tracked`), in
    /// their order: a room's members are tracked before every message,
    /// and nearly all already are. Stores override this to check them in
    /// one query without decoding records.
    fn untracked_users(&mut self, users: &[OwnedUserId]) -> Result<Vec<OwnedUserId>, StoreError> {
        let mut out = Vec::new();
        for user in users {
            if !self.load_tracked_user(user)?.is_some_and(|u| u.tracked) {
                out.push(user.clone());
            }
        }
        Ok(out)
    }

    /// A user's devices.
    fn load_devices(&mut self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError>;
    /// The devices of each user, in the order of `users`. Stores override
    /// this to decode on every core.
    fn load_devices_of(
        &mut self,
        users: &[OwnedUserId],
    ) -> Result<Vec<Vec<DeviceRecord>>, StoreError> {
        users.iter().map(|user| self.load_devices(user)).collect()
    }
    /// Inserts or replaces a device.
    fn save_device(&mut self, device: &DeviceRecord) -> Result<(), StoreError>;
    /// Removes a device the server no longer lists.
    fn delete_device(&mut self, user: &UserId, device: &DeviceId) -> Result<(), StoreError>;

    /// Every Olm session of each sender key (a device's Curve25519 key), in
    /// the order of `sender_keys`. Batched, so stores can open them on
    /// every core. Pickles stay encoded: the machine decodes what it uses.
    fn load_olm_sessions_of(
        &mut self,
        sender_keys: &[String],
    ) -> Result<Vec<Vec<OlmSessionRecord>>, StoreError>;
    /// Olm sessions with the device whose Curve25519 key is `sender_key`.
    fn load_olm_sessions(&mut self, sender_key: &str) -> Result<Vec<OlmSessionRecord>, StoreError> {
        Ok(self
            .load_olm_sessions_of(&[sender_key.to_owned()])?
            .pop()
            .unwrap_or_default())
    }
    /// The Olm session `session_id` with `sender_key`, if stored. A
    /// pre-key message names its session, so only that one is decoded.
    /// Stores override this to avoid loading the others.
    fn load_olm_session(
        &mut self,
        sender_key: &str,
        session_id: &str,
    ) -> Result<Option<OlmSessionRecord>, StoreError> {
        Ok(self
            .load_olm_sessions(sender_key)?
            .into_iter()
            .find(|s| s.session_id == session_id))
    }
    /// Whether any Olm session with `sender_key` exists. Stores override
    /// this to avoid loading the sessions.
    fn has_olm_session(&mut self, sender_key: &str) -> Result<bool, StoreError> {
        Ok(!self.load_olm_sessions(sender_key)?.is_empty())
    }
    /// Inserts or replaces Olm sessions (by sender key and session ID).
    /// Batched, so stores can seal on every core; given, so a store that
    /// keeps records as they are need not copy them. Pickles come encoded:
    /// keep their bytes (encrypted at rest) and return them unchanged.
    fn save_olm_sessions(&mut self, sessions: Vec<OlmSessionRecord>) -> Result<(), StoreError>;
    /// Inserts or replaces one Olm session.
    fn save_olm_session(&mut self, session: OlmSessionRecord) -> Result<(), StoreError> {
        self.save_olm_sessions(vec![session])
    }
    /// A value that changes, to a fresh random one, whenever any Olm
    /// session is saved, by any process, and rolls back with the
    /// transaction. Live sessions cached above the store are used only
    /// while it is unchanged. `None` (the default): not tracked, nothing
    /// is cached.
    fn olm_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// The sender keys whose Olm sessions were saved since the store
    /// showed Olm revision `since` (this transaction's saves included), so
    /// a cache can drop just those; `None` when that is not known (long
    /// ago, too many keys to list, or not tracked): then drop everything.
    fn olm_changes_since(&mut self, since: u64) -> Result<Option<Vec<String>>, StoreError> {
        let _ = since;
        Ok(None)
    }
    /// Like [`Self::olm_revision`], for inbound Megolm sessions: changes
    /// with every [`Self::save_inbound`].
    fn inbound_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Like [`Self::olm_revision`], for device records: differs from every
    /// earlier value once [`Self::save_device`] or [`Self::delete_device`]
    /// ran (a store may bump it lazily, when read or at commit).
    fn device_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Like [`Self::olm_revision`], for outbound sessions' shared-with
    /// and withheld sets: changes with every [`Self::save_outbound`] (a
    /// saved head keeps the sets, and need not move it). The machine keeps
    /// the sets only while it is unchanged.
    fn outbound_sets_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Like [`Self::olm_revision`], for tracking records: changes
    /// whenever one is saved. The machine remembers who is tracked only
    /// while it is unchanged.
    fn tracking_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Like [`Self::olm_revision`], for rooms: changes whenever a room is
    /// saved. The machine keeps room records (a large room's member list)
    /// only while it is unchanged.
    fn room_revision(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Runs `f` once this transaction has committed, never if it rolls
    /// back, so caches above the store hold committed state only. The
    /// default drops `f`, which is always safe: nothing is cached.
    fn after_commit(&mut self, f: AfterCommit) {
        drop(f);
    }

    /// Pending requests, in creation order.
    fn load_pending_requests(&mut self) -> Result<Vec<PendingRequest>, StoreError>;
    /// The pending request `request_id`, if any. Stores override this to
    /// avoid loading every body.
    fn load_pending_request(
        &mut self,
        request_id: &str,
    ) -> Result<Option<PendingRequest>, StoreError> {
        Ok(self
            .load_pending_requests()?
            .into_iter()
            .find(|r| r.request_id == request_id))
    }
    /// Pending requests in creation order, like
    /// [`StoreTxn::load_pending_requests`], except that a request whose ID
    /// `held` accepts may come with an empty body: the caller holds it
    /// (bodies never change). Stores override this to skip reading them.
    fn load_pending_requests_except(
        &mut self,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let _ = held;
        self.load_pending_requests()
    }
    /// The pending request `request_id`, whose body may be left empty.
    /// Stores override this to skip reading a body nobody needs.
    fn load_pending_request_meta(
        &mut self,
        request_id: &str,
    ) -> Result<Option<PendingRequest>, StoreError> {
        self.load_pending_request(request_id)
    }
    /// One more than the highest `seq` of a pending request, 0 if none.
    /// Stores override this to avoid loading every body.
    fn next_pending_seq(&mut self) -> Result<u64, StoreError> {
        Ok(self
            .load_pending_requests()?
            .iter()
            .map(|r| r.seq + 1)
            .max()
            .unwrap_or(0))
    }
    /// Inserts a pending request.
    fn save_pending_request(&mut self, request: &PendingRequest) -> Result<(), StoreError>;
    /// Removes an answered pending request.
    fn delete_pending_request(&mut self, request_id: &str) -> Result<(), StoreError>;

    /// Queued to-device events, in arrival order (OLM-11, OLM-12).
    fn load_queued_to_device(&mut self) -> Result<Vec<QueuedToDevice>, StoreError>;
    /// Queues a to-device event. The plaintext is secret.
    fn save_queued_to_device(&mut self, event: &QueuedToDevice) -> Result<(), StoreError>;
    /// Removes a queued event.
    fn delete_queued_to_device(&mut self, id: &str) -> Result<(), StoreError>;
    /// A room's state, as far as encryption needs it.
    fn load_room(&mut self, room_id: &str) -> Result<Option<RoomRecord>, StoreError>;
    /// Inserts or replaces a room.
    fn save_room(&mut self, room: &RoomRecord) -> Result<(), StoreError>;
    /// A room's encryption settings alone (`None`: unknown room, or not
    /// encrypted): what encrypting each room event reads. Stores keep
    /// them apart from the members so that this does not read a large
    /// room's member list; the default loads the whole room.
    fn load_room_encryption(
        &mut self,
        room_id: &str,
    ) -> Result<Option<EncryptionSettings>, StoreError> {
        Ok(self.load_room(room_id)?.and_then(|room| room.encryption))
    }

    /// The room's current outbound Megolm session.
    fn load_outbound(&mut self, room_id: &str) -> Result<Option<OutboundRecord>, StoreError>;
    /// Replaces the room's outbound session. The pickle is secret.
    fn save_outbound(&mut self, session: &OutboundRecord) -> Result<(), StoreError>;
    /// The room's outbound session without its shared-with and withheld
    /// sets: what encrypting each room event reads. Stores keep the sets
    /// apart so that this does not read them; the default loads them and
    /// leaves them out.
    fn load_outbound_head(&mut self, room_id: &str) -> Result<Option<OutboundHead>, StoreError> {
        Ok(self.load_outbound(room_id)?.map(|record| OutboundHead {
            room_id: record.room_id,
            session_id: record.session_id,
            pickle: record.pickle,
            state: OutboundState {
                shared_with: BTreeMap::new(),
                withheld: BTreeMap::new(),
                ..record.state
            },
        }))
    }
    /// Saves a head loaded by [`Self::load_outbound_head`], keeping the
    /// stored sets of its session (none if another session is stored).
    /// The default rewrites the whole record.
    fn save_outbound_head(&mut self, head: OutboundHead) -> Result<(), StoreError> {
        let (shared_with, withheld) = match self.load_outbound(&head.room_id)? {
            Some(stored) if stored.session_id == head.session_id => {
                (stored.state.shared_with, stored.state.withheld)
            }
            _ => Default::default(),
        };
        self.save_outbound(&OutboundRecord {
            room_id: head.room_id,
            session_id: head.session_id,
            pickle: head.pickle,
            state: OutboundState {
                shared_with,
                withheld,
                ..head.state
            },
        })
    }

    /// An inbound Megolm session by `(room_id, session_id)` (MEG-05).
    fn load_inbound(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<InboundRecord>, StoreError>;
    /// Inserts or replaces an inbound session. The pickle is secret.
    fn save_inbound(&mut self, session: &InboundRecord) -> Result<(), StoreError>;
    /// Every inbound session (for key export).
    fn load_all_inbound(&mut self) -> Result<Vec<InboundRecord>, StoreError>;

    /// The event that used a message index, if any (MEG-08).
    fn load_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
    ) -> Result<Option<IndexUse>, StoreError>;
    /// The recorded uses among `indices` of one session (MEG-08), for a
    /// batch of events. Stores override this to ask once.
    fn load_index_uses(
        &mut self,
        room_id: &str,
        session_id: &str,
        indices: &[u32],
    ) -> Result<Vec<(u32, IndexUse)>, StoreError> {
        let mut found = Vec::new();
        for &index in indices {
            if let Some(used) = self.load_index_use(room_id, session_id, index)? {
                found.push((index, used));
            }
        }
        Ok(found)
    }
    /// Records the event that used a message index.
    fn save_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
        used: &IndexUse,
    ) -> Result<(), StoreError>;
    /// Records many uses of one room's sessions, as if saved one by one in
    /// order (a later use of the same index replaces an earlier one).
    /// Stores override this to write a timeline's uses at once.
    fn save_index_uses(
        &mut self,
        room_id: &str,
        uses: &[(String, u32, IndexUse)],
    ) -> Result<(), StoreError> {
        uses.iter().try_for_each(|(session_id, index, used)| {
            self.save_index_use(room_id, session_id, *index, used)
        })
    }

    /// Keeps an undecryptable event for a later retry (REC-05).
    fn save_undecrypted(&mut self, event: &UndecryptedEvent) -> Result<(), StoreError>;
    /// Undecryptable events waiting for one session.
    fn load_undecrypted(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Vec<UndecryptedEvent>, StoreError>;
    /// One undecryptable event by ID.
    fn load_undecrypted_event(
        &mut self,
        room_id: &str,
        event_id: &str,
    ) -> Result<Option<UndecryptedEvent>, StoreError>;
    /// Forgets an undecryptable event (it decrypted).
    fn delete_undecrypted(&mut self, room_id: &str, event_id: &str) -> Result<(), StoreError>;

    /// Records a withheld notice, by `(room_id, session_id)`.
    fn save_withheld(&mut self, notice: &WithheldRecord) -> Result<(), StoreError>;
    /// The withheld notice for `(room_id, session_id)`, if any.
    fn load_withheld(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<WithheldRecord>, StoreError>;

    /// A small non-secret value, such as the sync token.
    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a small non-secret value.
    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// While on, writes are ones newt can redo: a device list it can query
    /// again, a claim it can repeat, MEG-08 records of events it decrypted.
    /// A store may then let a commit holding only such writes reach the
    /// disk later, with the next durable commit (or a checkpoint), as long
    /// as commits become durable in order. Off by default; anything
    /// written with it off is durable at its commit.
    fn defer_durability(&mut self, _defer: bool) {}
    /// Commits every write of this transaction, atomically; durably unless
    /// all of them were made with [`Self::defer_durability`] on.
    fn commit(self) -> Result<(), StoreError>;
}

/// Runs `f` with [`StoreTxn::defer_durability`] on: for writes that can be
/// redone if a power loss takes them. Deferral ends however `f` returns.
pub fn redoable<T: StoreTxn, R, E>(
    txn: &mut T,
    f: impl FnOnce(&mut T) -> Result<R, E>,
) -> Result<R, E> {
    txn.defer_durability(true);
    let result = f(txn);
    txn.defer_durability(false);
    result
}

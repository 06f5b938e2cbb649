//! A store transaction on SQLite.

use crate::key::StoreKey;
use crate::revision::Covered;
use newt_crypto::ruma::{DeviceId, OwnedUserId, UserId};
use newt_crypto::store::{
    AccountRecord, AccountState, AfterCommit, DeviceRecord, InboundRecord, IndexUse,
    OlmSessionRecord, OutboundHead, OutboundRecord, PendingRequest, QueuedToDevice, RoomRecord,
    StoreError, StoreTxn, TrackedUser, UndecryptedEvent, WithheldRecord,
};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const ACCOUNT_SLOT: &str = "account:pickle";

/// Runs a statement through the connection's statement cache: preparing
/// SQL costs more than running it.
pub(crate) fn exec_cached<P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// The first row of a query through the statement cache, if any.
pub(crate) fn query_cached<P: rusqlite::Params, T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    tx.prepare_cached(sql)?.query_row(params, row).optional()
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// One SQLite transaction; dropped without [`StoreTxn::commit`], it rolls
/// back.
pub struct SqliteTxn<'a> {
    tx: Transaction<'a>,
    conn: &'a rusqlite::Connection,
    /// Which writes must be durable at commit.
    durability: crate::durability::Durability,
    key: &'a StoreKey,
    checkpointer: Option<&'a crate::checkpoint::Checkpointer>,
    after_commit: Vec<AfterCommit>,
    /// Saves not yet reflected in the revisions: each revision is bumped
    /// when next read or at commit, not once per save (a sync may save a
    /// thousand sessions or devices).
    pub(crate) unbumped: crate::revision::Unbumped,
    /// MEG-08 session IDs looked up by this transaction.
    pub(crate) session_ids: crate::index_uses::SessionIds,
}

impl std::fmt::Debug for SqliteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTxn").finish_non_exhaustive()
    }
}

impl<'a> SqliteTxn<'a> {
    pub(crate) fn new(
        tx: Transaction<'a>,
        conn: &'a rusqlite::Connection,
        key: &'a StoreKey,
        checkpointer: Option<&'a crate::checkpoint::Checkpointer>,
    ) -> Self {
        Self {
            durability: crate::durability::Durability::new(conn),
            tx,
            conn,
            key,
            checkpointer,
            after_commit: Vec::new(),
            unbumped: Default::default(),
            session_ids: Default::default(),
        }
    }

    /// Reads a named secret (for example the client's access token).
    pub fn load_secret(&mut self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let sealed: Option<Vec<u8>> = query_cached(
            &self.tx,
            "SELECT value FROM secrets WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .map_err(backend)?;
        match sealed {
            None => Ok(None),
            Some(sealed) => self
                .key
                .open(&format!("secret:{name}"), &sealed)
                .map(Some)
                .ok_or(StoreError::Decryption),
        }
    }

    /// Stores a named secret, encrypted.
    pub fn save_secret(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let sealed = self
            .key
            .seal(&format!("secret:{name}"), value)
            .ok_or_else(|| StoreError::Backend("secret too large to encrypt".into()))?;
        exec_cached(
            &self.tx,
            "INSERT INTO secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            rusqlite::params![name, sealed],
        )
        .map_err(backend)?;
        Ok(())
    }

    /// Removes a named secret.
    pub fn delete_secret(&mut self, name: &str) -> Result<(), StoreError> {
        exec_cached(&self.tx, "DELETE FROM secrets WHERE name = ?1", [name]).map_err(backend)?;
        Ok(())
    }
}

/// Public metadata of a queued event; the plaintext is sealed apart.
#[derive(Serialize, Deserialize)]
struct QueuedMeta {
    seq: u64,
    sender: newt_crypto::ruma::OwnedUserId,
    sender_key: String,
    received_at_ms: u64,
}

impl SqliteTxn<'_> {
    pub(crate) fn tx(&self) -> &Transaction<'_> {
        &self.tx
    }

    /// The store key, shared with worker threads that seal and open.
    pub(crate) fn key(&self) -> &StoreKey {
        self.key
    }

    pub(crate) fn seal_secret(&self, slot: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key
            .seal(slot, plaintext)
            .ok_or_else(|| StoreError::Backend("secret too large to encrypt".into()))
    }

    pub(crate) fn open_secret(
        &self,
        slot: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.key.open(slot, sealed).ok_or(StoreError::Decryption)
    }

    /// Rows of one JSON `data` column, decoded.
    pub(crate) fn query_json<T: serde::de::DeserializeOwned, P: rusqlite::Params>(
        &mut self,
        sql: &str,
        params: P,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.tx.prepare_cached(sql).map_err(backend)?;
        let rows = stmt
            .query_map(params, |row| row.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        rows.iter()
            .map(|data| serde_json::from_str(data).map_err(corrupt))
            .collect()
    }
}

impl StoreTxn for SqliteTxn<'_> {
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError> {
        let row: Option<(Vec<u8>, String)> = query_cached(
            &self.tx,
            "SELECT pickle, state FROM account WHERE id = 0",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(backend)?;
        let Some((sealed, state)) = row else {
            return Ok(None);
        };
        let pickle = self
            .key
            .open(ACCOUNT_SLOT, &sealed)
            .ok_or(StoreError::Decryption)?;
        Ok(Some(AccountRecord {
            pickle: newt_crypto::store::codec::decode_pickle(&pickle)?,
            state: serde_json::from_str(&state).map_err(corrupt)?,
        }))
    }

    fn load_account_state(&mut self) -> Result<Option<AccountState>, StoreError> {
        let state: Option<String> = query_cached(
            &self.tx,
            "SELECT state FROM account WHERE id = 0",
            [],
            |row| row.get(0),
        )
        .map_err(backend)?;
        state
            .map(|s| serde_json::from_str(&s).map_err(corrupt))
            .transpose()
    }

    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        let pickle = newt_crypto::store::codec::encode_pickle(&record.pickle)?;
        let sealed = self
            .key
            .seal(ACCOUNT_SLOT, &pickle)
            .ok_or_else(|| StoreError::Backend("account too large to encrypt".into()))?;
        let state = serde_json::to_string(&record.state).map_err(corrupt)?;
        exec_cached(
            &self.tx,
            "INSERT INTO account (id, pickle, state) VALUES (0, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET pickle = excluded.pickle, state = excluded.state",
            rusqlite::params![sealed, state],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn load_tracked_users(&mut self) -> Result<Vec<TrackedUser>, StoreError> {
        self.query_json("SELECT data FROM tracked_users", [])
    }

    fn load_outdated_users(&mut self) -> Result<Vec<TrackedUser>, StoreError> {
        // The partial index of schema 8: no other row is read or parsed.
        self.query_json("SELECT data FROM tracked_users WHERE outdated = 1", [])
    }

    fn load_tracked_user(&mut self, user: &UserId) -> Result<Option<TrackedUser>, StoreError> {
        Ok(self
            .query_json(
                "SELECT data FROM tracked_users WHERE user_id = ?1",
                [user.as_str()],
            )?
            .pop())
    }

    fn untracked_users(&mut self, users: &[OwnedUserId]) -> Result<Vec<OwnedUserId>, StoreError> {
        // One query over the flag's partial index (schema 11), which
        // covers it: no record is read.
        let listed = serde_json::to_string(users).map_err(corrupt)?;
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT j.value FROM json_each(?1) j WHERE NOT EXISTS (
                     SELECT 1 FROM tracked_users t INDEXED BY tracked_users_tracked
                     WHERE t.user_id = j.value AND t.tracked = 1)
                 ORDER BY j.key",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([listed], |row| row.get::<_, String>(0))
            .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let user = row.map_err(backend)?;
            out.push(OwnedUserId::try_from(user).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    fn save_tracked_user(&mut self, user: &TrackedUser) -> Result<(), StoreError> {
        let data = serde_json::to_string(user).map_err(corrupt)?;
        // `outdated` (schema 8) and `tracked` (schema 11) index the record
        // they are written with.
        exec_cached(
            &self.tx,
            "INSERT INTO tracked_users (user_id, data, outdated, tracked) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(user_id) DO UPDATE SET
                     data = excluded.data, outdated = excluded.outdated, tracked = excluded.tracked",
            params![
                user.user_id.as_str(),
                data,
                user.tracked && user.outdated,
                user.tracked
            ],
        )
        .map_err(backend)?;
        self.unbumped.mark(Covered::Tracking);
        Ok(())
    }

    fn load_devices(&mut self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        self.query_json(
            "SELECT data FROM devices WHERE user_id = ?1 ORDER BY device_id",
            [user.as_str()],
        )
    }

    fn load_devices_of(
        &mut self,
        users: &[newt_crypto::ruma::OwnedUserId],
    ) -> Result<Vec<Vec<DeviceRecord>>, StoreError> {
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(users.len());
        let mut stmt = self
            .tx
            .prepare_cached("SELECT data FROM devices WHERE user_id = ?1 ORDER BY device_id")
            .map_err(backend)?;
        for user in users {
            rows.push(
                stmt.query_map([user.as_str()], |row| row.get::<_, String>(0))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?,
            );
        }
        drop(stmt);
        use rayon::prelude::*;
        rows.par_iter()
            .map(|user| {
                user.iter()
                    .map(|data| serde_json::from_str(data).map_err(corrupt))
                    .collect()
            })
            .collect()
    }

    fn save_device(&mut self, device: &DeviceRecord) -> Result<(), StoreError> {
        let data = serde_json::to_string(device).map_err(corrupt)?;
        exec_cached(
            &self.tx,
            "INSERT INTO devices (user_id, device_id, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT(user_id, device_id) DO UPDATE SET data = excluded.data",
            params![device.user_id.as_str(), device.device_id.as_str(), data],
        )
        .map_err(backend)?;
        self.unbumped.mark(Covered::Devices);
        Ok(())
    }

    fn delete_device(&mut self, user: &UserId, device: &DeviceId) -> Result<(), StoreError> {
        exec_cached(
            &self.tx,
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
            params![user.as_str(), device.as_str()],
        )
        .map_err(backend)?;
        self.unbumped.mark(Covered::Devices);
        Ok(())
    }

    fn load_olm_sessions_of(
        &mut self,
        sender_keys: &[String],
    ) -> Result<Vec<Vec<OlmSessionRecord>>, StoreError> {
        self.olm_sessions_of(sender_keys)
    }

    fn load_olm_session(
        &mut self,
        sender_key: &str,
        session_id: &str,
    ) -> Result<Option<OlmSessionRecord>, StoreError> {
        self.olm_session(sender_key, session_id)
    }

    fn has_olm_session(&mut self, sender_key: &str) -> Result<bool, StoreError> {
        query_cached(
            &self.tx,
            "SELECT 1 FROM olm_sessions WHERE sender_key = ?1 LIMIT 1",
            [sender_key],
            |_| Ok(()),
        )
        .map(|found| found.is_some())
        .map_err(backend)
    }

    fn save_olm_sessions(&mut self, sessions: Vec<OlmSessionRecord>) -> Result<(), StoreError> {
        self.put_olm_sessions(&sessions)
    }

    fn load_pending_requests(&mut self) -> Result<Vec<PendingRequest>, StoreError> {
        self.all_pending()
    }

    fn load_pending_request(
        &mut self,
        request_id: &str,
    ) -> Result<Option<PendingRequest>, StoreError> {
        self.one_pending(request_id)
    }

    fn load_pending_requests_except(
        &mut self,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        self.all_pending_except(held)
    }

    fn load_pending_request_meta(
        &mut self,
        request_id: &str,
    ) -> Result<Option<PendingRequest>, StoreError> {
        self.pending_meta(request_id)
    }

    fn next_pending_seq(&mut self) -> Result<u64, StoreError> {
        self.next_seq()
    }

    fn save_pending_request(&mut self, request: &PendingRequest) -> Result<(), StoreError> {
        self.put_pending(request)
    }

    fn delete_pending_request(&mut self, request_id: &str) -> Result<(), StoreError> {
        exec_cached(
            &self.tx,
            "DELETE FROM pending_requests WHERE request_id = ?1",
            [request_id],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn load_queued_to_device(&mut self) -> Result<Vec<QueuedToDevice>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT id, data, sealed FROM queued_to_device ORDER BY seq")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        drop(stmt);
        rows.into_iter()
            .map(|(id, data, sealed)| {
                let meta: QueuedMeta = serde_json::from_str(&data).map_err(corrupt)?;
                let plaintext = self
                    .key
                    .open(&format!("queued:{id}"), &sealed)
                    .ok_or(StoreError::Decryption)?;
                let plaintext = String::from_utf8(plaintext.to_vec())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(QueuedToDevice {
                    id,
                    seq: meta.seq,
                    sender: meta.sender,
                    sender_key: meta.sender_key,
                    plaintext: Zeroizing::new(plaintext),
                    received_at_ms: meta.received_at_ms,
                })
            })
            .collect()
    }

    fn save_queued_to_device(&mut self, event: &QueuedToDevice) -> Result<(), StoreError> {
        let meta = QueuedMeta {
            seq: event.seq,
            sender: event.sender.clone(),
            sender_key: event.sender_key.clone(),
            received_at_ms: event.received_at_ms,
        };
        let data = serde_json::to_string(&meta).map_err(corrupt)?;
        let sealed = self
            .key
            .seal(&format!("queued:{}", event.id), event.plaintext.as_bytes())
            .ok_or_else(|| StoreError::Backend("event too large".into()))?;
        exec_cached(&self.tx,
                "INSERT INTO queued_to_device (id, seq, data, sealed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, data = excluded.data, sealed = excluded.sealed",
                params![event.id, event.seq as i64, data, sealed],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete_queued_to_device(&mut self, id: &str) -> Result<(), StoreError> {
        exec_cached(&self.tx, "DELETE FROM queued_to_device WHERE id = ?1", [id])
            .map_err(backend)?;
        Ok(())
    }

    fn load_room(&mut self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.room_load(room_id)
    }

    fn save_room(&mut self, room: &RoomRecord) -> Result<(), StoreError> {
        self.room_save(room)
    }

    fn load_room_encryption(
        &mut self,
        room_id: &str,
    ) -> Result<Option<newt_crypto::store::EncryptionSettings>, StoreError> {
        self.room_encryption(room_id)
    }

    fn load_outbound(&mut self, room_id: &str) -> Result<Option<OutboundRecord>, StoreError> {
        self.outbound_load(room_id)
    }

    fn save_outbound(&mut self, session: &OutboundRecord) -> Result<(), StoreError> {
        self.outbound_save(session)
    }

    fn load_outbound_head(&mut self, room_id: &str) -> Result<Option<OutboundHead>, StoreError> {
        self.outbound_load_head(room_id)
    }

    fn save_outbound_head(&mut self, head: OutboundHead) -> Result<(), StoreError> {
        self.outbound_save_head(&head)
    }

    fn load_inbound(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<InboundRecord>, StoreError> {
        self.inbound_load(room_id, session_id)
    }

    fn save_inbound(&mut self, session: &InboundRecord) -> Result<(), StoreError> {
        self.inbound_save(session)
    }

    fn load_all_inbound(&mut self) -> Result<Vec<InboundRecord>, StoreError> {
        self.inbound_all()
    }

    fn load_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
    ) -> Result<Option<IndexUse>, StoreError> {
        self.index_load(room_id, session_id, index)
    }

    fn load_index_uses(
        &mut self,
        room_id: &str,
        session_id: &str,
        indices: &[u32],
    ) -> Result<Vec<(u32, IndexUse)>, StoreError> {
        self.index_load_many(room_id, session_id, indices)
    }

    fn save_index_use(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
        used: &IndexUse,
    ) -> Result<(), StoreError> {
        self.index_save(room_id, session_id, index, used)
    }

    fn save_index_uses(
        &mut self,
        room_id: &str,
        uses: &[(String, u32, IndexUse)],
    ) -> Result<(), StoreError> {
        self.index_save_many(room_id, uses)
    }

    fn save_undecrypted(&mut self, event: &UndecryptedEvent) -> Result<(), StoreError> {
        self.undecrypted_save(event)
    }

    fn load_undecrypted(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Vec<UndecryptedEvent>, StoreError> {
        self.undecrypted_for(room_id, session_id)
    }

    fn load_undecrypted_event(
        &mut self,
        room_id: &str,
        event_id: &str,
    ) -> Result<Option<UndecryptedEvent>, StoreError> {
        self.undecrypted_one(room_id, event_id)
    }

    fn delete_undecrypted(&mut self, room_id: &str, event_id: &str) -> Result<(), StoreError> {
        self.undecrypted_delete(room_id, event_id)
    }

    fn save_withheld(&mut self, notice: &WithheldRecord) -> Result<(), StoreError> {
        self.withheld_save(notice)
    }

    fn load_withheld(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<WithheldRecord>, StoreError> {
        self.withheld_load(room_id, session_id)
    }

    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        query_cached(
            &self.tx,
            "SELECT value FROM kv WHERE key = ?1",
            [key],
            |row| row.get(0),
        )
        .map_err(backend)
    }

    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        exec_cached(
            &self.tx,
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn olm_revision(&mut self) -> Result<Option<u64>, StoreError> {
        self.bump_olm()?;
        self.revision(crate::revision::OLM).map(Some)
    }

    fn inbound_revision(&mut self) -> Result<Option<u64>, StoreError> {
        self.current_revision(Covered::Inbound)
    }

    fn olm_changes_since(&mut self, since: u64) -> Result<Option<Vec<String>>, StoreError> {
        self.bump_olm()?;
        self.olm_changes(since)
    }

    fn device_revision(&mut self) -> Result<Option<u64>, StoreError> {
        self.current_revision(Covered::Devices)
    }

    fn room_revision(&mut self) -> Result<Option<u64>, StoreError> {
        self.current_revision(Covered::Rooms)
    }

    fn tracking_revision(&mut self) -> Result<Option<u64>, StoreError> {
        self.current_revision(Covered::Tracking)
    }

    fn outbound_sets_revision(&mut self) -> Result<Option<u64>, StoreError> {
        self.current_revision(Covered::OutboundSets)
    }

    fn after_commit(&mut self, f: AfterCommit) {
        self.after_commit.push(f);
    }

    fn defer_durability(&mut self, defer: bool) {
        self.durability.defer(self.conn, defer);
    }

    fn commit(mut self) -> Result<(), StoreError> {
        // Decided before the revision bumps: they follow the saves.
        let durable = self.durability.needed(self.conn);
        self.bump_all()?;
        self.tx.commit().map_err(backend)?;
        // Committed: the caches follow even if the sync below fails.
        let synced = if durable {
            crate::durability::sync_log(self.conn)
        } else {
            Ok(())
        };
        if let Some(checkpointer) = self.checkpointer {
            checkpointer.poke();
        }
        for f in self.after_commit {
            f();
        }
        synced.map_err(|e| StoreError::Backend(format!("committed, but not made durable: {e}")))
    }
}

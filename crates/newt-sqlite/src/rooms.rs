//! The room tables: room state, Megolm sessions, replay indices,
//! undecryptable events and withheld notices.

use crate::txn::{SqliteTxn, backend, corrupt, exec_cached, query_cached};
use newt_crypto::store::{
    EncryptionSettings, InboundInfo, InboundRecord, OutboundHead, OutboundRecord, OutboundState,
    RoomRecord, SharedWith, StoreError, UndecryptedEvent, WithheldFrom, WithheldRecord,
};
use rusqlite::params;

/// An outbound session's shared-with and withheld sets, as written.
#[derive(serde::Serialize)]
struct SetsOut<'a> {
    shared_with: &'a SharedWith,
    withheld: &'a WithheldFrom,
}

/// The sets as read.
#[derive(serde::Deserialize)]
struct SetsIn {
    #[serde(default)]
    shared_with: SharedWith,
    #[serde(default)]
    withheld: WithheldFrom,
}

fn inbound_slot(room_id: &str, session_id: &str) -> String {
    format!("inbound:{room_id}:{session_id}")
}

fn outbound_slot(room_id: &str, session_id: &str) -> String {
    format!("outbound:{room_id}:{session_id}")
}

impl SqliteTxn<'_> {
    pub(crate) fn put_json(
        &mut self,
        sql: &str,
        keys: &[&str],
        data: &impl serde::Serialize,
    ) -> Result<(), StoreError> {
        let data = serde_json::to_string(data).map_err(corrupt)?;
        let mut values: Vec<&dyn rusqlite::ToSql> =
            keys.iter().map(|k| k as &dyn rusqlite::ToSql).collect();
        values.push(&data);
        exec_cached(self.tx(), sql, values.as_slice()).map_err(backend)?;
        Ok(())
    }

    pub(crate) fn room_load(&mut self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self
            .query_json("SELECT data FROM rooms WHERE room_id = ?1", [room_id])?
            .pop())
    }

    pub(crate) fn room_save(&mut self, room: &RoomRecord) -> Result<(), StoreError> {
        self.put_json(
            "INSERT INTO rooms (room_id, data) VALUES (?1, ?2) ON CONFLICT(room_id) DO UPDATE SET data = excluded.data",
            &[&room.room_id],
            room,
        )?;
        self.unbumped.mark(crate::revision::Covered::Rooms);
        // The settings again, alone (schema 10).
        match &room.encryption {
            Some(settings) => self.put_json(
                "INSERT INTO room_encryption (room_id, data) VALUES (?1, ?2) ON CONFLICT(room_id) DO UPDATE SET data = excluded.data",
                &[&room.room_id],
                settings,
            ),
            None => {
                exec_cached(
                    self.tx(),
                    "DELETE FROM room_encryption WHERE room_id = ?1",
                    [&room.room_id],
                )
                .map_err(backend)?;
                Ok(())
            }
        }
    }

    pub(crate) fn room_encryption(
        &mut self,
        room_id: &str,
    ) -> Result<Option<EncryptionSettings>, StoreError> {
        Ok(self
            .query_json(
                "SELECT data FROM room_encryption WHERE room_id = ?1",
                [room_id],
            )?
            .pop())
    }

    /// The session row alone (schema 9 keeps the sets apart).
    pub(crate) fn outbound_load_head(
        &mut self,
        room_id: &str,
    ) -> Result<Option<OutboundHead>, StoreError> {
        let row: Option<(String, Vec<u8>, String)> = query_cached(
            self.tx(),
            "SELECT session_id, pickle, data FROM outbound_sessions WHERE room_id = ?1",
            [room_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(backend)?;
        let Some((session_id, sealed, data)) = row else {
            return Ok(None);
        };
        let pickle = self.open_secret(&outbound_slot(room_id, &session_id), &sealed)?;
        let state: OutboundState = serde_json::from_str(&data).map_err(corrupt)?;
        Ok(Some(OutboundHead {
            room_id: room_id.to_owned(),
            session_id,
            pickle: newt_crypto::store::codec::decode_pickle(&pickle)?,
            state: state.without_sets(),
        }))
    }

    pub(crate) fn outbound_load(
        &mut self,
        room_id: &str,
    ) -> Result<Option<OutboundRecord>, StoreError> {
        let Some(head) = self.outbound_load_head(room_id)? else {
            return Ok(None);
        };
        let sets: Option<(String, String)> = query_cached(
            self.tx(),
            "SELECT session_id, data FROM outbound_sets WHERE room_id = ?1",
            [room_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(backend)?;
        let mut state = head.state;
        // Sets of an earlier session are not this one's.
        if let Some((session_id, data)) = sets
            && session_id == head.session_id
        {
            let sets: SetsIn = serde_json::from_str(&data).map_err(corrupt)?;
            state.shared_with = sets.shared_with;
            state.withheld = sets.withheld;
        }
        Ok(Some(OutboundRecord {
            room_id: head.room_id,
            session_id: head.session_id,
            pickle: head.pickle,
            state,
        }))
    }

    pub(crate) fn outbound_save(&mut self, session: &OutboundRecord) -> Result<(), StoreError> {
        self.outbound_save_row(
            &session.room_id,
            &session.session_id,
            &session.pickle,
            &session.state,
        )?;
        let sets = SetsOut {
            shared_with: &session.state.shared_with,
            withheld: &session.state.withheld,
        };
        let data = serde_json::to_string(&sets).map_err(corrupt)?;
        exec_cached(
            self.tx(),
            "INSERT INTO outbound_sets (room_id, session_id, data) VALUES (?1, ?2, ?3)
             ON CONFLICT(room_id) DO UPDATE SET
                 session_id = excluded.session_id, data = excluded.data",
            params![session.room_id, session.session_id, data],
        )
        .map_err(backend)?;
        self.unbumped.mark(crate::revision::Covered::OutboundSets);
        Ok(())
    }

    pub(crate) fn outbound_save_head(&mut self, head: &OutboundHead) -> Result<(), StoreError> {
        self.outbound_save_row(&head.room_id, &head.session_id, &head.pickle, &head.state)
    }

    /// The session row: its pickle sealed, its state without the sets.
    fn outbound_save_row(
        &mut self,
        room_id: &str,
        session_id: &str,
        pickle: &vodozemac::megolm::GroupSessionPickle,
        state: &OutboundState,
    ) -> Result<(), StoreError> {
        let pickle = newt_crypto::store::codec::encode_pickle(pickle)?;
        let sealed = self.seal_secret(&outbound_slot(room_id, session_id), &pickle)?;
        let data = serde_json::to_string(&state.without_sets()).map_err(corrupt)?;
        exec_cached(
            self.tx(),
            "INSERT INTO outbound_sessions (room_id, session_id, pickle, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(room_id) DO UPDATE SET session_id = excluded.session_id,
                 pickle = excluded.pickle, data = excluded.data",
            params![room_id, session_id, sealed, data],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn inbound_from_row(
        &self,
        room_id: String,
        session_id: String,
        sealed: &[u8],
        data: &str,
    ) -> Result<InboundRecord, StoreError> {
        let pickle = self.open_secret(&inbound_slot(&room_id, &session_id), sealed)?;
        let info: InboundInfo = serde_json::from_str(data).map_err(corrupt)?;
        Ok(InboundRecord {
            room_id,
            session_id,
            pickle: newt_crypto::store::codec::decode_pickle(&pickle)?,
            info,
        })
    }

    pub(crate) fn inbound_load(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<InboundRecord>, StoreError> {
        let row: Option<(Vec<u8>, String)> = query_cached(
            self.tx(),
            "SELECT pickle, data FROM inbound_sessions WHERE room_id = ?1 AND session_id = ?2",
            [room_id, session_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(backend)?;
        row.map(|(sealed, data)| {
            self.inbound_from_row(room_id.to_owned(), session_id.to_owned(), &sealed, &data)
        })
        .transpose()
    }

    pub(crate) fn inbound_all(&mut self) -> Result<Vec<InboundRecord>, StoreError> {
        let mut stmt = self
            .tx()
            .prepare_cached("SELECT room_id, session_id, pickle, data FROM inbound_sessions ORDER BY room_id, session_id")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        drop(stmt);
        rows.into_iter()
            .map(|(room, session, sealed, data)| {
                self.inbound_from_row(room, session, &sealed, &data)
            })
            .collect()
    }

    pub(crate) fn inbound_save(&mut self, session: &InboundRecord) -> Result<(), StoreError> {
        let pickle = newt_crypto::store::codec::encode_pickle(&session.pickle)?;
        let sealed = self.seal_secret(
            &inbound_slot(&session.room_id, &session.session_id),
            &pickle,
        )?;
        let data = serde_json::to_string(&session.info).map_err(corrupt)?;
        exec_cached(self.tx(),
                "INSERT INTO inbound_sessions (room_id, session_id, pickle, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(room_id, session_id) DO UPDATE SET pickle = excluded.pickle, data = excluded.data",
                params![session.room_id, session.session_id, sealed, data],
            )
            .map_err(backend)?;
        // The revision moves when next read or at commit.
        self.unbumped.mark(crate::revision::Covered::Inbound);
        Ok(())
    }

    pub(crate) fn undecrypted_save(&mut self, event: &UndecryptedEvent) -> Result<(), StoreError> {
        let data = serde_json::to_string(event).map_err(corrupt)?;
        exec_cached(self.tx(),
                "INSERT INTO undecrypted_events (room_id, event_id, session_id, received_at, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(room_id, event_id) DO UPDATE SET data = excluded.data",
                params![event.room_id, event.event_id, event.session_id, event.received_at_ms as i64, data],
            )
            .map_err(backend)?;
        Ok(())
    }

    pub(crate) fn undecrypted_for(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Vec<UndecryptedEvent>, StoreError> {
        self.query_json(
            "SELECT data FROM undecrypted_events WHERE room_id = ?1 AND session_id = ?2 ORDER BY received_at, event_id",
            [room_id, session_id],
        )
    }

    pub(crate) fn undecrypted_one(
        &mut self,
        room_id: &str,
        event_id: &str,
    ) -> Result<Option<UndecryptedEvent>, StoreError> {
        Ok(self
            .query_json(
                "SELECT data FROM undecrypted_events WHERE room_id = ?1 AND event_id = ?2",
                [room_id, event_id],
            )?
            .pop())
    }

    pub(crate) fn undecrypted_delete(
        &mut self,
        room_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError> {
        exec_cached(
            self.tx(),
            "DELETE FROM undecrypted_events WHERE room_id = ?1 AND event_id = ?2",
            [room_id, event_id],
        )
        .map_err(backend)?;
        Ok(())
    }

    pub(crate) fn withheld_save(&mut self, notice: &WithheldRecord) -> Result<(), StoreError> {
        self.put_json(
            "INSERT INTO withheld (room_id, session_id, data) VALUES (?1, ?2, ?3)
             ON CONFLICT(room_id, session_id) DO UPDATE SET data = excluded.data",
            &[&notice.room_id, &notice.session_id],
            notice,
        )
    }

    pub(crate) fn withheld_load(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<WithheldRecord>, StoreError> {
        Ok(self
            .query_json(
                "SELECT data FROM withheld WHERE room_id = ?1 AND session_id = ?2",
                [room_id, session_id],
            )?
            .pop())
    }
}

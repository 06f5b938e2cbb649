//! Olm sessions: SQL runs in order, opening (or sealing) the pickles runs
//! on every core. Pickles come encoded and leave encoded: the machine
//! decodes the ones it uses.

use crate::txn::{SqliteTxn, backend, corrupt, exec_cached, query_cached};
use newt_crypto::store::codec::Encoded;
use newt_crypto::store::{OlmSessionRecord, OlmSessionTimes, StoreError};
use rayon::prelude::*;
use rusqlite::params;

/// The associated data a session's pickle is sealed under.
fn slot(sender_key: &str, session_id: &str) -> String {
    format!("olm:{sender_key}:{session_id}")
}

/// A row as read: which sender key it belongs to, then its columns.
type Row = (usize, String, Vec<u8>, String);

/// A stored row made a record again: its pickle opened.
fn record(
    key: &crate::key::StoreKey,
    sender_key: String,
    session_id: String,
    sealed: &[u8],
    data: &str,
) -> Result<OlmSessionRecord, StoreError> {
    let pickle = key
        .open(&slot(&sender_key, &session_id), sealed)
        .ok_or(StoreError::Decryption)?;
    let times: OlmSessionTimes = serde_json::from_str(data).map_err(corrupt)?;
    Ok(OlmSessionRecord {
        sender_key,
        session_id,
        pickle: Encoded::from_bytes(pickle),
        created_at_ms: times.created_at_ms,
        last_received_at_ms: times.last_received_at_ms,
        retired: times.retired,
    })
}

impl SqliteTxn<'_> {
    pub(crate) fn olm_sessions_of(
        &mut self,
        sender_keys: &[String],
    ) -> Result<Vec<Vec<OlmSessionRecord>>, StoreError> {
        let mut rows: Vec<Row> = Vec::new();
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT session_id, pickle, data FROM olm_sessions WHERE sender_key = ?1",
            )
            .map_err(backend)?;
        for (index, key) in sender_keys.iter().enumerate() {
            let found = stmt
                .query_map([key], |row| {
                    Ok((index, row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .map_err(backend)?;
            for row in found {
                rows.push(row.map_err(backend)?);
            }
        }
        drop(stmt);
        let key = self.key();
        let records: Vec<(usize, OlmSessionRecord)> = rows
            .into_par_iter()
            .map(|(index, session_id, sealed, data)| {
                let sender_key = sender_keys[index].clone();
                Ok((index, record(key, sender_key, session_id, &sealed, &data)?))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut out: Vec<Vec<OlmSessionRecord>> = sender_keys.iter().map(|_| Vec::new()).collect();
        for (index, record) in records {
            out[index].push(record);
        }
        Ok(out)
    }

    pub(crate) fn olm_session(
        &mut self,
        sender_key: &str,
        session_id: &str,
    ) -> Result<Option<OlmSessionRecord>, StoreError> {
        let row: Option<(Vec<u8>, String)> = query_cached(
            self.tx(),
            "SELECT pickle, data FROM olm_sessions WHERE sender_key = ?1 AND session_id = ?2",
            [sender_key, session_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(backend)?;
        let Some((sealed, data)) = row else {
            return Ok(None);
        };
        let (sender_key, session_id) = (sender_key.to_owned(), session_id.to_owned());
        record(self.key(), sender_key, session_id, &sealed, &data).map(Some)
    }

    pub(crate) fn put_olm_sessions(
        &mut self,
        sessions: &[OlmSessionRecord],
    ) -> Result<(), StoreError> {
        let key = self.key();
        let sealed: Vec<(Vec<u8>, String)> = sessions
            .par_iter()
            .map(|session| {
                let pickle = session.pickle.as_bytes();
                let sealed = key
                    .seal(&slot(&session.sender_key, &session.session_id), pickle)
                    .ok_or_else(|| StoreError::Backend("session too large".into()))?;
                let times = OlmSessionTimes {
                    created_at_ms: session.created_at_ms,
                    last_received_at_ms: session.last_received_at_ms,
                    retired: session.retired,
                };
                Ok((sealed, serde_json::to_string(&times).map_err(corrupt)?))
            })
            .collect::<Result<_, StoreError>>()?;
        for (session, (sealed, data)) in sessions.iter().zip(sealed) {
            exec_cached(
                self.tx(),
                "INSERT INTO olm_sessions (sender_key, session_id, pickle, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(sender_key, session_id) DO UPDATE SET pickle = excluded.pickle, data = excluded.data",
                params![session.sender_key, session.session_id, sealed, data],
            )
            .map_err(backend)?;
        }
        // The revision moves when next read or at commit.
        self.unbumped
            .olm
            .extend(sessions.iter().map(|s| s.sender_key.clone()));
        Ok(())
    }
}

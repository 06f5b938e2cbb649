//! MEG-08 records: which event used each message index of an inbound
//! session. Rows are keyed by a small integer per (room, session), so the
//! row written for every decrypted event is a few dozen bytes in one tree.

use crate::txn::{SqliteTxn, backend, query_cached};
use newt_crypto::store::{IndexUse, StoreError};
use rusqlite::params;
use std::collections::BTreeMap;

/// The integer IDs this transaction has looked up, by room then session.
/// Kept per transaction: an ID inserted by a transaction that rolls back
/// must not outlive it.
#[derive(Debug, Default)]
pub(crate) struct SessionIds(BTreeMap<String, BTreeMap<String, i64>>);

impl SessionIds {
    fn get(&self, room_id: &str, session_id: &str) -> Option<i64> {
        self.0.get(room_id)?.get(session_id).copied()
    }

    fn insert(&mut self, room_id: &str, session_id: &str, id: i64) {
        self.0
            .entry(room_id.to_owned())
            .or_default()
            .insert(session_id.to_owned(), id);
    }
}

/// Timestamps are `u64`; SQLite integers are `i64`. The bits are kept.
fn ts_to_sql(ts: u64) -> i64 {
    i64::from_ne_bytes(ts.to_ne_bytes())
}

fn ts_from_sql(ts: i64) -> u64 {
    u64::from_ne_bytes(ts.to_ne_bytes())
}

impl SqliteTxn<'_> {
    /// The session's integer ID, if it has any recorded use.
    fn index_session(
        &mut self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.session_ids.get(room_id, session_id) {
            return Ok(Some(id));
        }
        let id: Option<i64> = query_cached(
            self.tx(),
            "SELECT id FROM megolm_index_sessions WHERE room_id = ?1 AND session_id = ?2",
            [room_id, session_id],
            |row| row.get(0),
        )
        .map_err(backend)?;
        if let Some(id) = id {
            self.session_ids.insert(room_id, session_id, id);
        }
        Ok(id)
    }

    /// The session's integer ID, made on its first recorded use.
    fn index_session_or_new(&mut self, room_id: &str, session_id: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.index_session(room_id, session_id)? {
            return Ok(id);
        }
        self.tx()
            .prepare_cached(
                "INSERT INTO megolm_index_sessions (room_id, session_id) VALUES (?1, ?2)",
            )
            .map_err(backend)?
            .execute([room_id, session_id])
            .map_err(backend)?;
        let id = self.tx().last_insert_rowid();
        self.session_ids.insert(room_id, session_id, id);
        Ok(id)
    }

    pub(crate) fn index_load(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
    ) -> Result<Option<IndexUse>, StoreError> {
        Ok(self
            .index_load_many(room_id, session_id, &[index])?
            .pop()
            .map(|(_, used)| used))
    }

    /// One range query for a batch's indices, filtered to the ones asked.
    pub(crate) fn index_load_many(
        &mut self,
        room_id: &str,
        session_id: &str,
        indices: &[u32],
    ) -> Result<Vec<(u32, IndexUse)>, StoreError> {
        let (Some(low), Some(high)) = (indices.iter().min(), indices.iter().max()) else {
            return Ok(Vec::new());
        };
        let Some(session) = self.index_session(room_id, session_id)? else {
            return Ok(Vec::new());
        };
        let wanted: std::collections::BTreeSet<u32> = indices.iter().copied().collect();
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT idx, event_id, origin_server_ts FROM megolm_index_uses
                 WHERE session = ?1 AND idx BETWEEN ?2 AND ?3",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![session, low, high], |row| {
                Ok((
                    row.get::<_, u32>(0)?,
                    IndexUse {
                        event_id: row.get(1)?,
                        origin_server_ts: ts_from_sql(row.get(2)?),
                    },
                ))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .filter(|(index, _)| wanted.contains(index))
            .collect())
    }

    pub(crate) fn index_save(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
        used: &IndexUse,
    ) -> Result<(), StoreError> {
        let session = self.index_session_or_new(room_id, session_id)?;
        self.index_upsert(&[(session, index, used)])
    }

    /// A timeline's uses through one statement, grouped by session so
    /// that consecutive rows land in the same leaf page. (One statement
    /// of many rows would be slower: SQLite keeps a statement journal of
    /// every page it touches, in case a row fails midway.)
    pub(crate) fn index_save_many(
        &mut self,
        room_id: &str,
        uses: &[(String, u32, IndexUse)],
    ) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(uses.len());
        for (session_id, index, used) in uses {
            rows.push((
                self.index_session_or_new(room_id, session_id)?,
                *index,
                used,
            ));
        }
        // Stable: a later use of the same index still comes later.
        rows.sort_by_key(|(session, index, _)| (*session, *index));
        self.index_upsert(&rows)
    }

    fn index_upsert(&self, rows: &[(i64, u32, &IndexUse)]) -> Result<(), StoreError> {
        let mut stmt = self
            .tx()
            .prepare_cached(
                "INSERT INTO megolm_index_uses (session, idx, event_id, origin_server_ts)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(session, idx) DO UPDATE SET
                     event_id = excluded.event_id, origin_server_ts = excluded.origin_server_ts",
            )
            .map_err(backend)?;
        for (session, index, used) in rows {
            stmt.execute(params![
                session,
                index,
                used.event_id,
                ts_to_sql(used.origin_server_ts)
            ])
            .map_err(backend)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_every_bit() {
        for ts in [0, 1, 1_700_000_000_000, i64::MAX as u64, u64::MAX] {
            assert_eq!(ts_from_sql(ts_to_sql(ts)), ts);
        }
    }
}

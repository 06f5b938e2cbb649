//! MEG-08 records: which event used each message index of an inbound
//! session. Sessions get a small integer per (room, session); each save
//! writes one run per session (`runs.rs`), so a timeline's uses are a few
//! rows however many events it held.

use crate::runs;
use crate::txn::{SqliteTxn, backend, query_cached};
use newt_crypto::store::{IndexUse, StoreError};
use rusqlite::params;
use std::collections::{BTreeMap, BTreeSet};

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

    /// The uses among `indices`, by index: one search of the session's
    /// runs that reach into the batch's range. Runs are read in the order
    /// they were saved, so a later use of an index replaces an earlier one.
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
        let wanted: BTreeSet<u32> = indices.iter().copied().collect();
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT uses FROM megolm_index_runs
                 WHERE session = ?1 AND last >= ?2 AND first <= ?3 ORDER BY id",
            )
            .map_err(backend)?;
        let mut rows = stmt.query(params![session, low, high]).map_err(backend)?;
        let mut found = BTreeMap::new();
        while let Some(row) = rows.next().map_err(backend)? {
            let run = row
                .get_ref(0)
                .map_err(backend)?
                .as_blob()
                .map_err(|e| StoreError::Corrupt(format!("a MEG-08 run is not a blob: {e}")))?;
            runs::unpack(
                run,
                |index| wanted.contains(&index),
                |index, used| {
                    found.insert(index, used);
                },
            )?;
        }
        Ok(found.into_iter().collect())
    }

    pub(crate) fn index_save(
        &mut self,
        room_id: &str,
        session_id: &str,
        index: u32,
        used: &IndexUse,
    ) -> Result<(), StoreError> {
        let session = self.index_session_or_new(room_id, session_id)?;
        self.index_insert_run(session, &[(index, used)])
    }

    /// A timeline's uses as one run per session, in one row each.
    pub(crate) fn index_save_many(
        &mut self,
        room_id: &str,
        uses: &[(String, u32, IndexUse)],
    ) -> Result<(), StoreError> {
        // By session, then index; stable, so that of two uses of one index
        // the later one comes last and is the one kept.
        let mut order: Vec<&(String, u32, IndexUse)> = uses.iter().collect();
        order.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut run: Vec<(u32, &IndexUse)> = Vec::new();
        for (n, (session_id, index, used)) in order.iter().enumerate() {
            match run.last_mut() {
                Some(last) if last.0 == *index => *last = (*index, used),
                _ => run.push((*index, used)),
            }
            let ends = order.get(n + 1).is_none_or(|next| next.0 != *session_id);
            if ends {
                let session = self.index_session_or_new(room_id, session_id)?;
                self.index_insert_run(session, &run)?;
                run.clear();
            }
        }
        Ok(())
    }

    /// One run: uses sorted by index, one per index.
    fn index_insert_run(&self, session: i64, run: &[(u32, &IndexUse)]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let packed = runs::pack(run)?;
        self.tx()
            .prepare_cached(
                "INSERT INTO megolm_index_runs (session, first, last, uses)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(backend)?
            .execute(params![session, first.0, last.0, packed])
            .map_err(backend)?;
        Ok(())
    }
}

//! Pending requests: metadata as JSON, the body as its own text column so
//! a large `/sendToDevice` body is neither escaped nor parsed (schema 4).

use crate::txn::{SqliteTxn, backend, corrupt, exec_cached};
use newt_crypto::store::{PendingKind, PendingRequest, StoreError};
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// What `data` holds from schema 4 on.
#[derive(Serialize)]
struct Meta<'a> {
    request_id: &'a str,
    kind: &'a PendingKind,
    seq: u64,
}

/// What `data` may hold: rows before schema 4 carry the body too.
#[derive(Deserialize)]
struct Stored {
    request_id: String,
    kind: PendingKind,
    #[serde(default)]
    body: String,
    seq: u64,
}

fn decode(data: &str, body: Option<String>) -> Result<PendingRequest, StoreError> {
    let stored: Stored = serde_json::from_str(data).map_err(corrupt)?;
    Ok(PendingRequest {
        request_id: stored.request_id,
        kind: stored.kind,
        body: body.unwrap_or(stored.body).into(),
        seq: stored.seq,
    })
}

impl SqliteTxn<'_> {
    fn pending_rows(
        &mut self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let mut stmt = self.tx().prepare_cached(sql).map_err(backend)?;
        let rows = stmt
            .query_map(params, |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
            })
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        rows.into_iter()
            .map(|(data, body)| decode(&data, body))
            .collect()
    }

    pub(crate) fn all_pending(&mut self) -> Result<Vec<PendingRequest>, StoreError> {
        self.pending_rows("SELECT data, body FROM pending_requests ORDER BY seq", [])
    }

    /// Every pending request; bodies `held` accepts are left empty (rows
    /// from before schema 4 keep theirs, inside `data`).
    pub(crate) fn all_pending_except(
        &mut self,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let mut all =
            self.pending_rows("SELECT data, NULL FROM pending_requests ORDER BY seq", [])?;
        for request in &mut all {
            if request.body.is_empty() && !held(&request.request_id) {
                request.body = self.pending_body(&request.request_id)?.into();
            }
        }
        Ok(all)
    }

    /// The request `id` without reading its body column.
    pub(crate) fn pending_meta(&mut self, id: &str) -> Result<Option<PendingRequest>, StoreError> {
        Ok(self
            .pending_rows(
                "SELECT data, NULL FROM pending_requests WHERE request_id = ?1",
                [id],
            )?
            .pop())
    }

    fn pending_body(&mut self, id: &str) -> Result<String, StoreError> {
        self.tx()
            .prepare_cached("SELECT body FROM pending_requests WHERE request_id = ?1")
            .and_then(|mut s| s.query_row([id], |row| row.get::<_, Option<String>>(0)))
            .map(|body| body.unwrap_or_default())
            .map_err(backend)
    }

    pub(crate) fn one_pending(&mut self, id: &str) -> Result<Option<PendingRequest>, StoreError> {
        Ok(self
            .pending_rows(
                "SELECT data, body FROM pending_requests WHERE request_id = ?1",
                [id],
            )?
            .pop())
    }

    pub(crate) fn next_seq(&mut self) -> Result<u64, StoreError> {
        let next: i64 = self
            .tx()
            .prepare_cached("SELECT COALESCE(MAX(seq) + 1, 0) FROM pending_requests")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .map_err(backend)?;
        u64::try_from(next).map_err(|_| StoreError::Corrupt("negative request seq".into()))
    }

    pub(crate) fn put_pending(&mut self, request: &PendingRequest) -> Result<(), StoreError> {
        let data = serde_json::to_string(&Meta {
            request_id: &request.request_id,
            kind: &request.kind,
            seq: request.seq,
        })
        .map_err(corrupt)?;
        exec_cached(
            self.tx(),
            "INSERT INTO pending_requests (request_id, seq, data, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(request_id) DO UPDATE
                 SET seq = excluded.seq, data = excluded.data, body = excluded.body",
            params![
                request.request_id,
                request.seq as i64,
                data,
                request.body.as_str()
            ],
        )
        .map_err(backend)?;
        Ok(())
    }
}

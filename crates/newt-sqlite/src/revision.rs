//! Revisions (see `StoreTxn::olm_revision`): `kv` entries that change to
//! a fresh random value with every save of what they cover. Random, not a
//! counter: two histories of one store file (a restored copy) never show
//! the same revision.

use crate::txn::{SqliteTxn, backend, exec_cached};
use newt_crypto::store::StoreError;
use rusqlite::OptionalExtension;

/// Covers Olm sessions; the `newt.` prefix is the store's own.
pub(crate) const OLM: &str = "newt.olm_revision";
/// Covers inbound Megolm sessions.
pub(crate) const INBOUND: &str = "newt.inbound_revision";
/// Covers device records.
pub(crate) const DEVICES: &str = "newt.device_revision";

impl SqliteTxn<'_> {
    pub(crate) fn bump_revision(&mut self, name: &str) -> Result<(), StoreError> {
        exec_cached(
            self.tx(),
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [name, &rand::random::<u64>().to_string()],
        )
        .map_err(backend)?;
        Ok(())
    }

    /// 0 until the first save.
    pub(crate) fn revision(&mut self, name: &str) -> Result<u64, StoreError> {
        let value: Option<String> = self
            .tx()
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .and_then(|mut s| s.query_row([name], |row| row.get(0)).optional())
            .map_err(backend)?;
        value.map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| StoreError::Corrupt(format!("{name} is not a number")))
        })
    }
}

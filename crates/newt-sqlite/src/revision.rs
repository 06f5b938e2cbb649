//! Revisions (see `StoreTxn::olm_revision`): `kv` entries that change to
//! a fresh random value with every save of what they cover. Random, not a
//! counter: two histories of one store file (a restored copy) never show
//! the same revision.

use crate::txn::{SqliteTxn, backend, exec_cached};
use newt_crypto::store::StoreError;
use newt_crypto::store::StoreTxn;

/// Covers Olm sessions; the `newt.` prefix is the store's own.
pub(crate) const OLM: &str = "newt.olm_revision";
/// Covers inbound Megolm sessions.
pub(crate) const INBOUND: &str = "newt.inbound_revision";
/// Log rows kept, about (older revisions then count as unknown).
const OLM_CHANGE_ROWS: i64 = 4096;

/// Covers device records.
pub(crate) const DEVICES: &str = "newt.device_revision";
/// Covers rooms.
pub(crate) const ROOMS: &str = "newt.room_revision";
/// Covers tracking records.
pub(crate) const TRACKING: &str = "newt.tracking_revision";

/// What a transaction saved since it last bumped each revision.
#[derive(Default)]
pub(crate) struct Unbumped {
    /// Sender keys of Olm sessions saved.
    pub(crate) olm: Vec<String>,
    pub(crate) inbound: bool,
    pub(crate) devices: bool,
    pub(crate) rooms: bool,
    pub(crate) tracking: bool,
}

impl SqliteTxn<'_> {
    /// Bumps the Olm revision and logs the keys saved since, if any.
    pub(crate) fn bump_olm(&mut self) -> Result<(), StoreError> {
        if self.unbumped.olm.is_empty() {
            return Ok(());
        }
        let mut keys = std::mem::take(&mut self.unbumped.olm);
        keys.sort_unstable();
        keys.dedup();
        let revision = self.bump_revision(OLM)?;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.log_olm_change(revision, &keys)
    }

    pub(crate) fn bump_inbound(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.unbumped.inbound) {
            self.bump_revision(INBOUND)?;
        }
        Ok(())
    }

    pub(crate) fn bump_devices(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.unbumped.devices) {
            self.bump_revision(DEVICES)?;
        }
        Ok(())
    }

    pub(crate) fn bump_rooms(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.unbumped.rooms) {
            self.bump_revision(ROOMS)?;
        }
        Ok(())
    }

    pub(crate) fn bump_tracking(&mut self) -> Result<(), StoreError> {
        if std::mem::take(&mut self.unbumped.tracking) {
            self.bump_revision(TRACKING)?;
        }
        Ok(())
    }

    /// Sets the revision to a fresh random value, and returns it.
    pub(crate) fn bump_revision(&mut self, name: &str) -> Result<u64, StoreError> {
        let value = rand::random::<u64>();
        exec_cached(
            self.tx(),
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [name, &value.to_string()],
        )
        .map_err(backend)?;
        Ok(value)
    }

    /// Logs which sender keys the save that made Olm revision `revision`
    /// touched (see `StoreTxn::olm_changes_since`).
    pub(crate) fn log_olm_change(
        &mut self,
        revision: u64,
        sender_keys: &[&str],
    ) -> Result<(), StoreError> {
        let revision = revision.to_string();
        let listed: Vec<Option<&str>> =
            if sender_keys.len() > newt_crypto::store::OLM_CHANGES_LISTED_MAX {
                vec![None]
            } else {
                sender_keys.iter().map(|k| Some(*k)).collect()
            };
        for key in listed {
            exec_cached(
                self.tx(),
                "INSERT INTO olm_changes (revision, sender_key) VALUES (?1, ?2)",
                rusqlite::params![revision, key],
            )
            .map_err(backend)?;
        }
        let seq = self.tx().last_insert_rowid();
        if seq % 512 == 0 {
            exec_cached(
                self.tx(),
                "DELETE FROM olm_changes WHERE seq <= ?1",
                [seq - OLM_CHANGE_ROWS],
            )
            .map_err(backend)?;
        }
        Ok(())
    }

    /// The sender keys saved since Olm revision `since`; `None` if unknown.
    pub(crate) fn olm_changes(&mut self, since: u64) -> Result<Option<Vec<String>>, StoreError> {
        let last: Option<i64> = self
            .tx()
            .prepare_cached("SELECT MAX(seq) FROM olm_changes WHERE revision = ?1")
            .and_then(|mut s| s.query_row([since.to_string()], |row| row.get(0)))
            .map_err(backend)?;
        let Some(last) = last else {
            return Ok(None);
        };
        let keys: Vec<Option<String>> = self
            .tx()
            .prepare_cached("SELECT sender_key FROM olm_changes WHERE seq > ?1")
            .and_then(|mut s| {
                s.query_map([last], |row| row.get(0))?
                    .collect::<Result<_, _>>()
            })
            .map_err(backend)?;
        Ok(keys.into_iter().collect())
    }

    /// 0 until the first save.
    pub(crate) fn revision(&mut self, name: &str) -> Result<u64, StoreError> {
        let value = self.get_value(name)?;
        value.map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| StoreError::Corrupt(format!("{name} is not a number")))
        })
    }
}

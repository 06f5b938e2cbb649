//! Revisions (see `StoreTxn::olm_revision`): `kv` entries that change to
//! a fresh random value with every save of what they cover. Random, not a
//! counter: two histories of one store file (a restored copy) never show
//! the same revision.

use crate::txn::{SqliteTxn, backend, exec_cached};
use newt_crypto::store::StoreError;
use newt_crypto::store::StoreTxn;

/// Covers Olm sessions; the `newt.` prefix is the store's own.
pub(crate) const OLM: &str = "newt.olm_revision";
/// Log rows kept, about (older revisions then count as unknown).
const OLM_CHANGE_ROWS: i64 = 4096;

/// A revision other than the Olm one, by what it covers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Covered {
    /// Inbound Megolm sessions.
    Inbound,
    /// Device records.
    Devices,
    /// Rooms.
    Rooms,
    /// Tracking records.
    Tracking,
    /// Outbound sessions' shared-with and withheld sets.
    OutboundSets,
}

impl Covered {
    const ALL: [Covered; 5] = [
        Covered::Inbound,
        Covered::Devices,
        Covered::Rooms,
        Covered::Tracking,
        Covered::OutboundSets,
    ];

    /// Its `kv` key.
    fn key(self) -> &'static str {
        match self {
            Covered::Inbound => "newt.inbound_revision",
            Covered::Devices => "newt.device_revision",
            Covered::Rooms => "newt.room_revision",
            Covered::Tracking => "newt.tracking_revision",
            Covered::OutboundSets => "newt.outbound_sets_revision",
        }
    }
}

/// What a transaction saved since it last bumped each revision.
#[derive(Default)]
pub(crate) struct Unbumped {
    /// Sender keys of Olm sessions saved.
    pub(crate) olm: Vec<String>,
    /// By [`Covered`]: whether something it covers was saved.
    marked: [bool; Covered::ALL.len()],
}

impl Unbumped {
    /// Something `covered` covers was saved.
    pub(crate) fn mark(&mut self, covered: Covered) {
        if let Some(flag) = self.marked.get_mut(covered as usize) {
            *flag = true;
        }
    }
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

    /// Bumps `covered`'s revision if something it covers was saved.
    fn bump(&mut self, covered: Covered) -> Result<(), StoreError> {
        let marked = self
            .unbumped
            .marked
            .get_mut(covered as usize)
            .is_some_and(std::mem::take);
        if marked {
            self.bump_revision(covered.key())?;
        }
        Ok(())
    }

    /// Every revision brought up to the saves so far.
    pub(crate) fn bump_all(&mut self) -> Result<(), StoreError> {
        self.bump_olm()?;
        Covered::ALL.into_iter().try_for_each(|c| self.bump(c))
    }

    /// `covered`'s revision as of every save so far.
    pub(crate) fn current_revision(&mut self, covered: Covered) -> Result<Option<u64>, StoreError> {
        self.bump(covered)?;
        self.revision(covered.key()).map(Some)
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

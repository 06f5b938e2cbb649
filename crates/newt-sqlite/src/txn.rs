//! A store transaction on SQLite.

use crate::key::StoreKey;
use newt_crypto::store::{AccountRecord, StoreError, StoreTxn};
use rusqlite::{OptionalExtension, Transaction};
use zeroize::Zeroizing;

const ACCOUNT_SLOT: &str = "account:pickle";

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// One SQLite transaction; dropped without [`StoreTxn::commit`], it rolls
/// back.
pub struct SqliteTxn<'a> {
    tx: Transaction<'a>,
    key: &'a StoreKey,
}

impl std::fmt::Debug for SqliteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTxn").finish_non_exhaustive()
    }
}

impl<'a> SqliteTxn<'a> {
    pub(crate) fn new(tx: Transaction<'a>, key: &'a StoreKey) -> Self {
        Self { tx, key }
    }

    /// Reads a named secret (for example the client's access token).
    pub fn load_secret(&mut self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .tx
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()
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
        self.tx
            .execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                rusqlite::params![name, sealed],
            )
            .map_err(backend)?;
        Ok(())
    }

    /// Removes a named secret.
    pub fn delete_secret(&mut self, name: &str) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM secrets WHERE name = ?1", [name])
            .map_err(backend)?;
        Ok(())
    }
}

impl StoreTxn for SqliteTxn<'_> {
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError> {
        let row: Option<(Vec<u8>, String)> = self
            .tx
            .query_row(
                "SELECT pickle, state FROM account WHERE id = 0",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let Some((sealed, state)) = row else {
            return Ok(None);
        };
        let pickle = self
            .key
            .open(ACCOUNT_SLOT, &sealed)
            .ok_or(StoreError::Decryption)?;
        Ok(Some(AccountRecord {
            pickle: serde_json::from_slice(&pickle).map_err(corrupt)?,
            state: serde_json::from_str(&state).map_err(corrupt)?,
        }))
    }

    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        let pickle = Zeroizing::new(serde_json::to_vec(&record.pickle).map_err(corrupt)?);
        let sealed = self
            .key
            .seal(ACCOUNT_SLOT, &pickle)
            .ok_or_else(|| StoreError::Backend("account too large to encrypt".into()))?;
        let state = serde_json::to_string(&record.state).map_err(corrupt)?;
        self.tx
            .execute(
                "INSERT INTO account (id, pickle, state) VALUES (0, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET pickle = excluded.pickle, state = excluded.state",
                rusqlite::params![sealed, state],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.tx
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(backend)
    }

    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().map_err(backend)
    }
}

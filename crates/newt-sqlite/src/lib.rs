//! # newt-sqlite
//!
//! The embedded default store for newt: SQLite (bundled), WAL, numbered
//! migrations, one writer at a time, and every secret encrypted at rest
//! with the [`StoreKey`].
//!
//! Opening checks, before writing anything, that the file is a healthy
//! SQLite database of a schema this version knows and that the key is the
//! one it was made with. A wrong key or a damaged file is a typed
//! [`OpenError`] and the file is left as it was.

mod checkpoint;
mod durability;
mod index_uses;
mod key;
mod migrations;
mod olm_sessions;
mod pending;
mod revision;
mod rooms;
mod runs;
mod txn;

pub use key::{KeyFileError, StoreKey};
pub use txn::SqliteTxn;

use newt_crypto::store::{Store, StoreError};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};

/// Slot of the value that proves the key is right.
const KEY_CHECK_SLOT: &str = "meta:key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"newt store key check v1";

/// Why a store could not be opened. The file was not modified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file is not a SQLite database, or it is damaged.
    #[error("{path} is not a readable newt store (corrupt or not a database): {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The store key does not match the one the store was made with.
    #[error("the store key does not open {0}")]
    WrongKey(PathBuf),
    /// The store was written by a newer newt.
    #[error("{path} has schema version {found}; this newt knows up to {known}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Schema version in the file.
        found: i64,
        /// Newest schema version this build knows.
        known: i64,
    },
    /// Another SQLite error (permissions, disk full, locked).
    #[error("opening {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
}

/// A newt store in one SQLite file.
pub struct SqliteStore {
    /// Dropped before `conn` (fields drop in order): its thread ends
    /// first, so closing `conn` finds no other connection and cleans up.
    checkpointer: Option<checkpoint::Checkpointer>,
    conn: Connection,
    key: StoreKey,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating it if it does not exist.
    pub fn open(path: &Path, key: StoreKey) -> Result<Self, OpenError> {
        let path_buf = path.to_path_buf();
        let sqlite = |source| OpenError::Sqlite {
            path: path_buf.clone(),
            source,
        };
        let exists = path.exists();
        let flags = if exists {
            // Never create or truncate an existing file by accident.
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite)?;
        if exists {
            check_readable(&conn, path)?;
        }
        let version = migrations::version(&conn).map_err(|e| corrupt(path, e))?;
        if version > migrations::LATEST {
            return Err(OpenError::TooNew {
                path: path_buf,
                found: version,
                known: migrations::LATEST,
            });
        }
        if version >= 1 {
            check_key(&conn, &key, path)?;
        }
        // Only now, with the file and key known good, may anything write.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // Commits sync only when they must (see `durability.rs`).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        // 16 MiB of page cache (the default is 2 MiB): a sync's rows and a
        // megabyte `/sendToDevice` body stay in memory until the commit.
        conn.pragma_update(None, "cache_size", -16384)
            .map_err(sqlite)?;
        // Room for every statement the store prepares (the default is
        // 16): an evicted statement is compiled again on its next use.
        conn.set_prepared_statement_cache_capacity(64);
        migrations::migrate(&conn, version, |tx| {
            if version == 0 {
                let sealed = key
                    .seal(KEY_CHECK_SLOT, KEY_CHECK_PLAINTEXT)
                    .ok_or_else(|| rusqlite::Error::InvalidQuery)?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_check', ?1)",
                    [sealed],
                )?;
            }
            Ok(())
        })
        .map_err(sqlite)?;
        let checkpointer = checkpoint::Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", checkpoint::FOREGROUND_PAGES)
                .map_err(sqlite)?;
        }
        Ok(Self {
            checkpointer,
            conn,
            key,
            path: path_buf,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Begins a write transaction. It takes the write lock at once, so two
    /// processes never interleave (DEV-09).
    pub fn begin(&mut self) -> Result<SqliteTxn<'_>, StoreError> {
        // Unchecked only in that the connection stays borrowed shared: the
        // commit syncs the log through it after the transaction ends.
        let conn = &self.conn;
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(txn::backend)?;
        Ok(SqliteTxn::new(
            tx,
            conn,
            &self.key,
            self.checkpointer.as_ref(),
        ))
    }
}

impl Store for SqliteStore {
    type Txn<'a> = SqliteTxn<'a>;

    fn transaction(&mut self) -> Result<SqliteTxn<'_>, StoreError> {
        self.begin()
    }
}

fn corrupt(path: &Path, e: rusqlite::Error) -> OpenError {
    OpenError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Reads the whole file once: a truncated or garbled database fails here.
fn check_readable(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let result: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| corrupt(path, e))?;
    if result != "ok" {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            detail: result,
        });
    }
    Ok(())
}

fn check_key(conn: &Connection, key: &StoreKey, path: &Path) -> Result<(), OpenError> {
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'key_check'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| corrupt(path, e))?;
    match key.open(KEY_CHECK_SLOT, &sealed) {
        Some(plain) if plain.as_slice() == KEY_CHECK_PLAINTEXT => Ok(()),
        _ => Err(OpenError::WrongKey(path.to_path_buf())),
    }
}

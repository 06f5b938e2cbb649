//! Storage seen from the state machine: one transaction per input.
//!
//! The machine never opens, commits or rolls back: the caller begins a
//! transaction, hands it to one `handle_*` call or command, and commits it
//! if the call succeeded. Dropping an uncommitted transaction rolls it back.

mod memory;
mod records;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use memory::{MemoryStore, MemoryTxn};
pub use records::{AccountRecord, AccountState, PendingUpload};

/// A storage failure. The input that hit it must be retried or dropped as a
/// whole; nothing was committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, SQL, locking).
    #[error("store backend failed: {0}")]
    Backend(String),
    /// A stored secret could not be decrypted: wrong store key or tampering.
    #[error("stored secret could not be decrypted (wrong store key?)")]
    Decryption,
    /// A stored value could not be decoded.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// A store: something that can begin a transaction.
pub trait Store {
    /// The transaction type.
    type Txn<'a>: StoreTxn
    where
        Self: 'a;

    /// Begins a transaction. Writes become visible only on commit.
    fn transaction(&mut self) -> Result<Self::Txn<'_>, StoreError>;
}

/// Everything the machine reads or writes, inside one transaction.
///
/// Each fact has exactly one place: the account (with its upload state)
/// and small named values for driver bookkeeping such as the sync token.
pub trait StoreTxn {
    /// The account, if one was created.
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError>;
    /// Replaces the account. The pickle is a secret: stores encrypt it.
    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError>;
    /// A small non-secret value, such as the sync token.
    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a small non-secret value.
    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Makes every write of this transaction durable, atomically.
    fn commit(self) -> Result<(), StoreError>;
}

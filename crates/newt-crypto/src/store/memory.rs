//! An in-memory store for tests and ephemeral clients.

use super::{AccountRecord, Store, StoreError, StoreTxn};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Committed state of a [`MemoryStore`].
#[derive(Clone, Default)]
struct State {
    /// Serialised account pickle and state. Kept in memory only.
    account: Option<(Zeroizing<String>, String)>,
    values: BTreeMap<String, String>,
}

/// A store that lives in memory. Transactions copy the state and write it
/// back on commit, so a dropped transaction leaves no trace.
#[derive(Default)]
pub struct MemoryStore {
    state: State,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A transaction on a [`MemoryStore`].
pub struct MemoryTxn<'a> {
    target: &'a mut State,
    working: State,
}

impl std::fmt::Debug for MemoryTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTxn").finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    type Txn<'a> = MemoryTxn<'a>;

    fn transaction(&mut self) -> Result<MemoryTxn<'_>, StoreError> {
        let working = self.state.clone();
        Ok(MemoryTxn {
            target: &mut self.state,
            working,
        })
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl StoreTxn for MemoryTxn<'_> {
    fn load_account(&mut self) -> Result<Option<AccountRecord>, StoreError> {
        let Some((pickle, state)) = &self.working.account else {
            return Ok(None);
        };
        Ok(Some(AccountRecord {
            pickle: serde_json::from_str(pickle).map_err(corrupt)?,
            state: serde_json::from_str(state).map_err(corrupt)?,
        }))
    }

    fn save_account(&mut self, record: &AccountRecord) -> Result<(), StoreError> {
        let pickle = Zeroizing::new(serde_json::to_string(&record.pickle).map_err(corrupt)?);
        let state = serde_json::to_string(&record.state).map_err(corrupt)?;
        self.working.account = Some((pickle, state));
        Ok(())
    }

    fn get_value(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.working.values.get(key).cloned())
    }

    fn set_value(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.working.values.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn commit(self) -> Result<(), StoreError> {
        *self.target = self.working;
        Ok(())
    }
}

#![no_main]
//! Fuzzes opening a store file: arbitrary bytes as the database must give
//! a typed error (or an empty store), never a panic, and never change the
//! file.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("store.db");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opened = newt_sqlite::SqliteStore::open(&path, newt_sqlite::StoreKey::from_bytes([7; 32]));
    match opened {
        Ok(mut store) => {
            if let Ok(mut txn) = store.begin() {
                let _ = newt_crypto::store::StoreTxn::load_account(&mut txn);
            }
        }
        Err(_) => assert_eq!(std::fs::read(&path).ok().as_deref(), Some(data), "a refused file changed"),
    }
});

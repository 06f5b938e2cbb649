//! Parsed Ed25519 keys, remembered between inputs: decoding a key is a
//! point decompression, and the same device key is checked when its
//! device list arrives and again when a one-time key is claimed. The cache
//! holds public keys only and is a pure function of its input text.

use std::collections::BTreeMap;
use std::sync::Mutex;
use vodozemac::Ed25519PublicKey;

/// Entries kept before the cache starts over.
const CAPACITY: usize = 16_384;

/// A bounded map from base64 text to parsed key.
#[derive(Default)]
pub(crate) struct KeyCache(Mutex<BTreeMap<String, Ed25519PublicKey>>);

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    /// Remembers a key that was just parsed.
    pub(crate) fn insert(&self, text: &str, key: Ed25519PublicKey) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(text.to_owned(), key);
        }
    }

    /// The parsed key, from the cache or freshly parsed.
    pub(crate) fn get(&self, text: &str) -> Option<Ed25519PublicKey> {
        if let Some(key) = self.0.lock().ok().and_then(|map| map.get(text).copied()) {
            return Some(key);
        }
        let key = crate::signing::parse_ed25519_key(text)?;
        self.insert(text, key);
        Some(key)
    }
}

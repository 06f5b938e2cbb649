//! The store key and the sealed boxes it makes.
//!
//! Decision: the store key is 32 random bytes kept in a key file created
//! with mode 0600 beside the database. Unattended clients (bots, scripts)
//! can open the store without a prompt, and copying the database alone
//! (backups, sync folders) leaks no secret. Callers that hold a key from
//! elsewhere (an OS keyring, a passphrase KDF) pass it with
//! [`StoreKey::from_bytes`].

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

const BOX_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// A 32-byte key that encrypts every secret in the store.
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey").finish_non_exhaustive()
    }
}

/// Why a key file could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not 32 bytes.
    #[error("key file {0} is not a 32-byte store key")]
    BadLength(String),
}

impl StoreKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// A key the caller obtained elsewhere.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads the key file, or creates it (mode 0600) with a new key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let array: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyFileError::BadLength(path.display().to_string()))?;
                Ok(Self::from_bytes(array))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                file.write_all(key.0.as_ref()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts `plaintext` for the slot named `slot`; `None` only if the
    /// input exceeds what the cipher can take.
    pub(crate) fn seal(&self, slot: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: slot.as_bytes(),
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(BOX_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Decrypts a box sealed for `slot`; `None` on a wrong key, a moved
    /// box or tampering.
    pub(crate) fn open(&self, slot: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&version, rest) = sealed.split_first()?;
        if version != BOX_VERSION || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: slot.as_bytes(),
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

//! The store key and the sealed boxes it makes.
//!
//! Decision: the store key is 32 random bytes kept in a key file created
//! with mode 0600 beside the database. Unattended clients (bots, scripts)
//! can open the store without a prompt, and copying the database alone
//! (backups, sync folders) leaks no secret. Callers that hold a key from
//! elsewhere (an OS keyring, a passphrase KDF) pass it with
//! [`StoreKey::from_bytes`].

//!
//! Decision: boxes are sealed with AES-256-GCM-SIV (version 2). Boxes of
//! version 1, XChaCha20-Poly1305, still open. A pickle is a few hundred
//! bytes; on this project's machine XChaCha20-Poly1305 took 2.0 µs to
//! seal one of 340 bytes and AES-256-GCM-SIV 0.8 µs, and a sync or a key
//! share seals one per Olm session. GCM-SIV keeps random 96-bit nonces
//! safe: a repeated nonce only shows that two plaintexts were equal. Its
//! key is derived from the store key, so no key serves two ciphers.

use aes_gcm_siv::Aes256GcmSiv;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// XChaCha20-Poly1305 with a 24-byte nonce: opened, no longer sealed.
const BOX_V1: u8 = 1;
const NONCE_V1: usize = 24;
/// AES-256-GCM-SIV with a 12-byte nonce.
const BOX_V2: u8 = 2;
const NONCE_V2: usize = 12;

/// A 32-byte key that encrypts every secret in the store.
pub struct StoreKey {
    raw: Zeroizing<[u8; 32]>,
    /// Version 2's cipher, its key schedule made once (zeroed on drop).
    v2: Aes256GcmSiv,
}

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
        Self::from_bytes(*bytes)
    }

    /// A key the caller obtained elsewhere.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let raw = Zeroizing::new(bytes);
        let v2 = Aes256GcmSiv::new(
            derive(&raw, b"newt-sqlite box v2 aes-256-gcm-siv")
                .as_ref()
                .into(),
        );
        Self { raw, v2 }
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
                file.write_all(key.raw.as_ref()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts `plaintext` for the slot named `slot`; `None` only if the
    /// input exceeds what the cipher can take.
    pub(crate) fn seal(&self, slot: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_V2];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .v2
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad: slot.as_bytes(),
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_V2 + sealed.len());
        out.push(BOX_V2);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Decrypts a box sealed for `slot`; `None` on a wrong key, a moved
    /// box or tampering. A changed version byte fails too: the other
    /// cipher cannot authenticate the box.
    pub(crate) fn open(&self, slot: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&version, rest) = sealed.split_first()?;
        let opened = match version {
            BOX_V1 if rest.len() >= NONCE_V1 => {
                let (nonce, ciphertext) = rest.split_at(NONCE_V1);
                XChaCha20Poly1305::new(self.raw.as_ref().into()).decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: slot.as_bytes(),
                    },
                )
            }
            BOX_V2 if rest.len() >= NONCE_V2 => {
                let (nonce, ciphertext) = rest.split_at(NONCE_V2);
                self.v2.decrypt(
                    nonce.into(),
                    Payload {
                        msg: ciphertext,
                        aad: slot.as_bytes(),
                    },
                )
            }
            _ => return None,
        };
        opened.ok().map(Zeroizing::new)
    }

    /// A version 1 box, as stores before version 2 sealed them.
    #[cfg(test)]
    pub(crate) fn seal_v1(&self, slot: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_V1];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = XChaCha20Poly1305::new(self.raw.as_ref().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: slot.as_bytes(),
                },
            )
            .ok()?;
        Some([&[BOX_V1][..], &nonce, &sealed].concat())
    }
}

/// A subkey of the store key for one use, named by `label`:
/// HMAC-SHA256(key, label).
fn derive(key: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC pads a short key with zeros to the block size; padding here
    // gives the same MAC through the constructor that cannot fail.
    let mut padded = Zeroizing::new([0u8; 64]);
    padded[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(padded.as_ref().into());
    mac.update(label);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_of_both_versions_open() {
        let key = StoreKey::from_bytes([9; 32]);
        let v2 = key.seal("slot", b"secret").unwrap();
        assert_eq!(v2[0], BOX_V2);
        assert_eq!(key.open("slot", &v2).unwrap().as_slice(), b"secret");
        let v1 = key.seal_v1("slot", b"old").unwrap();
        assert_eq!(key.open("slot", &v1).unwrap().as_slice(), b"old");
    }

    #[test]
    fn tampered_moved_or_relabelled_boxes_do_not_open() {
        let key = StoreKey::from_bytes([9; 32]);
        let other = StoreKey::from_bytes([8; 32]);
        for sealed in [
            key.seal("slot", b"secret").unwrap(),
            key.seal_v1("slot", b"secret").unwrap(),
        ] {
            assert!(key.open("other slot", &sealed).is_none());
            assert!(other.open("slot", &sealed).is_none());
            for at in [1, sealed.len() / 2, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[at] ^= 1;
                assert!(key.open("slot", &bad).is_none(), "flipped byte {at}");
            }
            // The same bytes under the other version's cipher.
            let mut relabelled = sealed.clone();
            relabelled[0] = if sealed[0] == BOX_V1 { BOX_V2 } else { BOX_V1 };
            assert!(key.open("slot", &relabelled).is_none());
            for cut in [0, 1, 12, 24, sealed.len() - 1] {
                assert!(key.open("slot", &sealed[..cut]).is_none(), "cut at {cut}");
            }
        }
        assert!(key.open("slot", &[3, 0, 0]).is_none());
    }

    /// RFC 4231 test case 2's shape: HMAC-SHA256 with a short key.
    #[test]
    fn derive_is_hmac_sha256() {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            derive(&key, b"what do ya want for nothing?").as_slice(),
            mac.finalize().into_bytes().as_slice()
        );
    }

    #[test]
    fn the_v2_key_is_not_the_store_key() {
        let raw = [9; 32];
        assert_ne!(*derive(&raw, b"newt-sqlite box v2 aes-256-gcm-siv"), raw);
        assert_ne!(
            *derive(&raw, b"a"),
            *derive(&raw, b"b"),
            "labels give different keys"
        );
    }
}

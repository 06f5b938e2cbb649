//! The key export file format (EXP-01..04): PBKDF2-HMAC-SHA512 key
//! derivation, AES-256-CTR, HMAC-SHA256, in the
//! `MEGOLM SESSION DATA` armour, so files move between newt and other
//! clients in both directions.

use aes::Aes256;
use ctr::Ctr64BE;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac13::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2_11::{Sha256, Sha512};
use zeroize::Zeroizing;

const HEADER: &str = "-----BEGIN MEGOLM SESSION DATA-----";
const TRAILER: &str = "-----END MEGOLM SESSION DATA-----";
const VERSION: u8 = 1;
/// Rounds used when exporting (EXP-03: at least 100 000).
pub const EXPORT_ROUNDS: u32 = 500_000;
/// Version, salt, IV and round count precede the ciphertext; the MAC
/// follows it.
const PREFIX: usize = 1 + 16 + 16 + 4;
const MAC: usize = 32;

/// Why a key file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyExportError {
    /// The BEGIN line is missing.
    #[error("not a key export: header line not found")]
    MissingHeader,
    /// The END line is missing.
    #[error("not a key export: trailer line not found")]
    MissingTrailer,
    /// The body is not base64.
    #[error("the key export is not valid base64")]
    Base64,
    /// The body is shorter than its fixed parts.
    #[error("invalid key export: too short")]
    TooShort,
    /// A format version we do not know.
    #[error("unsupported key export version {0}")]
    Version(u8),
    /// The MAC does not match: wrong passphrase or damaged file.
    #[error("wrong passphrase, or the file is damaged")]
    BadMac,
    /// The file asks for more key-derivation rounds than any exporter
    /// uses; refused rather than spending minutes on it.
    #[error("the key file asks for {0} key-derivation rounds (at most {MAX_ROUNDS} are accepted)")]
    TooManyRounds(u32),
}

/// The most PBKDF2 rounds an import accepts (exporters use 100,000 to
/// 500,000; the public vectors 10 and 1,000).
pub const MAX_ROUNDS: u32 = 10_000_000;

fn derive(passphrase: &str, salt: &[u8], rounds: u32) -> Zeroizing<[u8; 64]> {
    let mut keys = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<Sha512>(passphrase.as_bytes(), salt, rounds, keys.as_mut());
    keys
}

fn mac(key: &[u8], data: &[u8]) -> Result<Hmac<Sha256>, KeyExportError> {
    // HMAC takes keys of any length; the error cannot happen.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| KeyExportError::BadMac)?;
    mac.update(data);
    Ok(mac)
}

fn apply_ctr(key: &[u8], iv: &[u8], data: &mut [u8]) {
    // The counter is the IV's low 64 bits, as WebCrypto's AES-CTR with
    // `length: 64` (which the public vectors exercise with an all-ones IV).
    // Keys and IVs here always have the right lengths (32 and 16).
    if let Ok(mut cipher) = Ctr64BE::<Aes256>::new_from_slices(key, iv) {
        cipher.apply_keystream(data);
    }
}

/// Encrypts `plaintext` (the JSON array of sessions) with `passphrase`.
pub fn encrypt(plaintext: &[u8], passphrase: &str, rounds: u32) -> Result<String, KeyExportError> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut iv);
    // EXP-02: bit 63 of the IV is clear, so the counter never wraps.
    iv[8] &= 0x7f;
    let keys = derive(passphrase, &salt, rounds);
    let mut body = Vec::with_capacity(PREFIX + plaintext.len() + MAC);
    body.push(VERSION);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&iv);
    body.extend_from_slice(&rounds.to_be_bytes());
    let start = body.len();
    body.extend_from_slice(plaintext);
    apply_ctr(&keys[..32], &iv, &mut body[start..]);
    let tag = mac(&keys[32..], &body)?.finalize().into_bytes();
    body.extend_from_slice(&tag);
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &body);
    let mut out = String::from(HEADER);
    out.push('\n');
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(TRAILER);
    out.push('\n');
    Ok(out)
}

/// Decrypts a key export file. The MAC is checked, in constant time,
/// before anything is decrypted (EXP-04); any round count and IV are
/// accepted (EXP-03).
pub fn decrypt(file: &str, passphrase: &str) -> Result<Zeroizing<Vec<u8>>, KeyExportError> {
    let mut lines = file.lines().map(str::trim);
    if !lines.by_ref().any(|l| l == HEADER) {
        return Err(KeyExportError::MissingHeader);
    }
    let mut encoded = String::new();
    let mut closed = false;
    for line in lines {
        if line == TRAILER {
            closed = true;
            break;
        }
        encoded.push_str(line);
    }
    if !closed {
        return Err(KeyExportError::MissingTrailer);
    }
    let body =
        crate::b64::decode(encoded.trim_end_matches('=')).map_err(|_| KeyExportError::Base64)?;
    if body.len() < PREFIX + MAC {
        return Err(KeyExportError::TooShort);
    }
    if body[0] != VERSION {
        return Err(KeyExportError::Version(body[0]));
    }
    let salt = &body[1..17];
    let iv = &body[17..33];
    let rounds = u32::from_be_bytes([body[33], body[34], body[35], body[36]]);
    if rounds > MAX_ROUNDS {
        return Err(KeyExportError::TooManyRounds(rounds));
    }
    let (signed, tag) = body.split_at(body.len() - MAC);
    let keys = derive(passphrase, salt, rounds);
    mac(&keys[32..], signed)?
        .verify_slice(tag)
        .map_err(|_| KeyExportError::BadMac)?;
    let mut plaintext = Zeroizing::new(signed[PREFIX..].to_vec());
    apply_ctr(&keys[..32], iv, &mut plaintext);
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EXP-02, EXP-03: the public vectors (N = 10 and 1000, an IV with bit
    /// 63 set) decrypt to their plaintexts.
    #[test]
    fn public_vectors_decrypt() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/key_export_vectors.json")).unwrap();
        for vector in vectors.as_array().unwrap() {
            let plain = decrypt(
                vector["file"].as_str().unwrap(),
                vector["passphrase"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(
                plain.as_slice(),
                vector["plain"].as_str().unwrap().as_bytes()
            );
        }
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let file = encrypt(b"[{\"x\":1}]", "secret", 1000).unwrap();
        assert!(file.starts_with(HEADER) && file.trim_end().ends_with(TRAILER));
        assert_eq!(decrypt(&file, "secret").unwrap().as_slice(), b"[{\"x\":1}]");
        assert_eq!(decrypt(&file, "wrong"), Err(KeyExportError::BadMac));
        // The IV's bit 63 is clear.
        let body = crate::b64::decode(file.lines().nth(1).unwrap().trim_end_matches('=')).unwrap();
        assert_eq!(body[17 + 8] & 0x80, 0);
    }

    /// The malformed cases of the public test suite.
    #[test]
    fn malformed_files() {
        assert_eq!(decrypt("-----", ""), Err(KeyExportError::MissingHeader));
        assert_eq!(
            decrypt(&format!("{HEADER}\n-----"), ""),
            Err(KeyExportError::MissingTrailer)
        );
        let short = format!(
            "{HEADER}\nAXNhbHRzYWx0c2FsdHNhbHSIiIiIiIiIiIiIiIiIiIiIAAAACmIRUW2OjZ3L2l6j9h0lHlV3M2dx\ncissyYBxjsfsAn\n{TRAILER}\n"
        );
        assert_eq!(decrypt(&short, ""), Err(KeyExportError::TooShort));
        let mut tampered = encrypt(b"data", "pw", 10).unwrap();
        tampered = tampered.replacen("A", "B", 1);
        assert!(decrypt(&tampered, "pw").is_err());
    }
}

//! The Olm channel: sessions per device (CLM-*), encrypting to-device
//! payloads (OLM-01..03) and decrypting them with every check (OLM-05..13,
//! REC-01..03).

pub(crate) mod cache;
pub(crate) mod claim;
pub(crate) mod decrypt;
pub(crate) mod encrypt;
pub(crate) mod known;
pub(crate) mod pack;
pub(crate) mod sessions;
pub(crate) mod settled;

pub use decrypt::{DecryptedToDevice, SenderTrust, ToDeviceError};
pub use encrypt::EncryptOutcome;

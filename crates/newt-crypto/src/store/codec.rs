//! How stores encode pickles: a version byte, then MessagePack (compact,
//! self-describing binary serde; vodozemac's session pickles need a
//! self-describing format). Older JSON pickles (starting with `{`) still
//! decode.

use super::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

const MSGPACK: u8 = 1;

/// Encodes a pickle for storage. The bytes are secret: seal them.
pub fn encode_pickle<T: Serialize>(pickle: &T) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    // Room for a typical session pickle: no regrowth, which would cost
    // time and leave unzeroed copies of the secret behind.
    let mut out = Zeroizing::new(Vec::with_capacity(4096));
    out.push(MSGPACK);
    rmp_serde::encode::write(&mut *out, pickle).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Decodes a stored pickle (postcard, or JSON from older versions).
pub fn decode_pickle<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.first() {
        Some(&MSGPACK) => {
            rmp_serde::from_slice(&bytes[1..]).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string())),
        _ => Err(StoreError::Corrupt("unknown pickle encoding".into())),
    }
}

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
    let mut out = Zeroizing::new(vec![MSGPACK]);
    let body =
        Zeroizing::new(rmp_serde::to_vec(pickle).map_err(|e| StoreError::Corrupt(e.to_string()))?);
    out.extend_from_slice(&body);
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

//! How stores encode pickles: a version byte, then MessagePack (compact,
//! self-describing binary serde; vodozemac's session pickles need a
//! self-describing format). Older JSON pickles (starting with `{`) still
//! decode.

use super::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::marker::PhantomData;
use zeroize::{Zeroize, Zeroizing};

const MSGPACK: u8 = 1;

thread_local! {
    /// Where pickles are encoded first: a buffer that grew while encoding
    /// would leave unzeroed copies of the secret behind, and one sized for
    /// the largest pickle is too big to keep per record.
    static SCRATCH: RefCell<Zeroizing<Vec<u8>>> = RefCell::new(Zeroizing::new(Vec::with_capacity(4096)));
}

/// Encodes a pickle for storage. The bytes are secret: seal them.
pub fn encode_pickle<T: Serialize>(pickle: &T) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch
            .try_borrow_mut()
            .map_err(|_| StoreError::Corrupt("pickle encoding re-entered".into()))?;
        scratch.push(MSGPACK);
        // Our encoder writes what rmp_serde writes, faster; anything it
        // does not handle goes through rmp_serde.
        let written = match super::msgpack::write(&mut scratch, pickle) {
            Ok(()) => Ok(()),
            Err(_) => {
                scratch[1..].zeroize();
                scratch.truncate(1);
                rmp_serde::encode::write(&mut **scratch, pickle)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            }
        };
        // Exactly the encoded length: records keep no spare capacity.
        let out = written.map(|()| Zeroizing::new(scratch.to_vec()));
        // Writes may reach past the end and be cut back (see `msgpack`):
        // the bytes just past it are wiped too.
        let spare = scratch.spare_capacity_mut();
        let past = spare.len().min(super::msgpack::WRITTEN_PAST_END);
        spare[..past].zeroize();
        scratch.as_mut_slice().zeroize();
        scratch.clear();
        out
    })
}

/// A pickle encoded for storage, typed by what it decodes to. Stores keep
/// its bytes as they are (sealed at rest) and hand them back: encoding and
/// decoding happen where the session lives, on whichever core works on it,
/// and no store needs to know vodozemac's pickle types.
pub struct Encoded<T> {
    bytes: Zeroizing<Vec<u8>>,
    kind: PhantomData<fn() -> T>,
}

impl<T> Encoded<T> {
    /// Bytes a store kept, to be decoded when the session is needed.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self {
            bytes,
            kind: PhantomData,
        }
    }

    /// The bytes to keep. Secret: seal them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T: Serialize> Encoded<T> {
    /// Encodes `pickle`.
    pub fn encode(pickle: &T) -> Result<Self, StoreError> {
        encode_pickle(pickle).map(Self::from_bytes)
    }
}

impl<T: DeserializeOwned> Encoded<T> {
    /// Decodes the pickle; a store's damaged bytes give `Corrupt`.
    pub fn decode(&self) -> Result<T, StoreError> {
        decode_pickle(&self.bytes)
    }
}

impl<T> Clone for Encoded<T> {
    fn clone(&self) -> Self {
        Self::from_bytes(self.bytes.clone())
    }
}

/// Secret: only the length shows.
impl<T> std::fmt::Debug for Encoded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.bytes.len())
    }
}

/// Decodes a stored pickle (MessagePack, or JSON from older versions).
pub fn decode_pickle<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.first() {
        Some(&MSGPACK) => {
            rmp_serde::from_slice(&bytes[1..]).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string())),
        _ => Err(StoreError::Corrupt("unknown pickle encoding".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::olm::{Account, AccountPickle};

    #[test]
    fn each_encoding_holds_one_pickle_and_no_spare_room() {
        let (first, second) = (Account::new(), Account::new());
        let a = encode_pickle(&first.pickle()).unwrap();
        let b = encode_pickle(&second.pickle()).unwrap();
        assert_eq!(a.len(), a.capacity());
        for (bytes, account) in [(a, first), (b, second)] {
            let back: AccountPickle = decode_pickle(&bytes).unwrap();
            assert_eq!(
                Account::from_pickle(back).curve25519_key(),
                account.curve25519_key()
            );
        }
    }

    /// What our encoder does not write (here a MessagePack extension)
    /// still encodes, through rmp_serde.
    #[test]
    fn what_our_encoder_refuses_goes_through_rmp_serde() {
        struct Ext;
        impl serde::Serialize for Ext {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_newtype_struct("_ExtStruct", &(5i8, serde_bytes_like()))
            }
        }
        fn serde_bytes_like() -> Raw {
            Raw(vec![1, 2, 3])
        }
        struct Raw(Vec<u8>);
        impl serde::Serialize for Raw {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
        let encoded = encode_pickle(&(1u8, Ext)).unwrap();
        let mut expected = vec![MSGPACK];
        expected.extend(rmp_serde::to_vec(&(1u8, Ext)).unwrap());
        assert_eq!(encoded.as_slice(), expected.as_slice());
        // The extension is there, not an array in its place.
        assert_eq!(encoded[3], 0xc7);
    }
}

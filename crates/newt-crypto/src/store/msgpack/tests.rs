//! The encoder against rmp_serde, byte for byte.

use super::write;
use serde::Serialize;
use std::collections::BTreeMap;
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig as MegolmConfig};
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

fn same<T: Serialize + ?Sized>(value: &T) {
    let mut ours = Vec::new();
    write(&mut ours, value).unwrap();
    assert_eq!(ours, rmp_serde::to_vec(value).unwrap());
}

#[derive(Serialize)]
enum Variants {
    Unit,
    Newtype(u8),
    Tuple(u8, String),
    Struct { a: i64, b: Option<bool> },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Tagged {
    One { key: [u8; 32] },
    Two { n: u32 },
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Newtype(Vec<u8>);

#[derive(Serialize)]
struct Skips {
    kept: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    gone: Option<u8>,
}

struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// A sequence and a map whose length is not known up front.
struct Unsized(Vec<u16>);

impl Serialize for Unsized {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for v in &self.0 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

struct UnsizedMap(Vec<(String, u64)>);

impl Serialize for UnsizedMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Every byte, alone and inside a key: bytes are written without a branch.
#[test]
fn every_byte_value() {
    let mut key = [0u8; 32];
    for v in 0..=255u8 {
        same(&v);
        key[usize::from(v) % 32] = v;
        same(&key);
    }
}

#[test]
fn numbers_at_every_boundary() {
    for v in [
        0u64,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        4_294_967_295,
        4_294_967_296,
        u64::MAX,
    ] {
        same(&v);
        same(&(v as u8));
        same(&(v as u16));
        same(&(v as u32));
    }
    for v in [
        0i64,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32_768,
        -32_769,
        -2_147_483_648,
        -2_147_483_649,
        i64::MIN,
        127,
        128,
        255,
        256,
        65_536,
        i64::MAX,
    ] {
        same(&v);
        same(&(v as i8));
        same(&(v as i16));
        same(&(v as i32));
    }
    same(&u128::MAX);
    same(&i128::MIN);
    same(&1.5f32);
    same(&-2.25f64);
    same(&(true, false, (), 'é', Unit));
}

#[test]
fn lengths_at_every_boundary() {
    for len in [0usize, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
        same(&"x".repeat(len));
        same(&Bytes(vec![0xab; len]));
        same(&vec![200u8; len]);
        let map: BTreeMap<u32, bool> = (0..len as u32).map(|i| (i, i % 2 == 0)).collect();
        same(&map);
    }
}

#[test]
fn containers_and_enums() {
    same(&[7u8; 32]);
    same(&Newtype(vec![1, 200, 3]));
    same(&vec![
        Variants::Unit,
        Variants::Newtype(9),
        Variants::Tuple(1, "t".into()),
    ]);
    same(&Variants::Struct { a: -5, b: None });
    same(&Variants::Struct {
        a: 5,
        b: Some(true),
    });
    same(&vec![
        Tagged::One { key: [255; 32] },
        Tagged::Two { n: 70_000 },
    ]);
    same(&Skips {
        kept: 1,
        gone: None,
    });
    same(&Skips {
        kept: 1,
        gone: Some(2),
    });
    same(&Some(Box::new([1u8, 2, 3])));
    same(&Unsized((0..20).collect()));
    same(&UnsizedMap(
        (0..20).map(|i| (format!("k{i}"), i * 1000)).collect(),
    ));
}

/// Every pickle vodozemac gives us, in the states a store sees them:
/// the format on disk does not change.
#[test]
fn vodozemac_pickles_encode_as_rmp_serde_does() {
    let mut alice = Account::new();
    let mut bob = Account::new();
    alice.generate_one_time_keys(5);
    bob.generate_one_time_keys(5);
    bob.generate_fallback_key();
    same(&alice.pickle());
    same(&bob.pickle());
    let otk = *bob.one_time_keys().values().next().unwrap();
    let mut outbound = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    same(&outbound.pickle());
    let OlmMessage::PreKey(first) = outbound.encrypt("one").unwrap() else {
        panic!("expected a pre-key message");
    };
    same(&outbound.pickle());
    let mut inbound = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &first)
        .unwrap()
        .session;
    same(&inbound.pickle());
    same(&bob.pickle());
    // Replies and skipped messages give both sides receiving chains
    // and kept message keys.
    let _skipped = inbound.encrypt("skipped").unwrap();
    let reply = inbound.encrypt("reply").unwrap();
    outbound.decrypt(&reply).unwrap();
    let back = outbound.encrypt("back").unwrap();
    inbound.decrypt(&back).unwrap();
    same(&outbound.pickle());
    same(&inbound.pickle());
    let mut group = GroupSession::new(MegolmConfig::version_1());
    let mut received = InboundGroupSession::new(&group.session_key(), MegolmConfig::version_1());
    let message = group.encrypt("hello");
    received.decrypt(&message).unwrap();
    same(&group.pickle());
    same(&received.pickle());
}

/// A tuple of any length: bytes, then (if given) a non-byte, then bytes.
struct ByteTuple(Vec<u8>, Option<(u32, Vec<u8>)>);

impl Serialize for ByteTuple {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let more = self.1.as_ref().map_or(0, |(_, b)| 1 + b.len());
        let mut tuple = s.serialize_tuple(self.0.len() + more)?;
        for b in &self.0 {
            tuple.serialize_element(b)?;
        }
        if let Some((n, bytes)) = &self.1 {
            tuple.serialize_element(n)?;
            for b in bytes {
                tuple.serialize_element(b)?;
            }
        }
        tuple.end()
    }
}

#[test]
fn tuples_of_bytes_and_mixed_tuples_match() {
    let bytes: Vec<u8> = (0..=255).collect();
    same(&ByteTuple(bytes.clone(), None));
    same(&ByteTuple(bytes[..64].to_vec(), None));
    same(&ByteTuple(
        bytes[100..230].to_vec(),
        Some((9, vec![0xee; 3])),
    ));
    same(&ByteTuple(
        Vec::new(),
        Some((70_000, bytes[120..140].to_vec())),
    ));
    same(&[0u8; 0]);
    same(&[0x7fu8, 0x80, 0xff, 0]);
    same(&[0xabu8; 32]);
    same(&(1u8, 200u8, String::from("x"), 3u8, 250u8));
    same(&(String::from("first"), 1u8, 2u8));
    same(&(7u8, 300u16, 255u8));
    same(&[Some(1u8), None, Some(200)]);
    same(&[[1u8, 200], [3, 4], [250, 6]]);
    same(&[1i8, -1, -100]);
}

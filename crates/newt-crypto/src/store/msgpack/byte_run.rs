//! Tuples of bytes (keys: `[u8; 32]`) written in one go. serde hands such
//! a tuple over one `u8` at a time; each is caught here by a serializer
//! that accepts a `u8` and nothing else, kept aside, and the run is
//! encoded in a tight loop when it ends or meets something else.

use super::Unsupported;
use serde::Serialize;
use serde::ser::{self, Impossible};
use zeroize::Zeroize;

/// Bytes kept at most before they are written out.
const RUN: usize = 64;

/// A flush sizes for two bytes each and cuts back to what it wrote.
pub(super) const WRITTEN_PAST_END: usize = 2 * RUN;

/// A tuple's bytes not yet written: key material, wiped once written.
pub(super) struct ByteRun {
    bytes: [u8; RUN],
    len: usize,
}

impl ByteRun {
    pub(super) fn new() -> Self {
        Self {
            bytes: [0; RUN],
            len: 0,
        }
    }

    /// Keeps `value` if it is a `u8`; `false` (nothing kept) otherwise.
    #[inline]
    pub(super) fn keep<T: Serialize + ?Sized>(&mut self, value: &T, out: &mut Vec<u8>) -> bool {
        let Ok(byte) = value.serialize(ByteProbe) else {
            return false;
        };
        if self.len == RUN {
            self.flush(out);
        }
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
        true
    }

    /// Writes the kept bytes as MessagePack integers, as `serialize_u8`
    /// would one by one: a byte of 128 or more gets the 0xcc marker. Room
    /// for two bytes each is made and the rest cut off again, so up to
    /// [`WRITTEN_PAST_END`] bytes past the end may hold key bytes.
    pub(super) fn flush(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + 2 * self.len, 0);
        let mut at = start;
        for &byte in &self.bytes[..self.len.min(RUN)] {
            // Without a branch: key bytes are random.
            let high = usize::from(byte >> 7);
            let first = byte ^ ((byte ^ 0xcc) & 0u8.wrapping_sub(byte >> 7));
            if let Some(pair) = out.get_mut(at..at + 2) {
                pair[0] = first;
                pair[1] = byte;
            }
            at += 1 + high;
        }
        out.truncate(at);
        self.len = 0;
    }
}

impl Drop for ByteRun {
    fn drop(&mut self) {
        self.bytes.as_mut_slice().zeroize();
    }
}

/// Accepts a `u8`; anything else is an error, and nothing is written.
struct ByteProbe;

fn not_a_byte() -> Unsupported {
    Unsupported(String::new())
}

impl ser::Serializer for ByteProbe {
    type Ok = u8;
    type Error = Unsupported;
    type SerializeSeq = Impossible<u8, Unsupported>;
    type SerializeTuple = Impossible<u8, Unsupported>;
    type SerializeTupleStruct = Impossible<u8, Unsupported>;
    type SerializeTupleVariant = Impossible<u8, Unsupported>;
    type SerializeMap = Impossible<u8, Unsupported>;
    type SerializeStruct = Impossible<u8, Unsupported>;
    type SerializeStructVariant = Impossible<u8, Unsupported>;

    fn is_human_readable(&self) -> bool {
        false
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<u8, Unsupported> {
        Ok(v)
    }
    fn serialize_bool(self, _: bool) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_i8(self, _: i8) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_i16(self, _: i16) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_i32(self, _: i32) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_i64(self, _: i64) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_u16(self, _: u16) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_u32(self, _: u32) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_u64(self, _: u64) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_f32(self, _: f32) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_f64(self, _: f64) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_char(self, _: char) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_str(self, _: &str) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_none(self) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_unit(self) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Err(not_a_byte())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        Err(not_a_byte())
    }
}

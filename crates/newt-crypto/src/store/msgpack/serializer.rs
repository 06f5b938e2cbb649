//! `serde::Serializer` for the encoder: each call maps to one write.

use super::{Compound, Encoder, Unsupported};
use serde::ser::{self, Serialize};

impl<'b, 'a> ser::Serializer for &'b mut Encoder<'a>
where
    'a: 'b,
{
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Compound<'b, 'a>;
    type SerializeTuple = Compound<'b, 'a>;
    type SerializeTupleStruct = Compound<'b, 'a>;
    type SerializeTupleVariant = Compound<'b, 'a>;
    type SerializeMap = Compound<'b, 'a>;
    type SerializeStruct = Compound<'b, 'a>;
    type SerializeStructVariant = Compound<'b, 'a>;

    // As rmp_serde's default: keys are written as bytes, not text.
    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        self.sint(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        self.sint(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        self.sint(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        self.sint(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        self.bytes(&v.to_be_bytes())
    }
    /// Without a branch: key bytes are random, so a branch on the high
    /// bit would be mispredicted for every other byte. Both bytes go in,
    /// and the marker stays only in front of a byte of 128 or more.
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        let high = v >> 7;
        // 0xcc when the high bit is set, else the byte itself.
        let first = v ^ ((v ^ 0xcc) & 0u8.wrapping_sub(high));
        let len = self.out.len();
        self.out.extend_from_slice(&[first, v]);
        self.out.truncate(len + 1 + usize::from(high));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.uint(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.uint(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.uint(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        self.bytes(&v.to_be_bytes())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        self.put(0xca, &v.to_be_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        self.put(0xcb, &v.to_be_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        self.bytes(v)
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unsupported> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.array_len(0)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        // rmp_serde's extension type travels as this newtype.
        if name == "_ExtStruct" {
            return Err(Unsupported("MessagePack extension".into()));
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        self.map_len(1)?;
        self.str(variant)?;
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'b, 'a>, Unsupported> {
        self.compound(len, false)
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'b, 'a>, Unsupported> {
        self.tuple(len)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Unsupported> {
        self.compound(Some(len), false)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Unsupported> {
        self.variant(variant, len)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'b, 'a>, Unsupported> {
        self.compound(len, true)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Unsupported> {
        self.compound(Some(len), false)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'b, 'a>, Unsupported> {
        self.variant(variant, len)
    }
}

/// serde's compound traits differ only in the name of the method that
/// takes an item (and whether a field name comes with it).
macro_rules! compound {
    ($name:ident, $method:ident $(, $field_name:ty)?) => {
        impl ser::$name for Compound<'_, '_> {
            type Ok = ();
            type Error = Unsupported;
            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $(_: $field_name,)?
                value: &T,
            ) -> Result<(), Unsupported> {
                self.item(value)
            }
            fn end(self) -> Result<(), Unsupported> {
                self.finish()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, &'static str);
compound!(SerializeStructVariant, serialize_field, &'static str);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.item(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        self.item(value)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.finish()
    }
}

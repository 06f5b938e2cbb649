//! A MessagePack encoder for pickles, byte for byte what `rmp_serde`
//! writes with its default settings (structs as arrays, enum variants by
//! name), so stored pickles keep their format and `rmp_serde` reads them.
//!
//! Why our own: serde hands a key (`[u8; 32]`) over one byte at a time,
//! and `rmp_serde` writes each through its generic writer; a session
//! pickle holds about ten keys, and that was most of its encoding time.
//! Here each byte is one push into the buffer.

use serde::ser::{self, Serialize};
use zeroize::Zeroizing;

/// What this encoder does not write; the caller falls back to `rmp_serde`.
#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// How far past the end of `out` a write may have put bytes it then cut
/// off: a byte run's worst case. Whoever wipes `out` wipes this far too.
pub(crate) const WRITTEN_PAST_END: usize = byte_run::WRITTEN_PAST_END;

/// Appends `value` to `out` as MessagePack.
pub(crate) fn write<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), Unsupported> {
    value.serialize(&mut Encoder { out })
}

pub(super) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Encoder<'a> {
    /// A marker byte and the value's bytes after it.
    fn put(&mut self, marker: u8, bytes: &[u8]) {
        self.out.push(marker);
        self.out.extend_from_slice(bytes);
    }

    /// Integers always encode; the `Result` lets serde's methods return
    /// this call.
    fn uint(&mut self, v: u64) -> Result<(), Unsupported> {
        if v < 128 {
            self.out.push(v as u8);
        } else if v < 256 {
            self.out.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 65_536 {
            self.put(0xcd, &(v as u16).to_be_bytes());
        } else if v < 4_294_967_296 {
            self.put(0xce, &(v as u32).to_be_bytes());
        } else {
            self.put(0xcf, &v.to_be_bytes());
        }
        Ok(())
    }

    fn sint(&mut self, v: i64) -> Result<(), Unsupported> {
        if v >= 0 {
            return self.uint(v as u64);
        }
        if v >= -32 {
            self.out.push(v as u8);
        } else if v >= -128 {
            self.out.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= -32_768 {
            self.put(0xd1, &(v as i16).to_be_bytes());
        } else if v >= -2_147_483_648 {
            self.put(0xd2, &(v as i32).to_be_bytes());
        } else {
            self.put(0xd3, &v.to_be_bytes());
        }
        Ok(())
    }

    /// A length after its marker: `fix` below `fix_limit`, then 8 (if
    /// the type has it), 16 and 32 bits.
    fn len(
        &mut self,
        len: usize,
        fix: u8,
        fix_limit: usize,
        markers: [Option<u8>; 3],
    ) -> Result<(), Unsupported> {
        let [m8, m16, m32] = markers;
        match (len, m8) {
            (len, _) if len < fix_limit => self.out.push(fix | len as u8),
            (len, Some(m8)) if len < 256 => self.out.extend_from_slice(&[m8, len as u8]),
            (len, _) if len < 65_536 => {
                self.out.push(m16.unwrap_or_default());
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                let len =
                    u32::try_from(len).map_err(|_| Unsupported("length over 32 bits".into()))?;
                self.out.push(m32.unwrap_or_default());
                self.out.extend_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }

    fn str_len(&mut self, len: usize) -> Result<(), Unsupported> {
        self.len(len, 0xa0, 32, [Some(0xd9), Some(0xda), Some(0xdb)])
    }

    fn bin_len(&mut self, len: usize) -> Result<(), Unsupported> {
        self.len(len, 0, 0, [Some(0xc4), Some(0xc5), Some(0xc6)])
    }

    fn array_len(&mut self, len: usize) -> Result<(), Unsupported> {
        self.len(len, 0x90, 16, [None, Some(0xdc), Some(0xdd)])
    }

    fn map_len(&mut self, len: usize) -> Result<(), Unsupported> {
        self.len(len, 0x80, 16, [None, Some(0xde), Some(0xdf)])
    }

    fn str(&mut self, v: &str) -> Result<(), Unsupported> {
        self.str_len(v.len())?;
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }

    fn bytes(&mut self, v: &[u8]) -> Result<(), Unsupported> {
        self.bin_len(v.len())?;
        self.out.extend_from_slice(v);
        Ok(())
    }

    /// A tuple or struct variant: `{variant: [items]}`.
    fn variant<'b>(&'b mut self, variant: &str, len: usize) -> Result<Compound<'b, 'a>, Unsupported>
    where
        'a: 'b,
    {
        self.map_len(1)?;
        self.str(variant)?;
        self.compound(Some(len), false)
    }

    /// A sequence or map of known length writes its header now; one of
    /// unknown length is written aside and counted.
    fn compound<'b>(
        &'b mut self,
        len: Option<usize>,
        map: bool,
    ) -> Result<Compound<'b, 'a>, Unsupported>
    where
        'a: 'b,
    {
        let pending = match len {
            Some(len) if map => self.map_len(len).map(|()| None)?,
            Some(len) => self.array_len(len).map(|()| None)?,
            None => Some(Pending {
                body: Zeroizing::new(Vec::new()),
                count: 0,
                map,
            }),
        };
        Ok(Compound {
            en: self,
            pending,
            run: None,
        })
    }

    /// A tuple: an array whose bytes are gathered into runs.
    fn tuple<'b>(&'b mut self, len: usize) -> Result<Compound<'b, 'a>, Unsupported>
    where
        'a: 'b,
    {
        let mut compound = self.compound(Some(len), false)?;
        compound.run = Some(byte_run::ByteRun::new());
        Ok(compound)
    }
}

pub(super) struct Pending {
    /// Pickles are secret: this copy is wiped when dropped.
    body: Zeroizing<Vec<u8>>,
    count: usize,
    map: bool,
}

pub(super) struct Compound<'b, 'a> {
    en: &'b mut Encoder<'a>,
    pending: Option<Pending>,
    /// A tuple's bytes so far (see `byte_run`); `None` once an item was
    /// not a byte.
    run: Option<byte_run::ByteRun>,
}

impl Compound<'_, '_> {
    #[inline]
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        if let Some(run) = &mut self.run {
            if run.keep(value, self.en.out) {
                return Ok(());
            }
            // Not a byte: what came before goes first, then one by one.
            run.flush(self.en.out);
            self.run = None;
        }
        match &mut self.pending {
            None => value.serialize(&mut *self.en),
            Some(pending) => {
                pending.count += 1;
                value.serialize(&mut Encoder {
                    out: &mut pending.body,
                })
            }
        }
    }

    fn finish(mut self) -> Result<(), Unsupported> {
        if let Some(run) = &mut self.run {
            run.flush(self.en.out);
        }
        if let Some(pending) = self.pending {
            // A map's count was bumped for its keys and values alike.
            if pending.map {
                self.en.map_len(pending.count / 2)?;
            } else {
                self.en.array_len(pending.count)?;
            }
            self.en.out.extend_from_slice(&pending.body);
        }
        Ok(())
    }
}

mod byte_run;
mod serializer;
#[cfg(test)]
mod tests;

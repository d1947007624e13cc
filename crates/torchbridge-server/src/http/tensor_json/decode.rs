//! JSON `data` → a tensor buffer: numbers and booleans through the scanner, `BYTES`
//! strings through serde (see the parent module).

use std::fmt;

use half::{bf16, f16};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use torchbridge_core::DataType;

use super::element::Bool;
use super::scan::scan;

/// The decoded elements of one input: its buffer and how many elements it holds.
#[derive(Debug, Default)]
pub struct Decoded {
    pub bytes: Vec<u8>,
    pub count: usize,
}

/// Decodes one input's `data` as `datatype`; `capacity` (elements) pre-sizes the buffer.
#[derive(Debug, Clone, Copy)]
pub struct DataSeed<'a> {
    pub name: &'a str,
    pub datatype: DataType,
    pub capacity: usize,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = Decoded;

    /// Numbers: the value's text is borrowed from the body (serde_json only skips over
    /// it) and scanned. Strings: read by serde, element by element.
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Decoded, D::Error> {
        if self.datatype == DataType::Bytes {
            return self.strings(d);
        }
        let raw = <&RawValue>::deserialize(d)?;
        self.decode_text(raw.get()).map_err(de::Error::custom)
    }
}

impl DataSeed<'_> {
    /// Decodes `data` given as its JSON text.
    pub fn decode_text(self, text: &str) -> Result<Decoded, String> {
        let text = text.as_bytes();
        let size = self.datatype.size().unwrap_or(8);
        match self.datatype {
            DataType::Bool => scan::<Bool>(text, self, size),
            DataType::Uint8 => scan::<u8>(text, self, size),
            DataType::Uint16 => scan::<u16>(text, self, size),
            DataType::Uint32 => scan::<u32>(text, self, size),
            DataType::Uint64 => scan::<u64>(text, self, size),
            DataType::Int8 => scan::<i8>(text, self, size),
            DataType::Int16 => scan::<i16>(text, self, size),
            DataType::Int32 => scan::<i32>(text, self, size),
            DataType::Int64 => scan::<i64>(text, self, size),
            DataType::Fp16 => scan::<f16>(text, self, size),
            DataType::Fp32 => scan::<f32>(text, self, size),
            DataType::Fp64 => scan::<f64>(text, self, size),
            DataType::Bf16 => scan::<bf16>(text, self, size),
            DataType::Bytes => {
                let mut d = serde_json::Deserializer::from_slice(text);
                let decoded = self.strings(&mut d).map_err(|e| e.to_string())?;
                d.end().map_err(|e| e.to_string())?;
                Ok(decoded)
            }
        }
    }

    fn strings<'de, D: Deserializer<'de>>(self, d: D) -> Result<Decoded, D::Error> {
        let mut out = Decoded {
            bytes: Vec::with_capacity(self.capacity.saturating_mul(8)),
            count: 0,
        };
        d.deserialize_any(Strings {
            out: &mut out,
            seed: self,
        })?;
        Ok(out)
    }
}

/// Visits a string or an array of arrays of … strings, writing each as a little-endian
/// `u32` length and its bytes.
struct Strings<'s, 'a> {
    out: &'s mut Decoded,
    seed: DataSeed<'a>,
}

impl Strings<'_, '_> {
    fn refuse<E: de::Error>(&self, got: &str) -> E {
        let DataSeed { name, datatype, .. } = self.seed;
        E::custom(format!("input `{name}`: {datatype} data cannot hold {got}"))
    }
}

impl<'de> DeserializeSeed<'de> for Strings<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strings<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let DataSeed { name, datatype, .. } = self.seed;
        write!(
            f,
            "{datatype} data (a flat or nested array) for input `{name}`"
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (out, seed) = (self.out, self.seed);
        while seq
            .next_element_seed(Strings {
                out: &mut *out,
                seed,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let len =
            u32::try_from(v.len()).map_err(|_| self.refuse::<E>("a string longer than 4 GiB"))?;
        self.out.bytes.extend_from_slice(&len.to_le_bytes());
        self.out.bytes.extend_from_slice(v.as_bytes());
        self.out.count += 1;
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.refuse("a number"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.refuse("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.refuse("a number"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.refuse("a boolean"))
    }
}

//! JSON `data` → a tensor buffer, one element at a time (see the parent module).

use std::fmt;
use std::marker::PhantomData;

use half::{bf16, f16};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use torchbridge_core::DataType;

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

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Decoded, D::Error> {
        match self.datatype {
            DataType::Bool => self.run::<Bool, D>(d),
            DataType::Uint8 => self.run::<u8, D>(d),
            DataType::Uint16 => self.run::<u16, D>(d),
            DataType::Uint32 => self.run::<u32, D>(d),
            DataType::Uint64 => self.run::<u64, D>(d),
            DataType::Int8 => self.run::<i8, D>(d),
            DataType::Int16 => self.run::<i16, D>(d),
            DataType::Int32 => self.run::<i32, D>(d),
            DataType::Int64 => self.run::<i64, D>(d),
            DataType::Fp16 => self.run::<f16, D>(d),
            DataType::Fp32 => self.run::<f32, D>(d),
            DataType::Fp64 => self.run::<f64, D>(d),
            DataType::Bf16 => self.run::<bf16, D>(d),
            DataType::Bytes => self.run::<Str, D>(d),
        }
    }
}

impl DataSeed<'_> {
    fn run<'de, P: Put, D: Deserializer<'de>>(self, d: D) -> Result<Decoded, D::Error> {
        let size = self.datatype.size().unwrap_or(8);
        let mut sink = Sink {
            out: Decoded {
                bytes: Vec::with_capacity(self.capacity.saturating_mul(size)),
                count: 0,
            },
            seed: self,
        };
        d.deserialize_any(Flatten::<P> {
            sink: &mut sink,
            put: PhantomData,
        })?;
        Ok(sink.out)
    }
}

struct Sink<'a> {
    out: Decoded,
    seed: DataSeed<'a>,
}

impl Sink<'_> {
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        self.out.bytes.extend_from_slice(bytes);
        self.out.count += 1;
    }
}

/// Why an element was refused.
enum Reject {
    WrongType(&'static str),
    OutOfRange(String),
}

/// Writes one JSON scalar as an element of one datatype. Anything not overridden is
/// the wrong JSON type for it.
trait Put {
    fn u64(_: &mut Sink, _: u64) -> Result<(), Reject> {
        Err(Reject::WrongType("a number"))
    }
    fn i64(_: &mut Sink, _: i64) -> Result<(), Reject> {
        Err(Reject::WrongType("a number"))
    }
    fn f64(_: &mut Sink, _: f64) -> Result<(), Reject> {
        Err(Reject::WrongType("a number"))
    }
    fn bool(_: &mut Sink, _: bool) -> Result<(), Reject> {
        Err(Reject::WrongType("a boolean"))
    }
    fn str(_: &mut Sink, _: &str) -> Result<(), Reject> {
        Err(Reject::WrongType("a string"))
    }
}

macro_rules! put_int {
    ($($t:ty),*) => {$(
        impl Put for $t {
            #[inline]
            fn u64(s: &mut Sink, v: u64) -> Result<(), Reject> {
                let x = <$t>::try_from(v).map_err(|_| Reject::OutOfRange(v.to_string()))?;
                s.push(&x.to_le_bytes());
                Ok(())
            }
            #[inline]
            fn i64(s: &mut Sink, v: i64) -> Result<(), Reject> {
                let x = <$t>::try_from(v).map_err(|_| Reject::OutOfRange(v.to_string()))?;
                s.push(&x.to_le_bytes());
                Ok(())
            }
            /// Integral floats (`3.0`) are accepted where exactly representable.
            fn f64(s: &mut Sink, v: f64) -> Result<(), Reject> {
                if v.fract() != 0.0 || v.abs() > 9_007_199_254_740_992.0 {
                    return Err(Reject::OutOfRange(v.to_string()));
                }
                Self::i64(s, v as i64)
            }
        }
    )*};
}

put_int!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! put_float {
    ($($t:ty => $from:path),*) => {$(
        impl Put for $t {
            #[inline]
            fn f64(s: &mut Sink, v: f64) -> Result<(), Reject> {
                let x: $t = $from(v);
                if x.is_infinite() && v.is_finite() {
                    return Err(Reject::OutOfRange(v.to_string()));
                }
                s.push(&x.to_le_bytes());
                Ok(())
            }
            #[inline]
            fn u64(s: &mut Sink, v: u64) -> Result<(), Reject> {
                Self::f64(s, v as f64)
            }
            #[inline]
            fn i64(s: &mut Sink, v: i64) -> Result<(), Reject> {
                Self::f64(s, v as f64)
            }
        }
    )*};
}

fn narrow(v: f64) -> f32 {
    v as f32
}

fn same(v: f64) -> f64 {
    v
}

put_float!(f32 => narrow, f64 => same, f16 => f16::from_f64, bf16 => bf16::from_f64);

/// `BOOL`: `true`/`false`, or 0/1.
struct Bool;

impl Put for Bool {
    fn bool(s: &mut Sink, v: bool) -> Result<(), Reject> {
        s.push(&[u8::from(v)]);
        Ok(())
    }
    fn u64(s: &mut Sink, v: u64) -> Result<(), Reject> {
        match v {
            0 | 1 => Self::bool(s, v == 1),
            _ => Err(Reject::OutOfRange(v.to_string())),
        }
    }
}

/// `BYTES`: strings, stored as a little-endian `u32` length and the bytes.
struct Str;

impl Put for Str {
    fn str(s: &mut Sink, v: &str) -> Result<(), Reject> {
        let len = u32::try_from(v.len()).map_err(|_| Reject::OutOfRange("a string".into()))?;
        s.out.bytes.extend_from_slice(&len.to_le_bytes());
        s.push(v.as_bytes());
        Ok(())
    }
}

/// Visits a scalar or an array of arrays of … scalars, writing every scalar.
struct Flatten<'s, 'a, P> {
    sink: &'s mut Sink<'a>,
    put: PhantomData<P>,
}

impl<P: Put> Flatten<'_, '_, P> {
    fn put<E: de::Error>(self, put: impl FnOnce(&mut Sink) -> Result<(), Reject>) -> Result<(), E> {
        let sink = self.sink;
        put(&mut *sink).map_err(|reject| {
            let DataSeed { name, datatype, .. } = sink.seed;
            E::custom(match reject {
                Reject::WrongType(got) => {
                    format!("input `{name}`: {datatype} data cannot hold {got}")
                }
                Reject::OutOfRange(v) => {
                    format!("input `{name}`: {v} is out of range for {datatype}")
                }
            })
        })
    }
}

impl<'de, P: Put> DeserializeSeed<'de> for Flatten<'_, '_, P> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, P: Put> Visitor<'de> for Flatten<'_, '_, P> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let DataSeed { name, datatype, .. } = self.sink.seed;
        write!(
            f,
            "{datatype} data (a flat or nested array) for input `{name}`"
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let sink = self.sink;
        while seq
            .next_element_seed(Flatten::<P> {
                sink: &mut *sink,
                put: PhantomData,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.put(|s| P::u64(s, v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.put(|s| P::i64(s, v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.put(|s| P::f64(s, v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.put(|s| P::bool(s, v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.put(|s| P::str(s, v))
    }
}

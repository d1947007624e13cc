//! How one JSON scalar becomes one element of each numeric or `BOOL` datatype.
//!
//! The rules are the ones serde_json's own number types gave us, kept exactly: an integer
//! literal is an integer (a float once it overflows 64 bits, and `-0` is the float −0.0);
//! integer datatypes take integral floats up to 2^53; `BOOL` takes `true`/`false` and the
//! integer literals 0 and 1. What changed is the rounding: floats are parsed once,
//! correctly rounded, straight into their datatype (`FP32` no longer goes through f64).

use half::{bf16, f16};

/// One JSON number as the scanner lexed it; `text` follows the JSON grammar.
pub(super) struct Number<'a> {
    pub text: &'a [u8],
    pub negative: bool,
    /// No fraction and no exponent.
    pub integral: bool,
    /// Every digit of the significand as one integer, when it fits a `u64`; for an
    /// integral number, its magnitude.
    pub significand: Option<u64>,
    /// The power of ten that scales `significand` to the number's magnitude (0 when
    /// integral).
    pub exponent: i32,
}

/// Why an element was refused.
pub(super) enum Refusal {
    /// The JSON type the datatype cannot hold ("a number", "a boolean").
    WrongType(&'static str),
    /// Out of the datatype's range (or, for an integer type, not a whole number).
    OutOfRange,
    /// Text the float parser refused (never, after the scanner's grammar check).
    Unparsed,
}

/// The powers of ten an `f64` holds exactly.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Number<'_> {
    /// The literal as an integer, where serde_json would have read one (`-0` aside).
    #[inline]
    fn integer(&self) -> Option<i128> {
        if !self.integral {
            return None;
        }
        let magnitude = i128::from(self.significand?);
        match self.negative {
            false => Some(magnitude),
            true if magnitude != 0 && magnitude <= 1 << 63 => Some(-magnitude),
            true => None,
        }
    }

    /// Clinger's fast path: a significand of at most 2^53 and a power of ten of at most
    /// 22 are both exact `f64`s, so one multiplication or division rounds their exact
    /// product once, correctly. `None` outside that range.
    #[inline]
    fn exact_f64(&self) -> Option<f64> {
        let m = self.significand?;
        let power = *POWERS_OF_TEN.get(self.exponent.unsigned_abs() as usize)?;
        if m > 1 << 53 {
            return None;
        }
        let v = m as f64;
        Some(self.signed(if self.exponent < 0 {
            v / power
        } else {
            v * power
        }))
    }

    /// The nearest `f64`.
    #[inline]
    pub fn to_f64(&self) -> Result<f64, Refusal> {
        match self.exact_f64() {
            Some(v) => Ok(v),
            None => fast_float2::parse(self.text).map_err(|_| Refusal::Unparsed),
        }
    }

    /// The nearest `f32`, rounded once. From the fast path's `f64` `d` (the number
    /// rounded once to `f64`, always a normal `f32` magnitude in that range), `d as f32`
    /// is the number rounded to `f32` unless `d` lies exactly halfway between two `f32`s
    /// (the 29 bits an `f32` drops are `1000…0`): the midpoints are `f64`s, so the number
    /// and `d` are on the same side of every one of them otherwise. Ties go to the full
    /// parser.
    #[inline]
    fn to_f32(&self) -> Result<f32, Refusal> {
        match self.exact_f64() {
            Some(d) if d.to_bits() & 0x1FFF_FFFF != 0x1000_0000 => Ok(d as f32),
            _ => fast_float2::parse(self.text).map_err(|_| Refusal::Unparsed),
        }
    }

    #[inline]
    fn signed<F: std::ops::Neg<Output = F>>(&self, v: F) -> F {
        if self.negative { -v } else { v }
    }

    /// An integral float within ±2^53, as integer datatypes accept it.
    fn integral_float(&self) -> Result<i64, Refusal> {
        let v = self.to_f64()?;
        if v.fract() != 0.0 || v.abs() > 9_007_199_254_740_992.0 {
            return Err(Refusal::OutOfRange);
        }
        Ok(v as i64)
    }
}

/// Writes one JSON scalar as one little-endian element of a datatype.
pub(super) trait Element {
    fn number(n: &Number, out: &mut Vec<u8>) -> Result<(), Refusal>;

    fn boolean(_: bool, _: &mut Vec<u8>) -> Result<(), Refusal> {
        Err(Refusal::WrongType("a boolean"))
    }

    /// `NaN`, `Infinity` or `-Infinity`: floating-point datatypes only.
    fn non_finite(_: f64, _: &mut Vec<u8>) -> Result<(), Refusal> {
        Err(Refusal::WrongType("NaN or an infinity"))
    }
}

macro_rules! integer_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            #[inline]
            fn number(n: &Number, out: &mut Vec<u8>) -> Result<(), Refusal> {
                let x = match n.integer() {
                    Some(v) => <$t>::try_from(v).map_err(|_| Refusal::OutOfRange)?,
                    None => <$t>::try_from(n.integral_float()?)
                        .map_err(|_| Refusal::OutOfRange)?,
                };
                out.extend_from_slice(&x.to_le_bytes());
                Ok(())
            }
        }
    )*};
}

integer_element!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_element {
    ($($t:ty => |$n:ident| $value:expr, |$v:ident| $special:expr),*) => {$(
        impl Element for $t {
            #[inline]
            fn number($n: &Number, out: &mut Vec<u8>) -> Result<(), Refusal> {
                let x: $t = $value;
                // JSON numbers are finite: infinity means the literal is beyond the type.
                if x.is_infinite() {
                    return Err(Refusal::OutOfRange);
                }
                out.extend_from_slice(&x.to_le_bytes());
                Ok(())
            }

            #[inline]
            fn non_finite($v: f64, out: &mut Vec<u8>) -> Result<(), Refusal> {
                let x: $t = $special;
                out.extend_from_slice(&x.to_le_bytes());
                Ok(())
            }
        }
    )*};
}

float_element!(
    f32 => |n| n.to_f32()?, |v| v as f32,
    f64 => |n| n.to_f64()?, |v| v,
    f16 => |n| f16::from_f64(n.to_f64()?), |v| f16::from_f64(v),
    bf16 => |n| bf16::from_f64(n.to_f64()?), |v| bf16::from_f64(v)
);

/// `BOOL`: `true`/`false`, or the integer literals 0 and 1.
pub(super) struct Bool;

impl Element for Bool {
    fn number(n: &Number, out: &mut Vec<u8>) -> Result<(), Refusal> {
        match n.integer() {
            Some(v @ (0 | 1)) => out.push(v as u8),
            Some(v) if v > 0 => return Err(Refusal::OutOfRange),
            _ => return Err(Refusal::WrongType("a number")),
        }
        Ok(())
    }

    fn boolean(v: bool, out: &mut Vec<u8>) -> Result<(), Refusal> {
        out.push(u8::from(v));
        Ok(())
    }
}

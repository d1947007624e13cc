//! A tensor's elements → a flat JSON array (see the parent module).

use half::{bf16, f16};
use torchbridge_core::{DataType, Tensor};

use crate::http::error::ApiError;

/// Appends the elements of `t` to `out` as one flat JSON array.
pub fn write_data(out: &mut Vec<u8>, t: &Tensor) -> Result<(), ApiError> {
    let data = &t.data[..];
    out.reserve(data.len() * 3 + 2);
    out.push(b'[');
    match t.datatype {
        DataType::Bool => each::<1>(out, data, |o, [b]| {
            o.extend_from_slice(if b != 0 { b"true" } else { b"false" });
        }),
        DataType::Uint8 => each(out, data, |o, b| int(o, u8::from_le_bytes(b))),
        DataType::Uint16 => each(out, data, |o, b| int(o, u16::from_le_bytes(b))),
        DataType::Uint32 => each(out, data, |o, b| int(o, u32::from_le_bytes(b))),
        DataType::Uint64 => each(out, data, |o, b| int(o, u64::from_le_bytes(b))),
        DataType::Int8 => each(out, data, |o, b| int(o, i8::from_le_bytes(b))),
        DataType::Int16 => each(out, data, |o, b| int(o, i16::from_le_bytes(b))),
        DataType::Int32 => each(out, data, |o, b| int(o, i32::from_le_bytes(b))),
        DataType::Int64 => each(out, data, |o, b| int(o, i64::from_le_bytes(b))),
        DataType::Fp16 => each(out, data, |o, b| float(o, f16::from_le_bytes(b).to_f32())),
        DataType::Bf16 => each(out, data, |o, b| float(o, bf16::from_le_bytes(b).to_f32())),
        DataType::Fp32 => each(out, data, |o, b| float(o, f32::from_le_bytes(b))),
        DataType::Fp64 => each(out, data, |o, b| float(o, f64::from_le_bytes(b))),
        DataType::Bytes => {
            for s in t.strings()? {
                let s = std::str::from_utf8(s).map_err(|_| {
                    ApiError::bad_request(format!(
                        "output `{}` holds bytes that are not UTF-8, which JSON cannot carry; \
                         request it with `binary_data`",
                        t.name
                    ))
                })?;
                serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
                out.push(b',');
            }
        }
    }
    // Every element was followed by a comma; the last one becomes the closing bracket.
    if out.last() == Some(&b',') {
        out.pop();
    }
    out.push(b']');
    Ok(())
}

#[inline]
fn each<const N: usize>(out: &mut Vec<u8>, data: &[u8], mut f: impl FnMut(&mut Vec<u8>, [u8; N])) {
    let (chunks, _) = data.as_chunks::<N>();
    for &chunk in chunks {
        f(out, chunk);
        out.push(b',');
    }
}

#[inline]
fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A float as JSON; NaN and the infinities as the literals `NaN`, `Infinity` and
/// `-Infinity`, which JSON itself lacks but Triton writes and its clients read.
#[inline]
fn float<F: ryu::Float + NonFinite>(out: &mut Vec<u8>, v: F) {
    match v.literal() {
        None => out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes()),
        Some(literal) => out.extend_from_slice(literal),
    }
}

trait NonFinite: Copy {
    /// The literal of a NaN or an infinity; `None` for a finite value.
    fn literal(self) -> Option<&'static [u8]>;
}

macro_rules! non_finite {
    ($($t:ty),*) => {$(
        impl NonFinite for $t {
            #[inline]
            fn literal(self) -> Option<&'static [u8]> {
                match self {
                    v if v.is_finite() => None,
                    v if v.is_nan() => Some(b"NaN"),
                    v if v > 0.0 => Some(b"Infinity"),
                    _ => Some(b"-Infinity"),
                }
            }
        }
    )*};
}

non_finite!(f32, f64);

//! Reading and writing NumPy `.npy` files, the format users already have tensors in.
//!
//! Only what tensors need: little-endian numbers and booleans in C order. `BF16` has no
//! NumPy type; it travels as its raw bits in a `uint16` array. `BYTES` is read from
//! NumPy's fixed-width strings (`S`: bytes, `U`: text, written as UTF-8), each element
//! without its trailing NUL padding; object arrays are pickles, which are not read.

use std::path::Path;

use anyhow::{Context, bail, ensure};

use crate::{DataType, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr_of(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "|b1",
        DataType::Uint8 => "|u1",
        DataType::Int8 => "|i1",
        DataType::Uint16 | DataType::Bf16 => "<u2",
        DataType::Int16 => "<i2",
        DataType::Fp16 => "<f2",
        DataType::Uint32 => "<u4",
        DataType::Int32 => "<i4",
        DataType::Fp32 => "<f4",
        DataType::Uint64 => "<u8",
        DataType::Int64 => "<i8",
        DataType::Fp64 => "<f8",
        DataType::Bytes => return None,
    })
}

fn datatype_of(descr: &str) -> Option<DataType> {
    let descr = descr.trim_start_matches(['<', '|', '=']);
    [
        DataType::Bool,
        DataType::Uint8,
        DataType::Int8,
        DataType::Uint16,
        DataType::Int16,
        DataType::Fp16,
        DataType::Uint32,
        DataType::Int32,
        DataType::Fp32,
        DataType::Uint64,
        DataType::Int64,
        DataType::Fp64,
    ]
    .into_iter()
    .find(|&d| descr_of(d).is_some_and(|s| &s[1..] == descr))
}

/// Reads `path` as a tensor named `name`. Where `want` is `BF16`, a `uint16` array is
/// taken as BF16 bits.
pub fn read(path: &Path, name: &str, want: Option<DataType>) -> anyhow::Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes, name, want)
        .with_context(|| format!("{} is not a usable .npy file", path.display()))
}

fn parse(bytes: &[u8], name: &str, want: Option<DataType>) -> anyhow::Result<Tensor> {
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(MAGIC),
        "no .npy magic number"
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated header");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy version {v}"),
    };
    let header = bytes
        .get(start..start + header_len)
        .context("truncated header")?;
    let header = std::str::from_utf8(header).context("header is not text")?;
    let descr = field(header, "descr")?.trim_matches(['\'', '"']);
    ensure!(
        field(header, "fortran_order")? == "False",
        "Fortran-order arrays are not supported; save with np.ascontiguousarray"
    );
    let shape_text = field(header, "shape")?;
    let shape = shape_text
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|d| {
            d.parse::<i64>()
                .with_context(|| format!("bad shape {shape_text}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data = &bytes[start + header_len..];
    if let Some(strings) = strings(descr, data, &shape)? {
        return Ok(Tensor::from_strings(name, shape, &strings)?);
    }
    let mut datatype = datatype_of(descr).with_context(|| match descr.trim_start_matches('|') {
        "O" => "dtype object: such arrays are pickles, which are not read; for a BYTES input \
                save fixed-width strings (np.array(texts, dtype=np.str_) or np.bytes_)"
            .to_string(),
        _ => format!("unsupported dtype {descr}"),
    })?;
    if want == Some(DataType::Bf16) && datatype == DataType::Uint16 {
        datatype = DataType::Bf16;
    }
    // NumPy has no bfloat16: a float32 array for a BF16 input is rounded to it.
    if want == Some(DataType::Bf16) && datatype == DataType::Fp32 {
        let bits: Vec<u8> = data
            .chunks_exact(4)
            .flat_map(|c| {
                half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes()
            })
            .collect();
        return Ok(Tensor::new(name, DataType::Bf16, shape, bits)?);
    }
    Ok(Tensor::new(
        name,
        datatype,
        shape,
        bytes::Bytes::copy_from_slice(data),
    )?)
}

/// The elements of a fixed-width string array (`|S<n>`: n bytes each; `<U<n>`: n UTF-32
/// code points each), without their NUL padding; `None` for another dtype.
fn strings(descr: &str, data: &[u8], shape: &[i64]) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let (unit, width) = match descr.split_at_checked(2) {
        Some(("|S", n)) => (1, n),
        Some(("<U", n) | ("=U", n)) => (4, n),
        _ => return Ok(None),
    };
    let width: usize = width
        .parse()
        .with_context(|| format!("bad string dtype {descr}"))?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .with_context(|| format!("bad shape {shape:?}"))?;
    let size = unit * width;
    ensure!(
        count.checked_mul(size) == Some(data.len()),
        "{count} elements of {descr} need {} bytes of data, the file holds {}",
        count.saturating_mul(size),
        data.len()
    );
    if count == 0 {
        return Ok(Some(Vec::new()));
    }
    if size == 0 {
        return Ok(Some(vec![Vec::new(); count]));
    }
    data.chunks_exact(size)
        .map(|element| {
            if unit == 1 {
                let end = element.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                return Ok(element[..end].to_vec());
            }
            let text: String = element
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&c| c != 0)
                .map(|c| char::from_u32(c).with_context(|| format!("{c:#x} is no character")))
                .collect::<anyhow::Result<_>>()?;
            Ok(text.into_bytes())
        })
        .collect::<anyhow::Result<_>>()
        .map(Some)
}

/// The text of `key`'s value in the header dict, e.g. `'<f4'` or `(3, 4)`.
fn field<'h>(header: &'h str, key: &str) -> anyhow::Result<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .with_context(|| format!("header has no '{key}'"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .trim_start_matches(':')
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    };
    Ok(rest[..end.context("unterminated header value")?].trim())
}

/// Writes `tensor` as a version 1.0 `.npy` file.
pub fn write(path: &Path, tensor: &Tensor) -> anyhow::Result<()> {
    std::fs::write(path, encode(tensor)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn encode(tensor: &Tensor) -> anyhow::Result<Vec<u8>> {
    // BYTES as fixed-width bytes (`S`), as wide as the longest element: NumPy pads the
    // others with NULs, and reading strips them (so trailing NULs of an element are lost).
    let (descr, data) = match descr_of(tensor.datatype) {
        Some(descr) => (descr.to_string(), std::borrow::Cow::from(&tensor.data[..])),
        None => {
            let strings = tensor.strings()?;
            let width = strings.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
            let mut data = vec![0; width * strings.len()];
            for (slot, s) in data.chunks_exact_mut(width).zip(&strings) {
                slot[..s.len()].copy_from_slice(s);
            }
            (format!("|S{width}"), data.into())
        }
    };
    let dims: Vec<String> = tensor.shape.iter().map(i64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts on a 64-byte boundary, the header ending in a newline.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = Tensor::from_slice("x", vec![2, 3], &[1i64, -2, 3, 4, 5, 6]).unwrap();
        let back = parse(&encode(&t).unwrap(), "x", None).unwrap();
        assert_eq!(back, t);
        let v = Tensor::from_slice("v", vec![1], &[2.5f32]).unwrap();
        let bytes = encode(&v).unwrap();
        assert_eq!((bytes.len() - 4) % 64, 0);
        assert_eq!(parse(&bytes, "v", None).unwrap(), v);
    }

    /// A version 1.0 file of `descr`, `shape` and raw `data`, as NumPy writes one.
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn fixed_width_strings_are_bytes_elements_without_their_padding() {
        // np.array([b"hi", b"", b"abc"]) is |S3.
        let t = parse(&npy("|S3", "(3,)", b"hi\0\0\0\0abc"), "t", None).unwrap();
        assert_eq!(t.datatype, DataType::Bytes);
        assert_eq!(t.strings().unwrap(), [&b"hi"[..], b"", b"abc"]);
        // np.array([["é", "ab"]]) is <U2: UTF-32 code points, read as UTF-8.
        let units: Vec<u8> = [0xe9u32, 0, 0x61, 0x62]
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        let t = parse(&npy("<U2", "(1, 2)", &units), "t", None).unwrap();
        assert_eq!(t.shape, [1, 2]);
        assert_eq!(t.strings().unwrap(), ["é".as_bytes(), b"ab"]);
        // Saved as |S<longest>, read back the same.
        let saved = Tensor::from_strings("t", vec![2, 2], &["a", "", "longer", "é"]).unwrap();
        let back = parse(&encode(&saved).unwrap(), "t", None).unwrap();
        assert_eq!(back, saved);
        let err = format!(
            "{:#}",
            parse(&npy("|S3", "(2,)", b"abc"), "t", None).unwrap_err()
        );
        assert!(err.contains("2 elements of |S3 need 6 bytes"), "{err}");
        let err = format!(
            "{:#}",
            parse(&npy("|O", "(1,)", b"\x80"), "t", None).unwrap_err()
        );
        assert!(err.contains("pickles") && err.contains("np.str_"), "{err}");
    }

    #[test]
    fn float32_for_a_bf16_input_is_rounded_to_it() {
        // 1.0, 3.0078125 (halfway between two bfloat16s: to even, 3.0), -2.5.
        let floats = Tensor::from_slice("x", vec![3], &[1.0f32, 3.0078125, -2.5]).unwrap();
        let t = parse(&encode(&floats).unwrap(), "x", Some(DataType::Bf16)).unwrap();
        assert_eq!(t.datatype, DataType::Bf16);
        let bits: Vec<u16> = t
            .data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(bits, [0x3f80, 0x4040, 0xc020]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(
            parse(b"hello", "x", None)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let t = Tensor::from_slice("x", vec![2], &[1u8, 2]).unwrap();
        let mut bytes = encode(&t).unwrap();
        let at = bytes.windows(5).position(|w| w == b"False").unwrap();
        bytes[at..at + 5].copy_from_slice(b"True ");
        let err = format!("{:#}", parse(&bytes, "x", None).unwrap_err());
        assert!(err.contains("Fortran"), "{err}");
    }
}

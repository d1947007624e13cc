use bytes::{BufMut, Bytes, BytesMut};

use crate::{DataType, Element, Error, Result};

/// A named, dense, row-major tensor whose elements live in one contiguous buffer.
///
/// Fixed-size datatypes are stored little-endian, `size × element_count` bytes.
/// `BYTES` elements are stored as the protocol lays them out on the wire: for each
/// element a little-endian `u32` length, then its bytes. [`Bytes`] makes clones and
/// slices free, so a tensor can be handed from a request body to a bridge and back
/// without copying.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("datatype", &self.datatype)
            .field("shape", &self.shape)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Number of elements a shape holds, or `None` for a negative dim or an overflow.
pub(crate) fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

impl Tensor {
    /// Makes every BOOL element the byte 0 or 1: a client may send any nonzero byte for
    /// true (perf_analyzer's random data does; Triton takes it as true), and the engines
    /// assume 0 or 1. Other datatypes, and BOOL data already 0/1, are left as they are.
    pub fn normalize_bools(&mut self) {
        if self.datatype != DataType::Bool || self.data.iter().all(|&b| b <= 1) {
            return;
        }
        let normalized: Vec<u8> = self.data.iter().map(|&b| u8::from(b != 0)).collect();
        self.data = Bytes::from(normalized);
    }

    /// A tensor over `data`, checked to hold exactly what `datatype` and `shape` say.
    pub fn new(
        name: impl Into<String>,
        datatype: DataType,
        shape: Vec<i64>,
        data: impl Into<Bytes>,
    ) -> Result<Self> {
        let tensor = Tensor {
            name: name.into(),
            datatype,
            shape,
            data: data.into(),
        };
        tensor.check_bytes()?;
        Ok(tensor)
    }

    /// A tensor holding a copy of `values`.
    pub fn from_slice<T: Element>(
        name: impl Into<String>,
        shape: Vec<i64>,
        values: &[T],
    ) -> Result<Self> {
        // SAFETY: `Element` types are plain numbers with no padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        Tensor::new(name, T::DATATYPE, shape, Bytes::copy_from_slice(bytes))
    }

    /// A `BOOL` tensor.
    pub fn from_bools(name: impl Into<String>, shape: Vec<i64>, values: &[bool]) -> Result<Self> {
        let bytes: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
        Tensor::new(name, DataType::Bool, shape, bytes)
    }

    /// A `BYTES` tensor of the given strings.
    pub fn from_strings<S: AsRef<[u8]>>(
        name: impl Into<String>,
        shape: Vec<i64>,
        values: &[S],
    ) -> Result<Self> {
        let total: usize = values.iter().map(|v| 4 + v.as_ref().len()).sum();
        let mut buf = BytesMut::with_capacity(total);
        for v in values {
            let v = v.as_ref();
            let len = u32::try_from(v.len())
                .map_err(|_| Error::InvalidInput("a BYTES element is over 4 GiB".into()))?;
            buf.put_u32_le(len);
            buf.put_slice(v);
        }
        Tensor::new(name, DataType::Bytes, shape, buf.freeze())
    }

    /// Number of elements, from the shape.
    pub fn element_count(&self) -> usize {
        element_count(&self.shape).unwrap_or(0)
    }

    /// A copy of the elements as `T`, which must match the datatype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DATATYPE != self.datatype {
            return Err(Error::InvalidInput(format!(
                "tensor `{}` holds {}, not {}",
                self.name,
                self.datatype,
                T::DATATYPE
            )));
        }
        let n = self.data.len() / std::mem::size_of::<T>();
        let mut out = Vec::<T>::with_capacity(n);
        // SAFETY: `data` holds exactly `n` elements (checked at construction), every bit
        // pattern is a valid `T`, and copying bytes sidesteps the buffer's alignment.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.data.as_ptr(),
                out.as_mut_ptr().cast(),
                self.data.len(),
            );
            out.set_len(n);
        }
        Ok(out)
    }

    /// The elements of a `BOOL` tensor.
    pub fn to_bools(&self) -> Result<Vec<bool>> {
        self.expect_datatype(DataType::Bool)?;
        Ok(self.data.iter().map(|&b| b != 0).collect())
    }

    /// The elements of a `BYTES` tensor, borrowed.
    pub fn strings(&self) -> Result<Vec<&[u8]>> {
        self.expect_datatype(DataType::Bytes)?;
        split_strings(&self.data).ok_or_else(|| self.malformed_strings())
    }

    fn expect_datatype(&self, datatype: DataType) -> Result<()> {
        if self.datatype == datatype {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "tensor `{}` holds {}, not {datatype}",
                self.name, self.datatype
            )))
        }
    }

    fn malformed_strings(&self) -> Error {
        Error::InvalidInput(format!(
            "tensor `{}`: BYTES data is not a sequence of 4-byte little-endian lengths each followed by that many bytes",
            self.name
        ))
    }

    /// Checks that the buffer holds exactly the elements the shape calls for.
    pub fn check_bytes(&self) -> Result<()> {
        let count = element_count(&self.shape).ok_or_else(|| {
            Error::InvalidInput(format!(
                "tensor `{}`: shape {:?} has a negative dimension or is too large",
                self.name, self.shape
            ))
        })?;
        match self.datatype.size() {
            Some(size) => {
                let expected = count.checked_mul(size);
                if expected != Some(self.data.len()) {
                    return Err(Error::InvalidInput(format!(
                        "tensor `{}`: shape {:?} of {} needs {} bytes, got {}",
                        self.name,
                        self.shape,
                        self.datatype,
                        expected.map_or("too many".to_string(), |e| e.to_string()),
                        self.data.len()
                    )));
                }
            }
            None => {
                let found = split_strings(&self.data).ok_or_else(|| self.malformed_strings())?;
                if found.len() != count {
                    return Err(Error::InvalidInput(format!(
                        "tensor `{}`: shape {:?} needs {count} BYTES elements, got {}",
                        self.name,
                        self.shape,
                        found.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Splits length-prefixed `BYTES` data into its elements; `None` if malformed.
pub(crate) fn split_strings(mut data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (len, rest) = data.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (item, rest) = rest.split_at(len);
        out.push(item);
        data = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_nonzero_bool_byte_is_true() {
        let mut t = Tensor::new("b", DataType::Bool, vec![4], vec![0u8, 1, 2, 255]).unwrap();
        t.normalize_bools();
        assert_eq!(&t.data[..], [0, 1, 1, 1]);
        let mut bytes = Tensor::new("u", DataType::Uint8, vec![2], vec![0u8, 7]).unwrap();
        bytes.normalize_bools();
        assert_eq!(&bytes.data[..], [0, 7], "only BOOL is touched");
    }

    #[test]
    fn numbers_round_trip() {
        let t = Tensor::from_slice("x", vec![2, 2], &[1.5f32, -2.0, 3.0, 4.25]).unwrap();
        assert_eq!(t.data.len(), 16);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.5, -2.0, 3.0, 4.25]);
        assert!(
            t.to_vec::<i32>()
                .unwrap_err()
                .to_string()
                .contains("holds FP32, not INT32")
        );
    }

    #[test]
    fn byte_count_must_match_shape() {
        let err = Tensor::new("x", DataType::Fp32, vec![3], vec![0u8; 8]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor `x`: shape [3] of FP32 needs 12 bytes, got 8"
        );
        let err = Tensor::new("x", DataType::Fp32, vec![-1], vec![]).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }

    #[test]
    fn strings_round_trip_and_are_validated() {
        let t = Tensor::from_strings("s", vec![3], &["a", "", "héllo"]).unwrap();
        assert_eq!(
            t.strings().unwrap(),
            vec![&b"a"[..], b"", "héllo".as_bytes()]
        );
        let err = Tensor::from_strings("s", vec![2], &["a"]).unwrap_err();
        assert!(
            err.to_string().contains("needs 2 BYTES elements, got 1"),
            "{err}"
        );
        let err = Tensor::new("s", DataType::Bytes, vec![1], vec![9u8, 0, 0, 0, b'a']).unwrap_err();
        assert!(err.to_string().contains("not a sequence"), "{err}");
    }

    #[test]
    fn bools_are_bytes() {
        let t = Tensor::from_bools("b", vec![3], &[true, false, true]).unwrap();
        assert_eq!(t.to_bools().unwrap(), vec![true, false, true]);
    }
}

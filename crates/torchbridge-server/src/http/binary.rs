//! The binary tensor data extension: a JSON header of `Inference-Header-Content-Length`
//! bytes, then the raw data of each binary tensor in the order the JSON lists them
//! (little-endian, row-major; `BYTES` as 4-byte little-endian lengths each followed by
//! that many bytes, which is also [`torchbridge_core::Tensor`]'s layout).
//!
//! Inputs are zero-copy slices of the request body's one [`Bytes`].

use axum::body::Bytes;
use axum::http::HeaderMap;

use super::error::ApiError;

/// The header that gives the JSON part's length when binary data follows it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// `Inference-Header-Content-Length`, if the request has one.
pub fn header_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Inference-Header-Content-Length must be a byte count, got `{}`",
                String::from_utf8_lossy(value.as_bytes())
            ))
        })
}

/// Splits a body into its JSON header and the binary data after it.
pub fn split_body(
    body: Bytes,
    header_length: Option<usize>,
) -> Result<(Bytes, BinaryData), ApiError> {
    match header_length {
        None => Ok((body, BinaryData::default())),
        Some(n) if n > body.len() => Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length is {n} but the body holds only {} bytes",
            body.len()
        ))),
        Some(n) => {
            let rest = body.slice(n..);
            Ok((body.slice(..n), BinaryData { rest, taken: 0 }))
        }
    }
}

/// The binary part of a request, handed out to inputs in order.
#[derive(Debug, Default)]
pub struct BinaryData {
    rest: Bytes,
    taken: usize,
}

impl BinaryData {
    /// The next `size` bytes, for input `name`.
    pub fn take(&mut self, name: &str, size: u64) -> Result<Bytes, ApiError> {
        let left = self.rest.len();
        match usize::try_from(size) {
            Ok(size) if size <= left => {
                self.taken += size;
                Ok(self.rest.split_to(size))
            }
            _ => Err(ApiError::bad_request(format!(
                "input `{name}`: binary_data_size is {size} but only {left} bytes of binary data \
                 are left in the body"
            ))),
        }
    }

    /// Fails when bytes are left over that no input claimed.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.rest.is_empty() {
            return Ok(());
        }
        Err(ApiError::bad_request(format!(
            "the body holds {} bytes of binary data but the inputs' binary_data_size add up to {}",
            self.taken + self.rest.len(),
            self.taken
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_without_copying() {
        let body = Bytes::from_static(b"{\"x\":1}abcdefg");
        let (json, mut binary) = split_body(body.clone(), Some(7)).unwrap();
        assert_eq!(&json[..], b"{\"x\":1}");
        let a = binary.take("a", 3).unwrap();
        assert_eq!(&a[..], b"abc");
        assert_eq!(a.as_ptr(), body[7..].as_ptr());
        let err = binary.take("b", 5).unwrap_err();
        assert!(
            err.message()
                .contains("input `b`: binary_data_size is 5 but only 4"),
            "{err}"
        );
        let err = binary.finish().unwrap_err();
        assert!(err.message().contains("7 bytes of binary data"), "{err}");
        let err = split_body(body, Some(100)).unwrap_err();
        assert!(err.message().contains("holds only 14 bytes"), "{err}");
    }

    #[test]
    fn the_header_length_is_a_byte_count() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_length(&headers).unwrap(), None);
        headers.insert(HEADER_LENGTH, "123".parse().unwrap());
        assert_eq!(header_length(&headers).unwrap(), Some(123));
        headers.insert(HEADER_LENGTH, "-4".parse().unwrap());
        let err = header_length(&headers).unwrap_err();
        assert!(
            err.message().contains("must be a byte count, got `-4`"),
            "{err}"
        );
    }
}

//! gzip and deflate bodies, both ways: requests are inflated with a cap (a small body
//! that inflates past `max_inflated_bytes` is refused as soon as it passes it, never
//! inflated in full); responses are
//! compressed when `Accept-Encoding` asks (tritonclient's
//! `response_compression_algorithm`).
//!
//! "deflate" in HTTP means the zlib format, which is what tritonclient sends and reads;
//! a raw deflate stream is accepted on the way in too.

use std::io::{Read, Write};

use axum::http::{HeaderMap, StatusCode, header};
use flate2::Compression;
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Deflate,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }

    /// The request body's `Content-Encoding`: `None` when absent or `identity`.
    pub fn of_request(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        let value = value.to_str().unwrap_or("").trim();
        match value.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Encoding::Gzip)),
            "deflate" => Ok(Some(Encoding::Deflate)),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding `{value}`; use gzip or deflate"),
            )),
        }
    }

    /// The encoding to answer in, from `Accept-Encoding`: gzip before deflate, and
    /// none for anything else (or `q=0`).
    pub fn accepted(headers: &HeaderMap) -> Option<Self> {
        let mut found = None;
        for value in headers.get_all(header::ACCEPT_ENCODING) {
            for item in value.to_str().unwrap_or("").split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                match name.as_str() {
                    _ if refused => {}
                    "gzip" | "x-gzip" => return Some(Encoding::Gzip),
                    "deflate" => found = Some(Encoding::Deflate),
                    _ => {}
                }
            }
        }
        found
    }
}

/// Inflates `data`, refusing with 413 once the output passes `cap` bytes.
pub fn decompress(encoding: Encoding, data: &[u8], cap: usize) -> Result<Vec<u8>, ApiError> {
    let limit = cap as u64 + 1;
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(cap));
    let read = match encoding {
        Encoding::Gzip => MultiGzDecoder::new(data).take(limit).read_to_end(&mut out),
        Encoding::Deflate if is_zlib(data) => {
            ZlibDecoder::new(data).take(limit).read_to_end(&mut out)
        }
        Encoding::Deflate => DeflateDecoder::new(data).take(limit).read_to_end(&mut out),
    };
    if out.len() > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the {} request body inflates past the limit of {cap} bytes \
                 (--max-inflated-bytes)",
                encoding.as_str()
            ),
        ));
    }
    read.map_err(|e| {
        ApiError::bad_request(format!(
            "cannot inflate the {} request body: {e}",
            encoding.as_str()
        ))
    })?;
    Ok(out)
}

/// A zlib stream starts with a CMF/FLG pair: method 8 and a checksum divisible by 31.
fn is_zlib(data: &[u8]) -> bool {
    matches!(data, [cmf, flg, ..] if cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0)
}

/// Compresses a response body (fast level: responses are on the request's critical path).
pub fn compress(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let written = match encoding {
        Encoding::Gzip => {
            let mut e = GzEncoder::new(out, Compression::fast());
            e.write_all(data).and_then(|()| e.finish())
        }
        Encoding::Deflate => {
            let mut e = ZlibEncoder::new(out, Compression::fast());
            e.write_all(data).and_then(|()| e.finish())
        }
    };
    written.expect("compressing into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn round_trips_both_encodings() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            let packed = compress(encoding, &data);
            assert!(packed.len() < data.len());
            assert_eq!(decompress(encoding, &packed, data.len()).unwrap(), data);
            let err = decompress(encoding, &packed, data.len() - 1).unwrap_err();
            assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        }
        // A raw deflate stream (no zlib header) is accepted too.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(decompress(Encoding::Deflate, &raw, 1 << 20).unwrap(), data);
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_inflating_it() {
        let bomb = compress(Encoding::Gzip, &vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let err = decompress(Encoding::Gzip, &bomb, 1 << 20).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let err = decompress(Encoding::Gzip, b"not gzip", 1024).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn negotiates_encodings() {
        let headers = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(accept).unwrap(),
            );
            h
        };
        assert_eq!(Encoding::accepted(&headers("gzip")), Some(Encoding::Gzip));
        assert_eq!(
            Encoding::accepted(&headers("deflate")),
            Some(Encoding::Deflate)
        );
        assert_eq!(
            Encoding::accepted(&headers("deflate, gzip;q=0.5")),
            Some(Encoding::Gzip)
        );
        assert_eq!(Encoding::accepted(&headers("gzip;q=0, br")), None);
        assert_eq!(Encoding::accepted(&HeaderMap::new()), None);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(
            Encoding::of_request(&h).unwrap_err().status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}

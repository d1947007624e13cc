//! Extractors that fail with the protocol's error body rather than axum's plain text.
//!
//! No extractor here looks at `Content-Type`: tritonclient and perf_analyzer send JSON
//! (and JSON followed by binary tensors) without declaring it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::compression::{Encoding, decompress};
use super::error::ApiError;
use crate::AppState;

/// Compressed bodies larger than this are inflated on the blocking pool: at deflate's
/// ratios (up to ~1000:1) a few KiB may inflate to megabytes.
const INFLATE_INLINE_MAX: usize = 4 << 10;

/// The request body, at most `max_body_bytes` as sent and `max_inflated_bytes` once
/// inflated (`Content-Encoding: gzip | deflate`), arriving within the client timeout.
/// A declared `Content-Length` over the limit is refused without keeping any of it: a
/// client waiting on `Expect: 100-continue` hears 413 instead of "continue", one already
/// sending has its body read and dropped (up to 1 GiB) and then hears 413.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let encoding = Encoding::of_request(req.headers())?;
        let limits = &state.settings.limits;
        let (sent_cap, cap) = (limits.max_body_bytes, limits.max_inflated_bytes);
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let within = state.settings.client_timeout;
        if let Some(declared) = declared.filter(|&n| n > sent_cap as u64) {
            // A client that did not ask to wait (`Expect: 100-continue`) is sending the body
            // anyway; refused unread, it meets a closed socket (tritonclient reports a
            // broken pipe) before it reads the 413. So the body is read and dropped first.
            let waits = req
                .headers()
                .get(axum::http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if !waits && declared <= DRAIN_MAX {
                drain(req.into_body(), within).await;
            }
            return Err(ApiError::too_large(sent_cap));
        }
        let bytes = tokio::time::timeout(within, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s (--client-timeout-secs)",
                        within.as_secs_f64()
                    ),
                )
            })?
            .map_err(|r| body_rejection(r, sent_cap))?;
        let Some(encoding) = encoding else {
            return Ok(Body(bytes));
        };
        let inflated = if bytes.len() <= INFLATE_INLINE_MAX {
            decompress(encoding, &bytes, cap)?
        } else {
            tokio::task::spawn_blocking(move || decompress(encoding, &bytes, cap))
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("inflating the request body failed: {e}"),
                    )
                })??
        };
        Ok(Body(Bytes::from(inflated)))
    }
}

/// The most of a refused body read (and dropped) so that its sender hears why.
const DRAIN_MAX: u64 = 1 << 30;

/// Reads `body` to its end, keeping none of it, for at most `within`.
async fn drain(body: axum::body::Body, within: std::time::Duration) {
    let mut frames = body.into_data_stream();
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(_)) = frames.next().await {}
    })
    .await;
}

fn body_rejection(rejection: BytesRejection, cap: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(cap)
    } else {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

/// Parses a JSON object body; an empty body is `T::default()` (tritonclient posts an
/// empty body to the repository index). Anything but an object is refused: serde would
/// read a struct from a JSON array too.
pub fn json_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let malformed = |e: serde_json::Error| ApiError::bad_request(format!("malformed JSON: {e}"));
    match serde_json::from_slice(body).map_err(malformed)? {
        object @ serde_json::Value::Object(_) => serde_json::from_value(object).map_err(malformed),
        other => Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, got {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The `{model}` and optional `{version}` of a route.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub name: String,
    pub version: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for ModelRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::bad_request(r.body_text()))?;
        let mut model = ModelRef {
            name: String::new(),
            version: None,
        };
        for (key, value) in params {
            match key.as_str() {
                "model" => model.name = value,
                "version" => {
                    let version = value.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "model version must be a whole number, got `{value}`"
                        ))
                    })?;
                    model.version = Some(version);
                }
                _ => {}
            }
        }
        Ok(model)
    }
}

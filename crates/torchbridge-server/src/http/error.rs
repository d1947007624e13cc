//! The one place where a failure becomes an HTTP status and the protocol's error body,
//! `{"error": "…"}`: every handler and extractor returns [`ApiError`].

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use torchbridge_core::Error;

/// A failed request: its status, the message the client sees, and anything more that
/// is only logged (a Python traceback, say).
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    detail: Option<String>,
    /// The inference request it answers, for the log: its model and the client's `id`.
    request: Option<(String, Option<String>)>,
}

/// Attached to every error response so the request middleware can log the failure once,
/// with its route and reason (and, for an inference request, its model and `id`).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub reason: Arc<str>,
    pub model: Option<Arc<str>>,
    pub request_id: Option<Arc<str>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            detail: None,
            request: None,
        }
    }

    /// This error as the answer to an inference request for `model` with the client's
    /// `id`, which the log line names.
    pub fn for_request(mut self, model: &str, id: Option<&str>) -> Self {
        self.request = Some((model.to_string(), id.map(str::to_string)));
        self
    }

    /// 400: the request is malformed or does not fit the model.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 413: the body, as sent, is over `max_body_bytes`.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes (--max-body-bytes)"),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            // A config or model files that cannot be loaded are the caller's to fix (gRPC
            // answers INVALID_ARGUMENT and FAILED_PRECONDITION, both 400 in HTTP terms).
            Error::InvalidInput(_) | Error::Config { .. } | Error::Load { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } => StatusCode::NOT_FOUND,
            Error::NotReady { .. } | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Timeout { .. } | Error::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Inference { .. } | Error::Python { .. } | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        match e {
            // The client sees the exception; the traceback goes to the log only.
            Error::Python { model, error } => ApiError {
                status,
                message: format!("model `{model}` raised {}", error.summary()),
                detail: Some(error.traceback).filter(|t| !t.is_empty()),
                request: None,
            },
            other => ApiError::new(status, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let logged: Arc<str> = match &self.detail {
            Some(detail) => format!("{}\n{}", self.message, detail.trim_end()).into(),
            None => self.message.into(),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let (model, request_id) = match self.request {
            Some((model, id)) => (Some(model.into()), id.map(Into::into)),
            None => (None, None),
        };
        response.extensions_mut().insert(Failure {
            reason: logged,
            model,
            request_id,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchbridge_core::PythonError;

    #[test]
    fn core_errors_map_to_statuses() {
        let cases = [
            (Error::InvalidInput("x".into()), 400),
            (Error::ModelNotFound("m".into()), 404),
            (Error::Unavailable("m".into()), 503),
            (
                Error::NotReady {
                    model: "m".into(),
                    reason: "loading".into(),
                },
                503,
            ),
            (
                Error::Inference {
                    model: "m".into(),
                    message: "boom".into(),
                },
                500,
            ),
            (
                Error::Overloaded {
                    model: "m".into(),
                    queued: 4,
                    predicted_wait_us: Some(9_000),
                },
                429,
            ),
            (
                Error::Timeout {
                    model: "m".into(),
                    waited_ms: 7,
                },
                504,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status().as_u16(), status);
        }
    }

    #[test]
    fn python_tracebacks_are_logged_not_sent() {
        let e = ApiError::from(Error::Python {
            model: "m".into(),
            error: PythonError {
                kind: "ValueError".into(),
                message: "negative".into(),
                traceback: "Traceback (most recent call last): …".into(),
            },
        });
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message(), "model `m` raised ValueError: negative");
        let response = e.into_response();
        let logged = &response.extensions().get::<Failure>().unwrap().reason;
        assert!(logged.contains("Traceback"), "{logged}");
    }
}

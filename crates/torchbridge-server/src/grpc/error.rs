//! The one place a [`torchbridge_core::Error`] becomes a gRPC [`Status`].

use tonic::{Code, Status};
use torchbridge_core::Error;

/// The gRPC code a failure is reported with.
pub(crate) fn code(err: &Error) -> Code {
    match err {
        Error::InvalidInput(_) | Error::Config { .. } => Code::InvalidArgument,
        Error::ModelNotFound(_) | Error::VersionNotFound { .. } => Code::NotFound,
        Error::NotReady { .. } | Error::Unavailable(_) => Code::Unavailable,
        Error::Overloaded { .. } => Code::ResourceExhausted,
        Error::Timeout { .. } | Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        Error::Inference { .. } | Error::Python { .. } | Error::Internal(_) => Code::Internal,
        // The model's files or config must change before a retry can succeed.
        Error::Load { .. } => Code::FailedPrecondition,
    }
}

/// What the client is told. A Python traceback stays in the server log.
pub(crate) fn message(err: &Error) -> String {
    match err {
        Error::Python { model, error } => {
            format!("model `{model}` raised {}", error.summary())
        }
        other => other.to_string(),
    }
}

/// The most a status message may take once percent-encoded into the `grpc-message`
/// header: gRPC clients refuse response metadata past 8 KiB (16 KiB at most), and a
/// refusal reads RESOURCE_EXHAUSTED, hiding the real error.
const MAX_ENCODED_MESSAGE: usize = 6 * 1024;

/// The status for `err`, without logging (see [`failed`]).
pub(crate) fn status(err: &Error) -> Status {
    Status::new(code(err), bounded(message(err)))
}

/// The bytes `c` takes in `grpc-message`, at most: tonic percent-encodes bytes outside
/// printable ASCII and, among the printable ones, at least space, `"#%<>?\`{}`; only
/// letters, digits and `-_.` are surely sent as they are.
fn encoded_len(c: char) -> usize {
    match c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
        true => 1,
        false => 3 * c.len_utf8(),
    }
}

/// `message`, cut where its `grpc-message` encoding could pass [`MAX_ENCODED_MESSAGE`],
/// saying how much was cut.
fn bounded(message: String) -> String {
    let mut encoded = 0;
    for (at, c) in message.char_indices() {
        encoded += encoded_len(c);
        if encoded > MAX_ENCODED_MESSAGE {
            return format!(
                "{}… ({} more bytes; the server log has the whole message)",
                &message[..at],
                message.len() - at
            );
        }
    }
    message
}

/// Logs a failed call once, in full (with the client's request `id`, when it gave one),
/// and returns the status the client gets.
pub(crate) fn failed(rpc: &'static str, model: &str, id: &str, err: &Error) -> Status {
    let status = status(err);
    let id = Some(id).filter(|id| !id.is_empty());
    match status.code() {
        Code::Internal | Code::FailedPrecondition => {
            tracing::error!(rpc, model, id, code = ?status.code(), "{err}");
        }
        _ => tracing::info!(rpc, model, id, code = ?status.code(), "{err}"),
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use torchbridge_core::PythonError;

    fn check(err: Error, code: Code, message: &str) {
        let status = status(&err);
        assert_eq!(status.code(), code, "{err}");
        assert_eq!(status.message(), message);
    }

    #[test]
    fn a_long_message_is_cut_to_fit_a_header() {
        // A Python exception of 20,000 characters (or 3,000 of them outside ASCII, or
        // 8,000 that tonic percent-encodes), measured as tonic encodes it.
        for text in ["x".repeat(20_000), "é".repeat(3_000), "? ".repeat(8_000)] {
            let err = Error::Inference {
                model: "m".into(),
                message: text.clone(),
            };
            let message = status(&err).message().to_string();
            let status = Status::new(Code::Internal, message.clone());
            let mut headers = axum::http::HeaderMap::new();
            status.add_header(&mut headers).unwrap();
            let encoded = headers["grpc-message"].len();
            assert!(encoded <= MAX_ENCODED_MESSAGE + 200, "{encoded}");
            assert!(message.ends_with("more bytes; the server log has the whole message)"));
            assert!(message.contains(&text[..600]), "{message}");
        }
        let short = Error::InvalidInput("input `X` is missing".into());
        assert_eq!(status(&short).message(), "input `X` is missing");
    }

    #[test]
    fn every_error_has_its_code_and_message() {
        check(
            Error::InvalidInput("input `X` is missing".into()),
            Code::InvalidArgument,
            "input `X` is missing",
        );
        check(
            Error::Config {
                path: "m/config.toml".into(),
                message: "bad key".into(),
            },
            Code::InvalidArgument,
            "m/config.toml: bad key",
        );
        check(
            Error::ModelNotFound("m".into()),
            Code::NotFound,
            "unknown model `m`",
        );
        check(
            Error::NotReady {
                model: "m".into(),
                reason: "unloaded".into(),
            },
            Code::Unavailable,
            "model `m` is not ready: unloaded",
        );
        check(
            Error::Unavailable("m".into()),
            Code::Unavailable,
            "model `m` is not available: its workers have stopped",
        );
        check(
            Error::Inference {
                model: "m".into(),
                message: "shape mismatch".into(),
            },
            Code::Internal,
            "model `m` failed: shape mismatch",
        );
        check(
            Error::Load {
                model: "m".into(),
                bridge: "onnx",
                message: "no such file".into(),
            },
            Code::FailedPrecondition,
            "model `m` failed to load through the onnx bridge: no such file",
        );
        check(
            Error::Overloaded {
                model: "m".into(),
                queued: 4,
                predicted_wait_us: None,
            },
            Code::ResourceExhausted,
            "model `m` is overloaded: 4 requests are already queued",
        );
        check(
            Error::Overloaded {
                model: "m".into(),
                queued: 2,
                predicted_wait_us: Some(12_340),
            },
            Code::ResourceExhausted,
            "model `m` is overloaded: this request would wait about 12.3 ms to start, over `batching.max_queue_wait_us` (2 requests queued)",
        );
        check(
            Error::Timeout {
                model: "m".into(),
                waited_ms: 7,
            },
            Code::DeadlineExceeded,
            "model `m` did not start the request before its deadline (queued 7 ms)",
        );
    }

    #[test]
    fn python_tracebacks_stay_out_of_the_status() {
        let err = Error::Python {
            model: "m".into(),
            error: PythonError {
                kind: "ValueError".into(),
                message: "negative input".into(),
                traceback: "Traceback (most recent call last):\n  File \"model.py\"".into(),
            },
        };
        check(
            err,
            Code::Internal,
            "model `m` raised ValueError: negative input",
        );
        // `raise KeyboardInterrupt`: no message, and no colon left hanging.
        let bare = Error::Python {
            model: "m".into(),
            error: PythonError {
                kind: "KeyboardInterrupt".into(),
                message: String::new(),
                traceback: String::new(),
            },
        };
        check(bare, Code::Internal, "model `m` raised KeyboardInterrupt");
    }
}

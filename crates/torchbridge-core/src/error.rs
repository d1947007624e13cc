use std::path::PathBuf;

/// Every failure torchbridge reports. Front ends map it to a status in one place each
/// (HTTP status, gRPC code, Python exception class, process exit code).
///
/// `Clone`, so one failed batch can give every request in it the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The model's `config.toml` (or another file of the repository) is wrong.
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// The model could not be loaded by its bridge.
    #[error("model `{model}` failed to load through the {bridge} bridge: {message}")]
    Load {
        model: String,
        bridge: &'static str,
        message: String,
    },

    /// The request does not match the model's inputs (name, datatype, shape, bytes).
    #[error("{0}")]
    InvalidInput(String),

    /// The model ran and failed, or returned something that does not match its outputs.
    #[error("model `{model}` failed: {message}")]
    Inference { model: String, message: String },

    /// A Python exception raised by the model's code.
    #[error("model `{model}` raised {0}", .error)]
    Python { model: String, error: PythonError },

    /// No such model in the repository.
    #[error("unknown model `{0}`")]
    ModelNotFound(String),

    /// The model serves, but not the version asked for.
    #[error("model `{model}` has no version {version} (versions served: {served:?})")]
    VersionNotFound {
        model: String,
        version: u64,
        served: Vec<u64>,
    },

    /// The model exists but is not loaded (it failed to load, or was unloaded).
    #[error("model `{model}` is not ready: {reason}")]
    NotReady { model: String, reason: String },

    /// The model's workers are gone (it was unloaded, or the process is shutting down).
    #[error("model `{0}` is not available: its workers have stopped")]
    Unavailable(String),

    /// The model's batching queue is full (`batching.max_queue_size`), or the request
    /// would wait longer than `batching.max_queue_wait_us` before it starts; retry later.
    /// Servers answer 429 / `RESOURCE_EXHAUSTED`.
    #[error("model `{model}` is overloaded: {}", overload_reason(*.queued, .predicted_wait_us))]
    Overloaded {
        model: String,
        queued: usize,
        /// Set when the predicted wait, not the queue's length, refused the request.
        predicted_wait_us: Option<u64>,
    },

    /// The server could not do its own part (a file it could not write): nothing in the
    /// request is at fault. Servers answer 500 / `INTERNAL`.
    #[error("{0}")]
    Internal(String),

    /// The request's deadline passed before an instance started it; it was not run.
    #[error(
        "model `{model}` did not start the request before its deadline (queued {waited_ms} ms)"
    )]
    Timeout { model: String, waited_ms: u64 },

    /// The request had no answer by its time limit: still queued behind busy instances
    /// (it will not run), or its call still running. The caller is answered now.
    #[error(
        "model `{model}` did not answer within {limit_ms} ms, the request's time limit (it was still waiting for a busy instance, and will not run, or its call was still running)"
    )]
    DeadlineExceeded { model: String, limit_ms: u64 },
}

/// A Python exception, kept in parts so front ends can show the type and message to a
/// client while logging the traceback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonError {
    pub kind: String,
    pub message: String,
    pub traceback: String,
}

impl PythonError {
    /// `Kind: message`, or `Kind` alone for an exception without a message (a bare
    /// `raise KeyboardInterrupt`).
    pub fn summary(&self) -> String {
        match self.message.is_empty() {
            true => self.kind.clone(),
            false => format!("{}: {}", self.kind, self.message),
        }
    }
}

impl std::fmt::Display for PythonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.summary())?;
        if !self.traceback.is_empty() {
            write!(f, "\n{}", self.traceback.trim_end())?;
        }
        Ok(())
    }
}

fn overload_reason(queued: usize, predicted_wait_us: &Option<u64>) -> String {
    match predicted_wait_us {
        Some(us) => format!(
            "this request would wait about {:.1} ms to start, over `batching.max_queue_wait_us` ({queued} requests queued)",
            *us as f64 / 1000.0
        ),
        None => format!("{queued} requests are already queued"),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

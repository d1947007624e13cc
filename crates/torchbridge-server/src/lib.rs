//! `torchbridge serve`: the KServe v2 / Open Inference Protocol over HTTP and gRPC, so
//! that every Triton and KServe client (tritonclient, perf_analyzer, the kserve SDK)
//! works against torchbridge unchanged.
//!
//! Both transports share one [`AppState`] — the model [`torchbridge_core::Registry`] and the server's
//! settings — and one inference path ([`AppState::infer`]): look the model up, check the
//! tensors against its metadata, queue them to its instance pool, await the outputs.
//! Each transport only translates: the HTTP routes live in `http/`, one file per route
//! family; the gRPC service in `grpc/`. Errors map to HTTP statuses and to gRPC codes in
//! exactly one place each (`http/error.rs`, `grpc/error.rs`).
//!
//! Security sits at the edges and is shared: bearer tokens (`auth`), TLS (`tls`) and the
//! input limits (`limits`) are set once in [`ServerSettings`] and applied by both
//! transports, HTTP as axum middleware and a listener, gRPC as a tower layer.

mod auth;
mod classification;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod grpc;
mod halt_poll;
pub mod http;
mod http_connections;
mod idle_poll;
mod limits;
mod load_request;
mod log_settings;
mod metric_help;
mod metrics_port;
mod request_metrics;
mod serve;
mod shared_memory;
mod state;
#[cfg(test)]
mod test_tensors;
mod tls;
mod trace;

pub use auth::Auth;
pub use idle_poll::IdlePoll;
pub use limits::{JSON_DEPTH_CEILING, Limits};
pub use log_settings::{LogLevels, LogSettings};
pub use metric_help::describe_metrics;
pub use metrics_port::serve_metrics;
pub use serve::serve;
pub use shared_memory::{BoundRegion, Placement, RegionStatus, SharedMemory};
pub use state::{AppState, ServerSettings};
pub use tls::{PemFile, TlsSettings};
pub use trace::{TraceSettings, Tracer};

/// A server setting that cannot be used (a token file with no token, a certificate that
/// does not parse); the message names the flag and file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The protocol extensions torchbridge implements, as Triton names them; perf_analyzer
/// reads statistics only when `statistics` is listed. System shared memory is listed
/// only when the server lets clients register regions (`--allow-client-shm`).
pub fn extensions(state: &AppState) -> Vec<&'static str> {
    let mut all = vec![
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "model_repository",
        "statistics",
        "parameters",
    ];
    if state.shared_memory.allowed() {
        all.push("system_shared_memory");
    }
    if state.settings.log.is_some() {
        all.push("logging");
    }
    all.push("trace");
    all
}

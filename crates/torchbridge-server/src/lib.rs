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

pub mod grpc;
pub mod http;
mod serve;
mod state;

pub use serve::serve;
pub use state::{AppState, ServerSettings};

/// The protocol extensions torchbridge implements, as Triton names them; perf_analyzer
/// reads statistics only when `statistics` is listed.
pub const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "statistics",
    "parameters",
];

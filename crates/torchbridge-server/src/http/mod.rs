//! KServe v2 / Open Inference Protocol over HTTP, wire-compatible with Triton so that
//! tritonclient's HTTP client and perf_analyzer work unchanged: JSON and binary tensor
//! data (mixed freely), gzip/deflate bodies both ways, and Triton's model configuration,
//! statistics and model repository extensions.
//!
//! One file per route family; the codecs are pure functions over [`Tensor`]s
//! (`request`, `response`, `tensor_json`, `binary`) so they are tested without a model;
//! every failure becomes `{"error": "…"}` in `error.rs`.
//!
//! [`Tensor`]: torchbridge_core::Tensor

mod binary;
mod compression;
mod error;
mod extract;
mod health;
mod infer;
mod metadata;
mod metrics;
mod model_config;
mod repository;
mod request;
mod response;
mod stats;
mod tensor_json;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::AppState;

/// The HTTP service: every route, the request metrics and the body limit.
pub fn app(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v2", get(health::server_metadata))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/models/stats", get(stats::all))
        .route("/v2/models/{model}", get(metadata::model))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(metadata::model),
        )
        .route("/v2/models/{model}/ready", get(metadata::ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(metadata::ready),
        )
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer::infer),
        )
        .route("/v2/models/{model}/config", get(model_config::config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(model_config::config),
        )
        .route("/v2/models/{model}/stats", get(stats::model))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(stats::model),
        )
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository::unload),
        )
        .route_layer(axum::middleware::from_fn(metrics::track))
        .fallback(metrics::not_found)
        .method_not_allowed_fallback(metrics::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

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

mod auth;
mod binary;
mod compression;
mod error;
mod extract;
mod health;
mod infer;
mod logging;
mod metadata;
mod metrics;
mod model_config;
mod repository;
mod request;
mod response;
mod shared_memory;
mod stats;
mod tensor_json;
#[cfg(test)]
mod tests;
mod trace;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
pub use tensor_json::quote_non_finite;
pub(crate) use trace::known_model;

use crate::AppState;

/// The HTTP service: every route, the request metrics, the body limit and, when the
/// server has tokens, the authentication check in front of all of them.
pub fn app(state: AppState) -> Router {
    let limit = state.settings.limits.max_body_bytes;
    let auth = state.settings.auth.clone();
    let router = Router::new()
        .route("/v2", get(health::server_metadata))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/logging", get(logging::get).post(logging::post))
        .route("/v2/trace/setting", get(trace::get).post(trace::post))
        .route(
            "/v2/models/{model}/trace/setting",
            get(trace::get_model).post(trace::post_model),
        )
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
        .route(
            "/v2/systemsharedmemory/status",
            get(shared_memory::status_all),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/status",
            get(shared_memory::status),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/register",
            post(shared_memory::register),
        )
        .route(
            "/v2/systemsharedmemory/unregister",
            post(shared_memory::unregister_all),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/unregister",
            post(shared_memory::unregister),
        )
        .route(
            "/v2/cudasharedmemory/status",
            get(shared_memory::cuda_status),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/status",
            get(shared_memory::cuda_status),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/register",
            post(shared_memory::cuda_register),
        )
        .route(
            "/v2/cudasharedmemory/unregister",
            post(shared_memory::cuda_unregister),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/unregister",
            post(shared_memory::cuda_unregister),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(metrics::not_found)
        .method_not_allowed_fallback(metrics::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit));
    let router = match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_token,
        )),
        None => router,
    };
    router.with_state(state)
}

/// The request decoding path for the fuzz target (`crate::fuzzing`): inflate, decode,
/// check, then re-encode what was accepted as binary data and decode that again,
/// which must give the same tensors.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_decode(
    body: axum::body::Bytes,
    header_length: Option<usize>,
    gzip: bool,
    limits: &crate::Limits,
    model: &torchbridge_core::ModelMetadata,
) {
    use compression::{Encoding, decompress};
    let body = match gzip {
        true => match decompress(Encoding::Gzip, &body, limits.max_inflated_bytes) {
            Ok(inflated) => axum::body::Bytes::from(inflated),
            Err(_) => return,
        },
        false => body,
    };
    let Ok(mut decoded) =
        request::decode(body, header_length, limits, &crate::SharedMemory::default())
    else {
        return;
    };
    for t in &decoded.inputs {
        t.check_bytes().expect("a decoded tensor is consistent");
    }
    let _ = decoded.outputs.check(model);
    let _ = model.prepare(decoded.inputs.clone());
    let as_json: Vec<_> = decoded
        .inputs
        .iter()
        .map(|t| (t.clone(), request::Delivery::Json))
        .collect();
    let _ = response::encode("m", 1, decoded.id.as_deref(), &as_json);
    let as_binary: Vec<_> = decoded
        .inputs
        .iter()
        .map(|t| (t.clone(), request::Delivery::Binary))
        .collect();
    let encoded = response::encode("m", 1, None, &as_binary).expect("binary encoding cannot fail");
    let json_end = encoded.header_length.unwrap_or(encoded.body.len());
    let json = std::str::from_utf8(&encoded.body[..json_end]).expect("the JSON part is UTF-8");
    let json = json.replacen(",\"outputs\":[", ",\"inputs\":[", 1);
    let mut again = json.clone().into_bytes();
    again.extend_from_slice(&encoded.body[json_end..]);
    let header_length = encoded.header_length.map(|_| json.len());
    let again = request::decode(
        again.into(),
        header_length,
        limits,
        &crate::SharedMemory::default(),
    )
    .expect("re-encoded tensors decode again");
    assert!(again.inputs == decoded.inputs, "re-encoded tensors differ");
}

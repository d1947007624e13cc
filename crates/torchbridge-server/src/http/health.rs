//! `GET /v2` (server metadata), `/v2/health/live`, `/v2/health/ready`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// The protocol extensions this server implements, as Triton names them; perf_analyzer
/// reads statistics only when `statistics` is listed.
pub const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "statistics",
    "parameters",
];

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "torchbridge",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// Ready once no model is still loading (a model that failed is reported by the
/// repository index and its own ready endpoint, and does not hold the server back).
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.registry.all_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready })))
}

//! `GET /v2` (server metadata), `/v2/health/live`, `/v2/health/ready`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

/// Server metadata, with the engines in use (`{"torch": "2.13.0", …}`) beside the
/// protocol's fields.
pub async fn server_metadata(State(state): State<AppState>) -> Json<Value> {
    let runtimes: serde_json::Map<String, Value> = state
        .settings
        .runtime_versions
        .iter()
        .map(|(name, version)| (name.to_string(), Value::from(version.as_str())))
        .collect();
    Json(json!({
        "name": "torchbridge",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": crate::extensions(&state),
        "runtimes": runtimes,
    }))
}

pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// Ready as [`AppState::server_ready`] says: every model available (Triton's strict
/// readiness, the default) or none still loading, and no stop coming.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.server_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready })))
}

//! Triton's system shared-memory extension over HTTP: `GET v2/systemsharedmemory[/region/{name}]/status`,
//! `POST v2/systemsharedmemory/region/{name}/register`,
//! `POST v2/systemsharedmemory[/region/{name}]/unregister`. CUDA shared memory is
//! answered with an error that says so.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::extract::Body;
use crate::{AppState, RegionStatus};

#[derive(Debug, Deserialize)]
struct RegisterRequest {
    key: String,
    #[serde(default)]
    offset: u64,
    byte_size: u64,
}

pub async fn status_all(
    State(state): State<AppState>,
) -> Result<Json<Vec<RegionStatus>>, ApiError> {
    Ok(Json(state.shared_memory.status(None)?))
}

pub async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<RegionStatus>>, ApiError> {
    Ok(Json(state.shared_memory.status(Some(&name))?))
}

pub async fn register(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let request: RegisterRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid shared-memory register request for region `{name}` \
             (expected {{\"key\": …, \"offset\": …, \"byte_size\": …}}): {e}"
        ))
    })?;
    state
        .shared_memory
        .register(&name, &request.key, request.offset, request.byte_size)?;
    tracing::info!(region = %name, key = %request.key, byte_size = request.byte_size, "shared memory registered");
    Ok(StatusCode::OK)
}

pub async fn unregister_all(State(state): State<AppState>) -> StatusCode {
    state.shared_memory.unregister(None);
    StatusCode::OK
}

pub async fn unregister(State(state): State<AppState>, Path(name): Path<String>) -> StatusCode {
    state.shared_memory.unregister(Some(&name));
    StatusCode::OK
}

/// No CUDA region is ever registered: the status is empty (as a CPU-only Triton answers).
pub async fn cuda_status() -> Json<Value> {
    Json(Value::Array(Vec::new()))
}

/// Unregistering succeeds: there is nothing to unregister (perf_analyzer unregisters every
/// CUDA region when it ends, whatever memory it used).
pub async fn cuda_unregister() -> StatusCode {
    StatusCode::OK
}

/// Registering a CUDA region is refused.
pub async fn cuda_register() -> ApiError {
    ApiError::bad_request(
        "CUDA shared memory is not supported by torchbridge; use system shared memory \
         (v2/systemsharedmemory) or send the tensors in the request",
    )
}

//! The model repository extension: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{model}/load` and `…/unload`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use torchbridge_core::ConfigOverride;

use super::error::ApiError;
use super::extract::{Body, ModelRef, json_or_default};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// Every model of the repository: loaded, failed (with the reason) or not loaded yet.
pub async fn index(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let request: IndexRequest = json_or_default(&body)?;
    let registry = state.registry.clone();
    let entries = tokio::task::spawn_blocking(move || registry.index())
        .await
        .map_err(internal)?;
    let entries: Vec<Value> = entries
        .into_iter()
        .filter(|e| !request.ready || e.state == "READY")
        .map(|e| {
            let mut entry = json!({ "name": e.name, "state": e.state, "reason": e.reason });
            if let Some(v) = e.version {
                entry["version"] = json!(v.to_string());
            }
            entry
        })
        .collect();
    Ok(Json(Value::Array(entries)))
}

#[derive(Debug, Default, Deserialize)]
struct LoadRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Loads (or reloads) a model from the repository, with the `config` parameter's config
/// where one is given; answers once it is ready or failed.
pub async fn load(
    State(state): State<AppState>,
    model: ModelRef,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let request: LoadRequest = json_or_default(&body)?;
    if let Some(key) = request.parameters.keys().find(|k| k.starts_with("file:")) {
        return Err(ApiError::bad_request(format!(
            "loading with the files of a model (`{key}`) is not supported; put them in the \
             model's directory in the repository"
        )));
    }
    let config_override = match request.parameters.get("config") {
        None => None,
        Some(Value::String(text)) => Some(
            ConfigOverride::parse(text)
                .map_err(|e| ApiError::bad_request(format!("the `config` parameter {e}")))?,
        ),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the `config` parameter must be a string (the model config as JSON), got {other}"
            )));
        }
    };
    let registry = state.registry.clone();
    let name = model.name.clone();
    tokio::task::spawn_blocking(move || registry.load_with(&name, config_override))
        .await
        .map_err(internal)??;
    tracing::info!(model = %model.name, "loaded through the repository API");
    Ok(StatusCode::OK)
}

/// Unloads a model: new requests are refused, queued ones finish.
pub async fn unload(
    State(state): State<AppState>,
    model: ModelRef,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let _: Map<String, Value> = json_or_default(&body)?;
    state.registry.unload(&model.name)?;
    tracing::info!(model = %model.name, "unloaded through the repository API");
    Ok(StatusCode::OK)
}

fn internal(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the repository task failed: {e}"),
    )
}

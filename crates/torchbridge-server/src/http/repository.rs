//! The model repository extension: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{model}/load` and `…/unload`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::extract::{Body, ModelRef, json_or_default};
use crate::AppState;
use crate::load_request::{LoadParameter, LoadRequest};

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
struct LoadRequestJson {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Loads (or reloads) a model from the repository — or from the files the request
/// carries — with the `config` parameter's config where one is given; answers once it is
/// ready or failed.
pub async fn load(
    State(state): State<AppState>,
    model: ModelRef,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    model_control(&state)?;
    let request: LoadRequestJson = json_or_default(&body)?;
    let parameters = request.parameters.into_iter().map(|(key, value)| {
        let value = match value {
            Value::String(text) => LoadParameter::Text(text),
            other => LoadParameter::Other(other.to_string()),
        };
        (key, value)
    });
    let request = LoadRequest::read(&model.name, parameters, state.settings.allow_model_upload)?;
    let registry = state.registry.clone();
    let name = model.name.clone();
    tokio::task::spawn_blocking(move || request.load(&registry, &name))
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
    model_control(&state)?;
    let _: Map<String, Value> = json_or_default(&body)?;
    state.registry.unload(&model.name)?;
    tracing::info!(model = %model.name, "unloaded through the repository API");
    Ok(StatusCode::OK)
}

/// Refuses (403) when the server's model control is off.
fn model_control(state: &AppState) -> Result<(), ApiError> {
    if state.settings.model_control {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        crate::state::MODEL_CONTROL_OFF,
    ))
}

fn internal(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the repository task failed: {e}"),
    )
}

//! `GET /v2/models/{model}[/versions/{version}]` and `…/ready`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use torchbridge_core::{ModelMetadata, TensorSpec};

use super::error::ApiError;
use super::extract::ModelRef;
use crate::AppState;

pub async fn model(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<Value>, ApiError> {
    let pool = state.registry.get(&model.name, model.version)?;
    let versions = state.registry.versions(&model.name);
    Ok(Json(metadata_json(pool.metadata(), &versions)))
}

/// 200 when the model (version) is loaded and can serve; its error (404, 503) otherwise.
pub async fn ready(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<Value>, ApiError> {
    state.registry.ready(&model.name, model.version)?;
    Ok(Json(json!({ "name": model.name, "ready": true })))
}

/// The protocol's model metadata: full shapes, with `-1` in front for the batch;
/// `versions`, every version of the model being served.
pub fn metadata_json(m: &ModelMetadata, versions: &[u64]) -> Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({ "name": s.name, "datatype": s.datatype, "shape": m.full_shape(s) }))
            .collect()
    };
    json!({
        "name": m.name,
        "versions": versions.iter().map(u64::to_string).collect::<Vec<_>>(),
        "platform": m.platform,
        "inputs": tensors(&m.inputs),
        "outputs": tensors(&m.outputs),
    })
}

//! `GET /v2/models/{model}[/versions/{version}]/config`: the model's configuration in
//! the shape of Triton's `ModelConfig` JSON. perf_analyzer will not start without it; it
//! reads `max_batch_size`, `input`/`output` names and whether `dynamic_batching` is set.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use torchbridge_core::{
    DataType, Device, ModelConfig, ModelDir, ModelMetadata, TensorSpec, VersionPolicy,
};

use super::error::ApiError;
use super::extract::ModelRef;
use crate::AppState;
use crate::grpc::default_model_filename;

pub async fn config(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<Value>, ApiError> {
    let pool = state.registry.get(&model.name, model.version)?;
    let metadata = pool.metadata();
    // The served version's config.toml, read again (the pool keeps only its metadata),
    // as the load request's config changed it.
    let dir = ModelDir::open_with(
        &state.registry.model_path(&model.name),
        Some(metadata.version),
        state.registry.config_override(&model.name).as_ref(),
    );
    let dir = match dir {
        Ok(dir) => Some(dir),
        Err(e) => {
            tracing::warn!(model = %model.name, "model config: cannot reread config.toml: {e}");
            None
        }
    };
    let mut shown = config_json(metadata, dir.as_ref().map(|d| &d.config), pool.instances());
    if let Some(dir) = &dir {
        shown["default_model_filename"] = default_model_filename(dir).into();
    }
    Ok(Json(shown))
}

/// Triton's `TYPE_…` name of a datatype (`BYTES` is `TYPE_STRING`).
pub fn triton_type(datatype: DataType) -> &'static str {
    match datatype {
        DataType::Bool => "TYPE_BOOL",
        DataType::Uint8 => "TYPE_UINT8",
        DataType::Uint16 => "TYPE_UINT16",
        DataType::Uint32 => "TYPE_UINT32",
        DataType::Uint64 => "TYPE_UINT64",
        DataType::Int8 => "TYPE_INT8",
        DataType::Int16 => "TYPE_INT16",
        DataType::Int32 => "TYPE_INT32",
        DataType::Int64 => "TYPE_INT64",
        DataType::Fp16 => "TYPE_FP16",
        DataType::Fp32 => "TYPE_FP32",
        DataType::Fp64 => "TYPE_FP64",
        DataType::Bf16 => "TYPE_BF16",
        DataType::Bytes => "TYPE_STRING",
    }
}

/// Triton's JSON form of a version policy.
fn version_policy(policy: &VersionPolicy) -> Value {
    match policy {
        VersionPolicy::Latest(n) => json!({ "latest": { "num_versions": n } }),
        VersionPolicy::All => json!({ "all": {} }),
        VersionPolicy::Specific(versions) => json!({ "specific": { "versions": versions } }),
    }
}

/// The config JSON of a loaded model; `config` adds batching, device and parameters.
pub fn config_json(m: &ModelMetadata, config: Option<&ModelConfig>, instances: usize) -> Value {
    let input: Vec<Value> = m
        .inputs
        .iter()
        .map(|s: &TensorSpec| {
            json!({
                "name": s.name,
                "data_type": triton_type(s.datatype),
                "format": "FORMAT_NONE",
                "dims": s.dims,
                "is_shape_tensor": false,
                "allow_ragged_batch": false,
                "optional": false,
            })
        })
        .collect();
    let labels = |name: &str| Some(config?.labels_file(name)?.display().to_string());
    let output: Vec<Value> = m
        .outputs
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "data_type": triton_type(s.datatype),
                "dims": s.dims,
                "label_filename": labels(&s.name).unwrap_or_default(),
                "is_shape_tensor": false,
            })
        })
        .collect();
    let (kind, gpus) = match config.map(|c| c.device) {
        Some(Device::Cuda(i)) => ("KIND_GPU", vec![i]),
        _ => ("KIND_CPU", vec![]),
    };
    let mut out = json!({
        "name": m.name,
        "platform": m.platform,
        "backend": config.map_or(m.platform.as_str(), |c| c.backend.as_str()),
        "version_policy": config.map_or_else(
            || json!({ "specific": { "versions": [m.version] } }),
            |c| version_policy(&c.version_policy),
        ),
        "max_batch_size": m.max_batch_size,
        "input": input,
        "output": output,
        "instance_group": [{
            "name": format!("{}_0", m.name),
            "kind": kind,
            "count": instances,
            "gpus": gpus,
        }],
        "default_model_filename": "",
    });
    let Some(config) = config else {
        return out;
    };
    if let Some(b) = &config.batching {
        out["dynamic_batching"] = json!({
            "preferred_batch_size": b.preferred_batch_sizes,
            "max_queue_delay_microseconds": b.max_queue_delay_us,
            "preserve_ordering": false,
            "default_queue_policy": { "max_queue_size": b.max_queue_size },
        });
    }
    let parameters: Map<String, Value> = config
        .parameters
        .iter()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k.clone(), json!({ "string_value": text }))
        })
        .collect();
    out["parameters"] = Value::Object(parameters);
    out
}

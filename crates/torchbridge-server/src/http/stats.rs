//! `GET /v2/models/stats` and `/v2/models/{model}[/versions/{version}]/stats`: Triton's
//! statistics JSON from each model's counters: `compute_input` / `compute_output` are the
//! bridge's crossings in and out, `compute_infer` the engine's own time. The response
//! cache reads zero.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use torchbridge_core::{DurationStat, ServedModel};

use super::error::ApiError;
use super::extract::ModelRef;
use crate::AppState;

pub async fn all(State(state): State<AppState>) -> Json<Value> {
    let stats: Vec<Value> = state
        .registry
        .index()
        .iter()
        .filter_map(|entry| state.registry.get(&entry.name, entry.version).ok())
        .map(|pool| model_stats(&pool))
        .collect();
    Json(json!({ "model_stats": stats }))
}

pub async fn model(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<Value>, ApiError> {
    let served = state.registry.served(&model.name, model.version)?;
    let stats: Vec<Value> = served.iter().map(|pool| model_stats(pool)).collect();
    Ok(Json(json!({ "model_stats": stats })))
}

fn duration(stat: &DurationStat) -> Value {
    json!({ "count": stat.count(), "ns": stat.nanos() })
}

fn model_stats(pool: &ServedModel) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let (m, s) = (pool.metadata(), pool.stats());
    let zero = json!({ "count": 0, "ns": 0 });
    json!({
        "name": m.name,
        "version": m.version.to_string(),
        "last_inference": s.last_inference_ms.load(Relaxed),
        "inference_count": s.inference_count.load(Relaxed),
        "execution_count": s.execution_count.load(Relaxed),
        "inference_stats": {
            "success": duration(&s.success),
            "fail": duration(&s.fail),
            "queue": duration(&s.queue),
            "compute_input": duration(&s.compute_input),
            "compute_infer": duration(&s.compute_infer),
            "compute_output": duration(&s.compute_output),
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "response_stats": {},
        "batch_stats": s.batch_sizes.snapshot().iter().map(|b| {
            let calls = json!({ "count": b.count, "ns": 0 });
            json!({
                "batch_size": b.batch_size,
                "compute_input": calls,
                "compute_infer": { "count": b.count, "ns": b.nanos },
                "compute_output": calls,
            })
        }).collect::<Vec<_>>(),
        "memory_usage": [],
        // Not Triton's: instances busy on a call past its requests' deadlines.
        "stuck_instances": s.stuck_instances(),
    })
}

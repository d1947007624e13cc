//! Triton's per-model statistics, from each served model's counters.

use torchbridge_core::{DurationStat, Result, ServedModel};

use super::convert;
use super::proto::{
    InferBatchStatistics, InferStatistics, ModelStatistics, ModelStatisticsRequest,
    ModelStatisticsResponse, StatisticDuration,
};
use crate::AppState;

/// Statistics of the named model, or of every ready model when no name is given.
/// compute_input / compute_output are the bridge's crossings in and out, compute_infer
/// the engine's own time (bridges that do not split a call report it all as infer).
/// The cache reads zero. `batch_stats` counts backend calls by the rows they ran (the
/// whole call's time under compute_infer).
pub(super) fn statistics(
    state: &AppState,
    request: &ModelStatisticsRequest,
) -> Result<ModelStatisticsResponse> {
    let pools = if request.name.is_empty() {
        state
            .registry
            .index()
            .into_iter()
            .filter_map(|entry| state.registry.get(&entry.name, entry.version).ok())
            .collect()
    } else {
        let version = convert::version(&request.version)?;
        state.registry.served(&request.name, version)?
    };
    let model_stats = pools.iter().map(|pool| model_statistics(pool)).collect();
    Ok(ModelStatisticsResponse { model_stats })
}

fn model_statistics(pool: &ServedModel) -> ModelStatistics {
    use std::sync::atomic::Ordering::Relaxed;
    let (m, s) = (pool.metadata(), pool.stats());
    let duration = |d: &DurationStat| {
        Some(StatisticDuration {
            count: d.count(),
            ns: d.nanos(),
        })
    };
    let zero = Some(StatisticDuration::default());
    let batch_stats = s
        .batch_sizes
        .snapshot()
        .into_iter()
        .map(|b| {
            let calls = |ns| Some(StatisticDuration { count: b.count, ns });
            InferBatchStatistics {
                batch_size: b.batch_size as u64,
                compute_input: calls(0),
                compute_infer: calls(b.nanos),
                compute_output: calls(0),
            }
        })
        .collect();
    ModelStatistics {
        name: m.name.clone(),
        version: m.version.to_string(),
        last_inference: s.last_inference_ms.load(Relaxed),
        inference_count: s.inference_count.load(Relaxed),
        execution_count: s.execution_count.load(Relaxed),
        inference_stats: Some(InferStatistics {
            success: duration(&s.success),
            fail: duration(&s.fail),
            queue: duration(&s.queue),
            compute_input: duration(&s.compute_input),
            compute_infer: duration(&s.compute_infer),
            compute_output: duration(&s.compute_output),
            cache_hit: zero,
            cache_miss: zero,
        }),
        batch_stats,
        ..Default::default()
    }
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use metrics::{Gauge, Histogram};

use crate::CallTiming;

/// A count of events and their total time, as Triton's statistics report them.
#[derive(Debug, Default)]
pub struct DurationStat {
    count: AtomicU64,
    nanos: AtomicU64,
}

impl DurationStat {
    pub fn record(&self, elapsed: Duration) {
        self.count.fetch_add(1, Relaxed);
        self.nanos.fetch_add(elapsed.as_nanos() as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn nanos(&self) -> u64 {
        self.nanos.load(Relaxed)
    }
}

/// Backend calls of one batch size and their compute time (Triton's `batch_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSizeStat {
    pub batch_size: usize,
    pub count: u64,
    pub nanos: u64,
}

/// Backend calls counted by batch size. One short lock per call: the map holds a
/// handful of sizes, and a backend call costs far more.
#[derive(Debug, Default)]
pub struct BatchSizes(Mutex<BTreeMap<usize, (u64, u64)>>);

impl BatchSizes {
    pub fn record(&self, batch_size: usize, compute: Duration) {
        let mut sizes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (count, nanos) = sizes.entry(batch_size).or_default();
        *count += 1;
        *nanos += compute.as_nanos() as u64;
    }

    /// Every batch size seen, smallest first.
    pub fn snapshot(&self) -> Vec<BatchSizeStat> {
        let sizes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sizes
            .iter()
            .map(|(&batch_size, &(count, nanos))| BatchSizeStat {
                batch_size,
                count,
                nanos,
            })
            .collect()
    }
}

/// Per-model counters, updated by the instance workers (and the batching scheduler)
/// without locks, but for the small batch-size map.
#[derive(Debug, Default)]
pub struct ModelStats {
    /// Rows inferred (a batch of 8 counts 8).
    pub inference_count: AtomicU64,
    /// Backend calls (a batch of 8 counts 1).
    pub execution_count: AtomicU64,
    /// Milliseconds since the Unix epoch of the last inference.
    pub last_inference_ms: AtomicU64,
    /// Requests answered with outputs, from queueing to reply.
    pub success: DurationStat,
    /// Requests answered with an error (timeouts included; requests refused as
    /// overloaded never entered the queue and are not counted).
    pub fail: DurationStat,
    /// Time each request waited, from arrival (in the batching queue, when batching is
    /// on) until an instance started on it.
    pub queue: DurationStat,
    /// Time crossing the bridge on the way in (inputs to the engine's tensors).
    pub compute_input: DurationStat,
    /// Time in the engine (the whole call, for bridges that do not split it).
    pub compute_infer: DurationStat,
    /// Time crossing back (the engine's outputs to response bytes).
    pub compute_output: DurationStat,
    /// Backend calls by the rows they ran (with dynamic batching, rows of many requests).
    pub batch_sizes: BatchSizes,
    /// Prometheus series, once the model's name and version are known.
    exported: OnceLock<Exported>,
}

/// The Prometheus side of the counters (no-ops unless the binary installed a recorder:
/// libraries call the macros, only the binary exports).
#[derive(Debug)]
struct Exported {
    queue: Histogram,
    compute: Histogram,
    crossing_in: Histogram,
    crossing_out: Histogram,
    batch_size: Histogram,
    in_flight: Gauge,
    queue_depth: Gauge,
}

impl ModelStats {
    /// Labels this model's metrics; called once its instances have loaded.
    pub fn label(&self, model: &str, version: u64) {
        let labels = [
            ("model", model.to_string()),
            ("version", version.to_string()),
        ];
        let _ = self.exported.set(Exported {
            queue: metrics::histogram!("torchbridge_queue_duration_seconds", &labels),
            compute: metrics::histogram!("torchbridge_compute_duration_seconds", &labels),
            crossing_in: metrics::histogram!(
                "torchbridge_bridge_crossing_seconds",
                &[&labels[..], &[("direction", "in".to_string())]].concat()
            ),
            crossing_out: metrics::histogram!(
                "torchbridge_bridge_crossing_seconds",
                &[&labels[..], &[("direction", "out".to_string())]].concat()
            ),
            batch_size: metrics::histogram!("torchbridge_batch_size", &labels),
            in_flight: metrics::gauge!("torchbridge_inflight_requests", &labels),
            queue_depth: metrics::gauge!("torchbridge_queue_depth", &labels),
        });
    }

    /// A request waited `waited` for an instance to start on it.
    pub fn queued(&self, waited: Duration) {
        self.queue.record(waited);
        if let Some(e) = self.exported.get() {
            e.queue.record(waited.as_secs_f64());
        }
    }

    /// A request was answered, `ok` or with an error, `elapsed` after it arrived.
    pub fn answered(&self, ok: bool, elapsed: Duration) {
        let outcome = if ok { &self.success } else { &self.fail };
        outcome.record(elapsed);
    }

    /// A backend call ran `rows` rows in `total`, split as `timing` where the bridge
    /// measures it.
    pub fn computed(&self, rows: usize, total: Duration, timing: Option<CallTiming>) {
        let timing = timing.unwrap_or(CallTiming {
            compute: total,
            ..CallTiming::default()
        });
        self.compute_input.record(timing.input);
        self.compute_infer.record(timing.compute);
        self.compute_output.record(timing.output);
        self.batch_sizes.record(rows, total);
        self.execution_count.fetch_add(1, Relaxed);
        self.inference_count.fetch_add(rows as u64, Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_inference_ms
            .store(now.as_millis() as u64, Relaxed);
        if let Some(e) = self.exported.get() {
            e.compute.record(timing.compute.as_secs_f64());
            e.crossing_in.record(timing.input.as_secs_f64());
            e.crossing_out.record(timing.output.as_secs_f64());
            e.batch_size.record(rows as f64);
        }
    }

    /// Requests waiting for their answer went up (`1.0`) or down (`-1.0`).
    pub fn in_flight(&self, delta: f64) {
        if let Some(e) = self.exported.get() {
            e.in_flight.increment(delta);
        }
    }

    /// Requests queued, not yet given to an instance.
    pub fn queue_depth(&self, depth: usize) {
        if let Some(e) = self.exported.get() {
            e.queue_depth.set(depth as f64);
        }
    }
}

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    /// Time inside the bridge, conversions included.
    pub compute_infer: DurationStat,
    /// Backend calls by the rows they ran (with dynamic batching, rows of many requests).
    pub batch_sizes: BatchSizes,
}

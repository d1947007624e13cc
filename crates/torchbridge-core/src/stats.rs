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

/// Per-model counters, updated by the instance workers without locks.
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
    /// Requests answered with an error.
    pub fail: DurationStat,
    /// Time waiting in the queue for an instance.
    pub queue: DurationStat,
    /// Time inside the bridge, conversions included.
    pub compute_infer: DurationStat,
}

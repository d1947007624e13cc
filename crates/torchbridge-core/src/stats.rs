use std::collections::BTreeMap;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use metrics::{Gauge, Histogram};

use crate::CallTiming;
use crate::trace::RanCall;

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
    /// Which instances are busy, since when, and which of them are stuck.
    pub health: InstanceHealth,
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
    /// Made at the first report of a queue: only models with `[batching]` have one.
    queue_depth: OnceLock<Gauge>,
    labels: [(&'static str, String); 2],
    stuck: Gauge,
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
            queue_depth: OnceLock::new(),
            stuck: metrics::gauge!("torchbridge_instances_stuck", &labels),
            labels,
        });
    }

    /// Counters for a pool of `instances` instances.
    pub fn for_instances(instances: usize) -> Self {
        ModelStats {
            health: InstanceHealth::new(instances),
            ..ModelStats::default()
        }
    }

    /// The instances stuck now: busy on one call past its stuck time (see
    /// [`InstanceHealth`]), lowest index first.
    pub fn stuck_instances(&self) -> Vec<usize> {
        self.health.stuck(Instant::now())
    }

    /// Sets the `torchbridge_instances_stuck` gauge.
    pub fn stuck_count(&self, stuck: usize) {
        if let Some(e) = self.exported.get() {
            e.stuck.set(stuck as f64);
        }
    }

    /// A request that arrived at `arrived` was answered now, `ok` or with an error; `ran`
    /// is the call that carried it, if one did. As in Triton, only a success counts its
    /// queue wait and its call's time (the whole call's, for each request it carried);
    /// a failure counts in `fail` alone.
    pub fn answered(&self, ok: bool, arrived: Instant, ran: Option<&RanCall>) {
        let elapsed = arrived.elapsed();
        let ran = ran.map(|ran| (ran, ran.started.saturating_duration_since(arrived)));
        // The Prometheus histogram has every wait, failures' too (a queue that makes
        // requests time out is what it is for).
        if let (Some(e), Some((_, waited))) = (self.exported.get(), ran) {
            e.queue.record(waited.as_secs_f64());
        }
        if !ok {
            self.fail.record(elapsed);
            return;
        }
        self.success.record(elapsed);
        let Some((ran, waited)) = ran else {
            return;
        };
        self.queue.record(waited);
        let timing = ran.timing.unwrap_or(CallTiming {
            compute: ran.ended - ran.started,
            ..CallTiming::default()
        });
        self.compute_input.record(timing.input);
        self.compute_infer.record(timing.compute);
        self.compute_output.record(timing.output);
    }

    /// A backend call ran `rows` rows in `total`, split as `timing` where the bridge
    /// measures it; it counts as an execution (and its rows as inferences) when `ok`.
    /// The Prometheus histograms have every call, failed ones too.
    pub fn executed(&self, ok: bool, rows: usize, total: Duration, timing: Option<CallTiming>) {
        let timing = timing.unwrap_or(CallTiming {
            compute: total,
            ..CallTiming::default()
        });
        if let Some(e) = self.exported.get() {
            e.compute.record(timing.compute.as_secs_f64());
            e.crossing_in.record(timing.input.as_secs_f64());
            e.crossing_out.record(timing.output.as_secs_f64());
            e.batch_size.record(rows as f64);
        }
        if !ok {
            return;
        }
        self.batch_sizes.record(rows, total);
        self.execution_count.fetch_add(1, Relaxed);
        self.inference_count.fetch_add(rows as u64, Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_inference_ms
            .store(now.as_millis() as u64, Relaxed);
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
            e.queue_depth
                .get_or_init(|| metrics::gauge!("torchbridge_queue_depth", &e.labels))
                .set(depth as f64);
        }
    }
}

/// Where each instance of a model stands: idle, or busy on one call since a time, and
/// from when that call counts as **stuck**. Workers write their own slot at the start
/// and end of each call; readers (statistics, the pool's watchdog, admission) read all
/// slots. Lock-free: three atomics per instance.
///
/// A call is stuck once it has run past the deadline of every request it holds (the
/// server gives each request one: its `timeout`, at most the server's request timeout)
/// and for at least [`InstanceHealth::STUCK_FLOOR`]: every caller has been answered with
/// a timeout, yet the instance is still busy and takes no new work. A call with a
/// request that has no deadline (library calls) never counts as stuck.
#[derive(Debug, Default)]
pub struct InstanceHealth {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    /// Nanoseconds since [`epoch`] when the current call started, plus one; 0 = idle.
    busy_since: AtomicU64,
    /// Nanoseconds since [`epoch`] from which the current call is stuck; `u64::MAX` =
    /// never.
    stuck_at: AtomicU64,
    /// The watchdog has reported this call as stuck (so it is reported once).
    reported: AtomicBool,
    /// Set while the instance can serve nothing (see [`InstanceHealth::set_broken`]);
    /// the flag spares each call the lock.
    broken: AtomicBool,
    broken_reason: Mutex<Option<String>>,
}

// Ordering: `busy_since` is stored (Release) after `stuck_at` and loaded (Acquire)
// before it, so a reader that sees a call started sees that call's `stuck_at`.

/// A process-wide origin, so instants fit in an atomic.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64
}

impl InstanceHealth {
    /// However short the deadlines of its requests, a call is not stuck before it has
    /// run this long (so a client's tiny `timeout` cannot make instances look stuck).
    pub const STUCK_FLOOR: Duration = Duration::from_secs(1);

    pub fn new(instances: usize) -> Self {
        epoch();
        let slot = || Slot {
            busy_since: AtomicU64::new(0),
            stuck_at: AtomicU64::new(u64::MAX),
            reported: Default::default(),
            broken: Default::default(),
            broken_reason: Mutex::default(),
        };
        InstanceHealth {
            slots: (0..instances).map(|_| slot()).collect(),
        }
    }

    /// Instance `i` started a call at `now` whose requests must be answered by
    /// `answer_by` (`None`: one of them has no deadline).
    pub fn started(&self, i: usize, now: Instant, answer_by: Option<Instant>) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let stuck_at = answer_by.map_or(u64::MAX, |by| nanos(by.max(now + Self::STUCK_FLOOR)));
        slot.stuck_at.store(stuck_at, Relaxed);
        slot.reported.store(false, Relaxed);
        slot.busy_since.store(nanos(now) + 1, Release);
    }

    /// Instance `i` finished its call; returns how long it ran when it had been
    /// reported stuck (for a log line saying it is back).
    pub fn finished(&self, i: usize) -> Option<Duration> {
        let slot = self.slots.get(i)?;
        let since = slot.busy_since.swap(0, AcqRel);
        slot.stuck_at.store(u64::MAX, Relaxed);
        let reported = slot.reported.swap(false, Relaxed);
        (reported && since > 0)
            .then(|| Duration::from_nanos(nanos(Instant::now()).saturating_sub(since - 1)))
    }

    /// Instances stuck at `now`, lowest index first.
    pub fn stuck(&self, now: Instant) -> Vec<usize> {
        let now = nanos(now);
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy_since.load(Acquire) > 0 && now >= s.stuck_at.load(Relaxed))
            .map(|(i, _)| i)
            .collect()
    }

    /// Every instance is stuck (false for a pool of none).
    pub fn all_stuck(&self, now: Instant) -> bool {
        !self.slots.is_empty() && self.stuck(now).len() == self.slots.len()
    }

    /// Instances stuck at `now` and not reported yet, with how long their call has
    /// run; each is marked reported, so a stuck call is returned once.
    pub fn newly_stuck(&self, now: Instant) -> Vec<(usize, Duration)> {
        let at = nanos(now);
        self.stuck(now)
            .into_iter()
            .filter(|&i| !self.slots[i].reported.swap(true, Relaxed))
            .map(|i| {
                let since = self.slots[i].busy_since.load(Relaxed).max(1) - 1;
                (i, Duration::from_nanos(at.saturating_sub(since)))
            })
            .collect()
    }

    pub fn instances(&self) -> usize {
        self.slots.len()
    }

    /// Records after each call whether instance `i` can serve nothing until it recovers
    /// (`Some(why)`: its worker process could not be restarted) or is well (`None`).
    pub fn set_broken(&self, i: usize, why: Option<String>) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        if why.is_none() && !slot.broken.load(Relaxed) {
            return;
        }
        let mut reason = slot.broken_reason.lock().unwrap();
        slot.broken.store(why.is_some(), Relaxed);
        *reason = why;
    }

    /// Why the model can serve nothing: every instance is broken (the first one's reason);
    /// `None` while any instance can serve (and for a pool of none).
    pub fn all_broken(&self) -> Option<String> {
        if self.slots.is_empty() || !self.slots.iter().all(|s| s.broken.load(Relaxed)) {
            return None;
        }
        self.slots[0].broken_reason.lock().unwrap().clone()
    }
}

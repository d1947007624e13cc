//! What one backend instance does: take work, run each call, count it, answer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::trace::RanCall;
use crate::{Backend, Batch, Error, ModelStats, Result, Tensor};

/// Whoever waits for a job: asked before it runs, answered once after. A caller's own
/// request answers one oneshot; a dynamic batch answers each request it holds.
pub(crate) trait Waiter: Send {
    /// Nobody waits any more: the job is skipped.
    fn is_closed(&self) -> bool;
    /// The job's call starts now (before its deadline).
    fn starting(&self);
    /// The outcome, and the call that produced it (`None`: the job never ran).
    fn complete(self: Box<Self>, result: Result<Vec<Tensor>>, ran: Option<RanCall>);
}

pub(crate) struct Job {
    pub batch: Batch,
    pub enqueued: Instant,
    /// Not started by then: answered [`Error::Timeout`], never run.
    pub deadline: Option<Instant>,
    /// The latest deadline of the requests it holds (`None` if one has none): once a
    /// call runs past it, every caller has been answered and the instance is stuck.
    pub answer_by: Option<Instant>,
    pub waiter: Box<dyn Waiter>,
}

/// A queue an instance serves for a while: it asks for jobs until the queue has none
/// ready, without going back to the pool's channel (and without a thread wake-up)
/// between them. The dynamic batcher is one.
pub(crate) trait Turn: Send + Sync {
    /// The next job of this turn, or `None` to end it. May block while the queue waits
    /// for companions of its oldest request.
    fn next_job(&self) -> Option<Job>;
}

/// What the pool's channel carries to its instances.
pub(crate) enum Work {
    Job(Job),
    Turn(Arc<dyn Turn>),
}

/// One loaded instance. A worker thread owns its turn at it; a caller may borrow it for
/// one call when it is idle (see `InstancePool::run_here`).
pub(crate) struct Instance {
    pub index: usize,
    pub backend: Mutex<Box<dyn Backend>>,
    /// How long its latest call took, in ns (`u64::MAX` before the first).
    pub last_call_ns: AtomicU64,
    /// Rows of its latest call (0 before the first).
    pub last_rows: AtomicUsize,
}

impl Instance {
    pub fn new(index: usize, backend: Box<dyn Backend>) -> Self {
        Instance {
            index,
            backend: Mutex::new(backend),
            last_call_ns: AtomicU64::new(u64::MAX),
            last_rows: AtomicUsize::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Box<dyn Backend>> {
        // A call that panicked was caught inside the lock; the backend is still usable.
        self.backend.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A worker's loop: run each job whose caller still waits and whose deadline has not
/// passed; serve each turn until it ends.
pub(crate) fn serve(instance: Arc<Instance>, queue: Receiver<Work>, stats: &ModelStats) {
    for work in queue.iter() {
        match work {
            Work::Job(job) => run_job(&instance, job, stats),
            Work::Turn(turn) => {
                while let Some(job) = turn.next_job() {
                    run_job(&instance, job, stats);
                }
            }
        }
    }
}

fn run_job(instance: &Instance, job: Job, stats: &ModelStats) {
    if job.waiter.is_closed() {
        // Its caller left (timed out, or disconnected): never run, counted as failed. The
        // answer reaches nobody, so it names no model.
        let waited_ms = job.enqueued.elapsed().as_millis() as u64;
        let model = String::new();
        job.waiter
            .complete(Err(Error::Timeout { model, waited_ms }), None);
        return;
    }
    let backend = instance.lock();
    let started = Instant::now();
    if job.deadline.is_some_and(|d| started >= d) {
        let waited_ms = (started - job.enqueued).as_millis() as u64;
        let model = backend.metadata().name.clone();
        job.waiter
            .complete(Err(Error::Timeout { model, waited_ms }), None);
        return;
    }
    job.waiter.starting();
    let (result, ran) = call(instance, backend, job.batch, job.answer_by, stats);
    job.waiter.complete(result, Some(ran));
}

/// One backend call: a panic becomes an error, the outputs are checked against the
/// metadata, and the call is counted. While it runs, the instance's slot in
/// [`ModelStats::health`] says so. The backend's lock is released before the caller
/// hears of the call.
pub(crate) fn call(
    instance: &Instance,
    mut backend: MutexGuard<'_, Box<dyn Backend>>,
    batch: Batch,
    answer_by: Option<Instant>,
    stats: &ModelStats,
) -> (Result<Vec<Tensor>>, RanCall) {
    let (index, rows) = (instance.index, batch.rows);
    let started = Instant::now();
    stats.health.started(index, started, answer_by);
    let result = catch_unwind(AssertUnwindSafe(|| backend.infer(batch)))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Inference {
                model: backend.metadata().name.clone(),
                message: format!("the bridge panicked: {message}"),
            })
        })
        .and_then(|outputs| {
            backend.metadata().check_outputs(&outputs, rows)?;
            Ok(outputs)
        });
    stats.health.set_broken(index, backend.broken());
    if let Some(busy) = stats.health.finished(index) {
        tracing::warn!(
            model = %backend.metadata().name,
            instance = index,
            busy_ms = busy.as_millis() as u64,
            "instance {index} of model `{}` returned after {busy:?} and is no longer stuck",
            backend.metadata().name
        );
    }
    let ended = Instant::now();
    let took = ended - started;
    let took_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    instance.last_call_ns.store(took_ns, Relaxed);
    instance.last_rows.store(rows, Relaxed);
    let timing = backend.last_timing();
    drop(backend);
    stats.executed(result.is_ok(), rows, took, timing);
    let ran = RanCall {
        started,
        timing,
        ended,
    };
    (result, ran)
}

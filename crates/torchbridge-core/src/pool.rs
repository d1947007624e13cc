use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use tokio::sync::oneshot;

use crate::instance::{Instance, Job, Turn, Waiter, Work, call, serve};
use crate::trace::{self, CallTimes, CallTrace, RanCall};
use crate::{Backend, Batch, Error, ModelMetadata, ModelStats, Result, Tensor};

/// A call that took longer than this is not run on an async runtime's thread: it goes
/// to the instance's own thread, where it holds up no other connection.
const SHORT_CALL: Duration = Duration::from_micros(500);

/// Who asks to run a call on its own thread (see [`InstancePool::run_here`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A thread that may block as long as the call takes.
    Blocking,
    /// A task on an async runtime: only calls known to be short.
    Async,
}

thread_local! {
    static ON_INSTANCE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of a pool's instance threads: code a model runs
/// (a Python callable) must not wait there for the pool to stop, which waits for it.
pub fn on_instance_thread() -> bool {
    ON_INSTANCE_THREAD.get()
}

/// One caller's request, straight to the pool: its oneshot and its per-request stats.
struct Direct {
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
    enqueued: Instant,
    stats: Arc<ModelStats>,
    trace: Option<Arc<CallTrace>>,
}

impl Waiter for Direct {
    fn is_closed(&self) -> bool {
        self.reply.is_closed()
    }

    fn starting(&self) {
        trace::mark_started(&self.trace);
    }

    fn complete(self: Box<Self>, result: Result<Vec<Tensor>>, ran: Option<RanCall>) {
        let queued = self.enqueued;
        trace::record(&self.trace, CallTimes { queued, call: ran });
        self.stats.answered(result.is_ok(), queued, ran.as_ref());
        let _ = self.reply.send(result);
    }
}

/// N instances of one model, each on a thread of its own, fed from one queue.
///
/// Cloning is not needed: the pool is `Send + Sync`, so share it behind an `Arc`.
/// Dropping it closes the queue and lets every queued job finish.
pub struct InstancePool {
    metadata: ModelMetadata,
    jobs: Option<Sender<Work>>,
    instances: Vec<Arc<Instance>>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<ModelStats>,
    /// Every instance may run on a caller's thread ([`Backend::runs_on_any_thread`]).
    any_thread: bool,
    /// Callers waiting for a call now (see [`Waiting`]).
    waiting: AtomicUsize,
    /// Dropped with the pool, which stops its watchdog thread.
    _watchdog: Option<Sender<()>>,
    /// Held weakly: every worker thread holds it until it exits.
    threads_alive: Weak<()>,
}

/// Whether a pool's worker threads are still running, readable after the pool is gone
/// (a worker finishes the call it is in, even one whose caller gave up, before exiting).
/// An embedder that must not tear down what the backends use (a Python interpreter)
/// while they run waits on it.
#[derive(Debug, Clone)]
pub struct PoolThreads(Weak<()>);

impl PoolThreads {
    /// True while any of the pool's worker threads has not exited.
    pub fn running(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl std::fmt::Debug for InstancePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstancePool")
            .field("model", &self.metadata.name)
            .field("instances", &self.workers.len())
            .finish()
    }
}

impl InstancePool {
    /// Starts `instances` threads; each calls `load(i)` to build its backend there (so
    /// engines that are not `Send` until loaded, or that bind to a thread, are fine).
    /// Returns once every instance has loaded, or with the first load error.
    pub fn start<F>(model: &str, instances: usize, load: F) -> Result<Self>
    where
        F: Fn(usize) -> Result<Box<dyn Backend>> + Send + Sync + 'static,
    {
        let load = std::sync::Arc::new(load);
        let (jobs, queue) = crossbeam_channel::unbounded::<Work>();
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let stats = Arc::new(ModelStats::for_instances(instances));
        let alive = Arc::new(());
        let mut workers = Vec::with_capacity(instances);
        for index in 0..instances {
            let (load, queue, loaded, stats, alive) = (
                load.clone(),
                queue.clone(),
                loaded_tx.clone(),
                stats.clone(),
                alive.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("tb-{model}-{index}"))
                .spawn(move || {
                    let _alive = alive;
                    ON_INSTANCE_THREAD.set(true);
                    match load(index) {
                        Ok(backend) => {
                            let instance = Arc::new(Instance::new(index, backend));
                            let _ = loaded.send(Ok(instance.clone()));
                            drop(loaded);
                            serve(instance, queue, &stats);
                        }
                        Err(e) => {
                            let _ = loaded.send(Err(e));
                        }
                    }
                });
            workers.push(spawned.map_err(|e| {
                Error::Internal(format!(
                    "model `{model}`: cannot start a thread for an instance: {e} (the process \
                     is out of threads or memory)"
                ))
            })?);
        }
        drop(loaded_tx);
        let threads_alive = Arc::downgrade(&alive);
        drop(alive);
        let mut pool = InstancePool {
            metadata: ModelMetadata {
                name: model.to_string(),
                version: 0,
                platform: String::new(),
                max_batch_size: 0,
                inputs: vec![],
                outputs: vec![],
            },
            jobs: Some(jobs),
            instances: Vec::with_capacity(instances),
            workers,
            stats,
            any_thread: false,
            waiting: AtomicUsize::new(0),
            _watchdog: None,
            threads_alive,
        };
        let mut failed = None;
        for result in loaded_rx.iter().take(instances) {
            match result {
                Ok(instance) => pool.instances.push(instance),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        pool.instances.sort_by_key(|instance| instance.index);
        let Some(first) = pool.instances.first() else {
            return Err(Error::Unavailable(model.to_string()));
        };
        let m = first.lock().metadata().clone();
        pool.any_thread = pool
            .instances
            .iter()
            .all(|instance| instance.lock().runs_on_any_thread());
        pool.stats.label(&m.name, m.version);
        let interrupters = pool
            .instances
            .iter()
            .map(|instance| instance.lock().interrupter())
            .collect();
        pool._watchdog = watchdog(&m.name, pool.stats.clone(), interrupters);
        pool.metadata = m;
        Ok(pool)
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Counters of this pool's requests and backend calls.
    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }

    pub fn instances(&self) -> usize {
        self.workers.len()
    }

    /// A handle that tells whether this pool's threads still run, after the pool is gone.
    pub fn threads(&self) -> PoolThreads {
        PoolThreads(self.threads_alive.clone())
    }

    /// Queues a checked batch; the receiver yields its outputs. A batch not started by
    /// `deadline` is answered [`Error::Timeout`] and never run.
    pub fn submit(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        self.submit_traced(batch, deadline, None)
    }

    /// As [`InstancePool::submit`], recording into `trace` when the call has run.
    pub(crate) fn submit_traced(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
        trace: Option<Arc<CallTrace>>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        let (reply, rx) = oneshot::channel();
        let enqueued = Instant::now();
        let answer_by = trace::answer_by(&trace, deadline);
        let waiter = Direct {
            reply,
            enqueued,
            stats: self.stats.clone(),
            trace,
        };
        let jobs = self.jobs.as_ref().ok_or_else(|| self.unavailable())?;
        jobs.send(Work::Job(Job {
            batch,
            enqueued,
            deadline,
            answer_by,
            waiter: Box::new(waiter),
        }))
        .map_err(|_| self.unavailable())?;
        Ok(rx)
    }

    /// Hands a turn at `queue` to the next free instance; `false` if the workers are gone.
    pub(crate) fn submit_turn(&self, queue: Arc<dyn Turn>) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Work::Turn(queue)).is_ok())
    }

    /// Counts the caller as waiting until the guard is dropped.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Relaxed);
        Waiting(self)
    }

    /// Every instance may run on a caller's thread ([`Backend::runs_on_any_thread`]).
    pub(crate) fn runs_on_any_thread(&self) -> bool {
        self.any_thread
    }

    /// The caller (counted by [`InstancePool::waiting`]) is the only one waiting.
    pub(crate) fn alone(&self) -> bool {
        self.waiting.load(Relaxed) == 1
    }

    /// Runs `batch` on the calling thread when that saves a hand-off to an instance's
    /// thread and back (two thread wake-ups, the larger part of a small model's latency):
    /// only for engines that may run on any thread, only for a lone caller (counted by
    /// [`InstancePool::waiting`]; with others waiting, the instances' own threads serve
    /// them without making anyone wait for a lock), only while nothing is queued and an
    /// instance is idle, only while requests come one at a time (the instance's last call
    /// carried no more rows than this one: after a batch of several, a lone request
    /// between two bursts goes to the queue, where the burst's next requests can join it),
    /// and for an async caller only when the instance's last call was short. Otherwise
    /// the batch comes back untouched.
    pub(crate) fn run_here(
        &self,
        batch: Batch,
        caller: Caller,
        trace: &Option<Arc<CallTrace>>,
    ) -> std::result::Result<Result<Vec<Tensor>>, Batch> {
        if !self.alone()
            || !self.any_thread
            || self.jobs.as_ref().is_none_or(|jobs| !jobs.is_empty())
        {
            return Err(batch);
        }
        for instance in &self.instances {
            let Ok(backend) = instance.backend.try_lock() else {
                continue;
            };
            let last = Duration::from_nanos(instance.last_call_ns.load(Relaxed));
            if (caller == Caller::Async && last > SHORT_CALL)
                || instance.last_rows.load(Relaxed) > batch.rows
            {
                return Err(batch);
            }
            let arrived = Instant::now();
            trace::mark_started(trace);
            let (result, ran) = call(instance, backend, batch, None, &self.stats);
            self.stats.answered(result.is_ok(), arrived, Some(&ran));
            let call = Some(ran);
            trace::record(
                trace,
                CallTimes {
                    queued: arrived,
                    call,
                },
            );
            return Ok(result);
        }
        Err(batch)
    }

    pub(crate) fn shared_stats(&self) -> Arc<ModelStats> {
        self.stats.clone()
    }

    fn unavailable(&self) -> Error {
        Error::Unavailable(self.metadata.name.clone())
    }

    /// Runs a batch and waits, blocking this thread (never call it on an async runtime).
    pub fn run_blocking(&self, batch: Batch) -> Result<Vec<Tensor>> {
        let _waiting = self.waiting();
        let batch = match self.run_here(batch, Caller::Blocking, &None) {
            Ok(result) => return result,
            Err(batch) => batch,
        };
        let rx = self.submit(batch, None)?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(self.unavailable()))
    }

    /// Runs a batch and awaits its outputs.
    pub async fn run(&self, batch: Batch) -> Result<Vec<Tensor>> {
        let _waiting = self.waiting();
        let batch = match self.run_here(batch, Caller::Async, &None) {
            Ok(result) => return result,
            Err(batch) => batch,
        };
        let rx = self.submit(batch, None)?;
        rx.await.unwrap_or_else(|_| Err(self.unavailable()))
    }
}

impl Drop for InstancePool {
    /// Closes the queue; the workers finish what is queued, then exit (and drop their
    /// backends on their own threads). They are joined on a thread of their own, so
    /// dropping a pool never blocks (an async runtime thread may hold the last reference).
    fn drop(&mut self) {
        self.instances.clear();
        self.jobs = None;
        let workers = std::mem::take(&mut self.workers);
        let _ = std::thread::Builder::new()
            .name(format!("tb-{}-reaper", self.metadata.name))
            .spawn(move || {
                for worker in workers {
                    let _ = worker.join();
                }
            });
    }
}

/// A caller waiting for its call; counted down when dropped (a cancelled await too).
pub(crate) struct Waiting<'a>(&'a InstancePool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Relaxed);
    }
}

/// How often a pool's watchdog looks for stuck instances.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Starts the thread that reports each stuck instance once (a `warn` log with the
/// model and instance), interrupts its call where the backend can (`interrupters`, by
/// instance), and keeps the `torchbridge_instances_stuck` gauge current; it stops when
/// the returned sender is dropped. `None` if no thread could be spawned: the pool then
/// serves without it (stuck instances still show in its statistics).
fn watchdog(
    model: &str,
    stats: Arc<ModelStats>,
    interrupters: Vec<Option<crate::Interrupt>>,
) -> Option<Sender<()>> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let name = format!("tb-{model}-watchdog");
    let model = model.to_string();
    let watch = move || {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
            let now = Instant::now();
            for (instance, busy) in stats.health.newly_stuck(now) {
                if let Some(Some(interrupt)) = interrupters.get(instance) {
                    tracing::warn!(
                        model = %model,
                        instance,
                        busy_ms = busy.as_millis() as u64,
                        "instance {instance} of model `{model}` is stuck: one call has run \
                         {busy:?}, past the deadline of its requests (they were answered with \
                         a timeout); interrupting it"
                    );
                    interrupt();
                    continue;
                }
                tracing::warn!(
                    model = %model,
                    instance,
                    busy_ms = busy.as_millis() as u64,
                    "instance {instance} of model `{model}` is stuck: one call has run \
                     {busy:?}, past the deadline of its requests (they were answered with a \
                     timeout); it takes no new work until the call returns"
                );
            }
            stats.stuck_count(stats.health.stuck(now).len());
        }
        stats.stuck_count(0);
    };
    let spawned = std::thread::Builder::new().name(name).spawn(watch);
    spawned.ok().map(|_| stop)
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

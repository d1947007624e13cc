use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;

use crate::{Backend, Batch, Error, ModelMetadata, ModelStats, Result, Tensor};

/// Whoever waits for a job: asked before it runs, answered once after. A caller's own
/// request answers one oneshot; a dynamic batch answers each request it holds.
pub(crate) trait Waiter: Send {
    /// Nobody waits any more: the job is skipped.
    fn is_closed(&self) -> bool;
    /// The outcome; `started` is when an instance took the job (`None`: it never ran).
    fn complete(self: Box<Self>, result: Result<Vec<Tensor>>, started: Option<Instant>);
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

/// One caller's request, straight to the pool: its oneshot and its per-request stats.
struct Direct {
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
    enqueued: Instant,
    stats: Arc<ModelStats>,
}

impl Waiter for Direct {
    fn is_closed(&self) -> bool {
        self.reply.is_closed()
    }

    fn complete(self: Box<Self>, result: Result<Vec<Tensor>>, started: Option<Instant>) {
        if let Some(started) = started {
            self.stats.queued(started - self.enqueued);
        }
        self.stats.answered(result.is_ok(), self.enqueued.elapsed());
        let _ = self.reply.send(result);
    }
}

/// N instances of one model, each on a thread of its own, fed from one queue.
///
/// Cloning is not needed: the pool is `Send + Sync`, so share it behind an `Arc`.
/// Dropping it closes the queue and lets every queued job finish.
pub struct InstancePool {
    metadata: ModelMetadata,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<ModelStats>,
    /// Dropped with the pool, which stops its watchdog thread.
    _watchdog: Option<Sender<()>>,
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
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
        let stats = Arc::new(ModelStats::for_instances(instances));
        let mut workers = Vec::with_capacity(instances);
        for i in 0..instances {
            let (load, queue, loaded, stats) = (
                load.clone(),
                queue.clone(),
                loaded_tx.clone(),
                stats.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("tb-{model}-{i}"))
                .spawn(move || match load(i) {
                    Ok(backend) => {
                        let _ = loaded.send(Ok(backend.metadata().clone()));
                        drop(loaded);
                        serve(backend, queue, &stats, i);
                    }
                    Err(e) => {
                        let _ = loaded.send(Err(e));
                    }
                });
            workers.push(spawned.map_err(|e| {
                Error::Unavailable(format!("{model} (cannot spawn a thread: {e})"))
            })?);
        }
        drop(loaded_tx);
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
            workers,
            stats,
            _watchdog: None,
        };
        let mut first = None;
        for result in loaded_rx.iter().take(instances) {
            match result {
                Ok(m) => first = first.or(Some(Ok(m))),
                Err(e) => first = Some(Err(e)),
            }
        }
        match first {
            Some(Ok(m)) => {
                pool.stats.label(&m.name, m.version);
                pool._watchdog = watchdog(&m.name, pool.stats.clone());
                pool.metadata = m;
            }
            Some(Err(e)) => return Err(e),
            None => return Err(Error::Unavailable(model.to_string())),
        }
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

    /// Queues a checked batch; the receiver yields its outputs. A batch not started by
    /// `deadline` is answered [`Error::Timeout`] and never run.
    pub fn submit(
        &self,
        batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        let (reply, rx) = oneshot::channel();
        let enqueued = Instant::now();
        let waiter = Direct {
            reply,
            enqueued,
            stats: self.stats.clone(),
        };
        let jobs = self.jobs.as_ref().ok_or_else(|| self.unavailable())?;
        jobs.send(Job {
            batch,
            enqueued,
            deadline,
            answer_by: deadline,
            waiter: Box::new(waiter),
        })
        .map_err(|_| self.unavailable())?;
        Ok(rx)
    }

    /// Queues a job; if the workers are gone its waiter is answered at once.
    pub(crate) fn submit_job(&self, job: Job) {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.into_inner()),
            None => Err(job),
        };
        if let Err(job) = sent {
            job.waiter.complete(Err(self.unavailable()), None);
        }
    }

    pub(crate) fn shared_stats(&self) -> Arc<ModelStats> {
        self.stats.clone()
    }

    fn unavailable(&self) -> Error {
        Error::Unavailable(self.metadata.name.clone())
    }

    /// Runs a batch and waits, blocking this thread (never call it on an async runtime).
    pub fn run_blocking(&self, batch: Batch) -> Result<Vec<Tensor>> {
        let rx = self.submit(batch, None)?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(self.unavailable()))
    }

    /// Runs a batch and awaits its outputs.
    pub async fn run(&self, batch: Batch) -> Result<Vec<Tensor>> {
        let rx = self.submit(batch, None)?;
        rx.await.unwrap_or_else(|_| Err(self.unavailable()))
    }
}

impl Drop for InstancePool {
    /// Closes the queue; the workers finish what is queued, then exit. They are joined
    /// on a thread of their own, so dropping a pool never blocks (an async runtime
    /// thread may hold the last reference).
    fn drop(&mut self) {
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

/// How often a pool's watchdog looks for stuck instances.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Starts the thread that reports each stuck instance once (a `warn` log with the
/// model and instance) and keeps the `torchbridge_instances_stuck` gauge current; it
/// stops when the returned sender is dropped. `None` if no thread could be spawned:
/// the pool then serves without it (stuck instances still show in its statistics).
fn watchdog(model: &str, stats: Arc<ModelStats>) -> Option<Sender<()>> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let name = format!("tb-{model}-watchdog");
    let model = model.to_string();
    let watch = move || {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
            let now = Instant::now();
            for (instance, busy) in stats.health.newly_stuck(now) {
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

/// A worker's loop: run each job whose caller still waits and whose deadline has not
/// passed, check what came back, count it, answer. While a call runs, the instance's
/// slot in [`ModelStats::health`] says so.
fn serve(mut backend: Box<dyn Backend>, queue: Receiver<Job>, stats: &ModelStats, index: usize) {
    for job in queue.iter() {
        if job.waiter.is_closed() {
            continue;
        }
        let started = Instant::now();
        if job.deadline.is_some_and(|d| started >= d) {
            let waited_ms = (started - job.enqueued).as_millis() as u64;
            let model = backend.metadata().name.clone();
            let timeout = Error::Timeout { model, waited_ms };
            job.waiter.complete(Err(timeout), None);
            continue;
        }
        let rows = job.batch.rows;
        stats.health.started(index, started, job.answer_by);
        let result = catch_unwind(AssertUnwindSafe(|| backend.infer(job.batch)))
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
        if let Some(busy) = stats.health.finished(index) {
            tracing::warn!(
                model = %backend.metadata().name,
                instance = index,
                busy_ms = busy.as_millis() as u64,
                "instance {index} of model `{}` returned after {busy:?} and is no longer stuck",
                backend.metadata().name
            );
        }
        stats.computed(rows, started.elapsed(), backend.last_timing());
        job.waiter.complete(result, Some(started));
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

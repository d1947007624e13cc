use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::{Backend, Batch, Error, ModelMetadata, ModelStats, Result, Tensor};

type Reply = oneshot::Sender<Result<Vec<Tensor>>>;

struct Job {
    batch: Batch,
    reply: Reply,
    enqueued: Instant,
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
        let stats = Arc::new(ModelStats::default());
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
                        serve(backend, queue, &stats);
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
        };
        let mut first = None;
        for result in loaded_rx.iter().take(instances) {
            match result {
                Ok(m) => first = first.or(Some(Ok(m))),
                Err(e) => first = Some(Err(e)),
            }
        }
        match first {
            Some(Ok(m)) => pool.metadata = m,
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

    /// Queues a checked batch; the receiver yields its outputs.
    pub fn submit(&self, batch: Batch) -> Result<oneshot::Receiver<Result<Vec<Tensor>>>> {
        let (reply, rx) = oneshot::channel();
        let unavailable = || Error::Unavailable(self.metadata.name.clone());
        let jobs = self.jobs.as_ref().ok_or_else(unavailable)?;
        jobs.send(Job {
            batch,
            reply,
            enqueued: Instant::now(),
        })
        .map_err(|_| unavailable())?;
        Ok(rx)
    }

    /// Runs a batch and waits, blocking this thread (never call it on an async runtime).
    pub fn run_blocking(&self, batch: Batch) -> Result<Vec<Tensor>> {
        let rx = self.submit(batch)?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(Error::Unavailable(self.metadata.name.clone())))
    }

    /// Runs a batch and awaits its outputs.
    pub async fn run(&self, batch: Batch) -> Result<Vec<Tensor>> {
        let rx = self.submit(batch)?;
        rx.await
            .unwrap_or_else(|_| Err(Error::Unavailable(self.metadata.name.clone())))
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

/// A worker's loop: run each job whose caller still waits, check what came back.
fn serve(mut backend: Box<dyn Backend>, queue: Receiver<Job>, stats: &ModelStats) {
    use std::sync::atomic::Ordering::Relaxed;
    for job in queue {
        if job.reply.is_closed() {
            continue;
        }
        let rows = job.batch.rows;
        let started = Instant::now();
        stats.queue.record(started - job.enqueued);
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
        stats.compute_infer.record(started.elapsed());
        stats.execution_count.fetch_add(1, Relaxed);
        stats.inference_count.fetch_add(rows as u64, Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        stats
            .last_inference_ms
            .store(now.as_millis() as u64, Relaxed);
        let outcome = if result.is_ok() {
            &stats.success
        } else {
            &stats.fail
        };
        outcome.record(job.enqueued.elapsed());
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataType, TensorSpec};

    /// A backend that doubles FP32 input `X` into `Y`, and panics on NaN.
    struct Doubler(ModelMetadata);

    impl Backend for Doubler {
        fn metadata(&self) -> &ModelMetadata {
            &self.0
        }
        fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
            let x = batch.inputs[0].to_vec::<f32>()?;
            assert!(!x.iter().any(|v| v.is_nan()), "NaN input");
            let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
            Ok(vec![Tensor::from_slice(
                "Y",
                batch.inputs[0].shape.clone(),
                &y,
            )?])
        }
    }

    fn doubler(_: usize) -> Result<Box<dyn Backend>> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            dims: vec![1],
        };
        Ok(Box::new(Doubler(ModelMetadata {
            name: "doubler".into(),
            version: 1,
            platform: "test".into(),
            max_batch_size: 8,
            inputs: vec![spec("X")],
            outputs: vec![spec("Y")],
        })))
    }

    fn batch(pool: &InstancePool, v: f32) -> Batch {
        let x = Tensor::from_slice("X", vec![1, 1], &[v]).unwrap();
        pool.metadata().prepare(vec![x]).unwrap()
    }

    #[test]
    fn many_threads_share_a_pool() {
        let pool = InstancePool::start("doubler", 3, doubler).unwrap();
        assert_eq!(pool.instances(), 3);
        std::thread::scope(|s| {
            for t in 0..8 {
                let pool = &pool;
                s.spawn(move || {
                    for i in 0..50 {
                        let v = (t * 100 + i) as f32;
                        let y = pool.run_blocking(batch(pool, v)).unwrap();
                        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![v * 2.0]);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panic_fails_one_request_and_the_worker_lives() {
        let pool = InstancePool::start("doubler", 1, doubler).unwrap();
        let err = pool
            .run_blocking(batch(&pool, f32::NAN))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the bridge panicked: NaN input"), "{err}");
        assert_eq!(
            pool.run_blocking(batch(&pool, 2.0)).unwrap()[0]
                .to_vec::<f32>()
                .unwrap(),
            vec![4.0]
        );
    }

    #[test]
    fn a_load_error_is_returned() {
        let err = InstancePool::start("broken", 2, |i| {
            if i == 1 {
                Err(Error::Unavailable("instance 1".into()))
            } else {
                doubler(i)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("instance 1"), "{err}");
    }
}

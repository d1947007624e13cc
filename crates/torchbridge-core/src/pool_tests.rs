use super::*;
use crate::{DataType, TensorSpec};

/// A backend that doubles FP32 input `X` into `Y`, and panics on NaN.
struct Doubler(ModelMetadata);

impl Backend for Doubler {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        double(batch)
    }
}

/// `Y = 2 X`; panics on NaN.
fn double(batch: Batch) -> Result<Vec<Tensor>> {
    let x = batch.inputs[0].to_vec::<f32>()?;
    assert!(!x.iter().any(|v| v.is_nan()), "NaN input");
    let y: Vec<f32> = x.iter().map(|v| v * 2.0).collect();
    Ok(vec![Tensor::from_slice(
        "Y",
        batch.inputs[0].shape.clone(),
        &y,
    )?])
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
fn a_job_past_its_deadline_is_answered_and_not_run() {
    let pool = InstancePool::start("doubler", 1, doubler).unwrap();
    let past = Instant::now();
    let rx = pool.submit(batch(&pool, f32::NAN), Some(past)).unwrap();
    let err = rx.blocking_recv().unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(pool.stats().fail.count(), 1);
    assert_eq!(pool.stats().compute_infer.count(), 0);
}

#[test]
fn a_job_whose_caller_left_is_not_run_and_counts_as_failed() {
    // Sleeper sleeps its input in ms: the first call holds the one instance for 200 ms,
    // while the second request's caller gives up.
    let pool = InstancePool::start("sleeper", 1, sleeper).unwrap();
    let busy = |ms: f32| batch(&pool, ms);
    let first = pool.submit(busy(200.0), None).unwrap();
    drop(pool.submit(busy(1.0), None).unwrap());
    assert!(first.blocking_recv().unwrap().is_ok());
    let stats = pool.stats();
    let until = Instant::now() + Duration::from_secs(10);
    while stats.fail.count() == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!((stats.success.count(), stats.fail.count()), (1, 1));
    assert_eq!(stats.compute_infer.count(), 1, "the second never ran");
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

#[test]
fn a_call_is_stuck_past_its_deadline_and_the_floor_and_reported_once() {
    let health = crate::InstanceHealth::new(2);
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    health.started(0, t0, Some(t0 + ms(10)));
    health.started(1, t0, None);
    assert!(
        health.stuck(t0 + ms(500)).is_empty(),
        "not before the floor"
    );
    let later = t0 + crate::InstanceHealth::STUCK_FLOOR;
    assert_eq!(health.stuck(later), vec![0], "no deadline is never stuck");
    assert!(!health.all_stuck(later));
    assert_eq!(
        health.newly_stuck(later),
        vec![(0, crate::InstanceHealth::STUCK_FLOOR)]
    );
    assert!(
        health.newly_stuck(later + ms(1)).is_empty(),
        "reported once"
    );
    assert!(
        health.finished(0).is_some(),
        "a reported call says when it is back"
    );
    assert!(health.finished(1).is_none());
    assert!(health.stuck(later).is_empty());
    // A later deadline than the floor is the threshold itself.
    health.started(0, t0, Some(t0 + ms(3000)));
    assert!(health.stuck(t0 + ms(2999)).is_empty());
    assert_eq!(health.stuck(t0 + ms(3000)), vec![0]);
}

#[test]
fn a_model_is_broken_only_while_every_instance_is() {
    let health = crate::InstanceHealth::new(2);
    assert_eq!(health.all_broken(), None);
    health.set_broken(1, Some("worker 1 cannot start".into()));
    assert_eq!(health.all_broken(), None, "instance 0 still serves");
    health.set_broken(0, Some("worker 0 cannot start".into()));
    assert_eq!(
        health.all_broken().as_deref(),
        Some("worker 0 cannot start")
    );
    health.set_broken(0, None);
    assert_eq!(health.all_broken(), None, "instance 0 recovered");
    assert_eq!(crate::InstanceHealth::new(0).all_broken(), None);
}

/// Sleeps the milliseconds its input `X` holds, then answers `Y = X`.
struct Sleeper(ModelMetadata);

impl Backend for Sleeper {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let x = batch.inputs[0].to_vec::<f32>()?;
        std::thread::sleep(Duration::from_millis(x[0] as u64));
        Ok(vec![Tensor::from_slice("Y", vec![1, 1], &x)?])
    }
}

fn sleeper(i: usize) -> Result<Box<dyn Backend>> {
    let mut meta = doubler(i)?.metadata().clone();
    meta.name = "sleeper".into();
    Ok(Box::new(Sleeper(meta)))
}

#[test]
fn an_instance_stuck_past_the_deadline_shows_and_all_stuck_refuses_at_once() {
    let pool = InstancePool::start("sleeper", 1, sleeper).unwrap();
    let served = crate::ServedModel::from(pool);
    let hang = |ms: f32| {
        let x = Tensor::from_slice("X", vec![1, 1], &[ms]).unwrap();
        served.metadata().prepare(vec![x]).unwrap()
    };
    let deadline = Instant::now() + Duration::from_millis(50);
    let stuck_call = served.submit(hang(2500.0), Some(deadline)).unwrap();
    let mut waited = Duration::ZERO;
    while served.stats().stuck_instances().is_empty() {
        assert!(waited < Duration::from_secs(30), "never reported stuck");
        std::thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    assert_eq!(served.stats().stuck_instances(), vec![0]);
    let refused = served.submit(hang(0.0), None).unwrap_err().to_string();
    assert!(
        refused.contains("model `sleeper` is not ready: all 1 of its instances are stuck"),
        "{refused}"
    );
    // The call returns in the end (its caller still waited), and the instance is back.
    assert!(stuck_call.blocking_recv().unwrap().is_ok());
    assert!(served.stats().stuck_instances().is_empty());
    assert_eq!(served.run_blocking(hang(1.0)).unwrap()[0].shape, vec![1, 1]);
}

/// Waits until interrupted (or 60 s), then fails; counts its interruptions.
struct Interruptible {
    meta: ModelMetadata,
    wake: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    interrupted: Arc<AtomicUsize>,
}

impl Backend for Interruptible {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn infer(&mut self, _: Batch) -> Result<Vec<Tensor>> {
        let _ = self.wake.1.recv_timeout(Duration::from_secs(60));
        Err(Error::Inference {
            model: self.meta.name.clone(),
            message: "interrupted".into(),
        })
    }
    fn interrupter(&self) -> Option<crate::Interrupt> {
        let (wake, count) = (self.wake.0.clone(), self.interrupted.clone());
        Some(Arc::new(move || {
            count.fetch_add(1, Relaxed);
            let _ = wake.try_send(());
        }))
    }
}

#[test]
fn the_watchdog_interrupts_a_stuck_call_where_the_backend_can() {
    let interrupted = Arc::new(AtomicUsize::new(0));
    let count = interrupted.clone();
    let pool = InstancePool::start("hung", 1, move |i| {
        Ok(Box::new(Interruptible {
            meta: doubler(i)?.metadata().clone(),
            wake: crossbeam_channel::bounded(1),
            interrupted: count.clone(),
        }))
    })
    .unwrap();
    let served = crate::ServedModel::from(pool);
    let x = Tensor::from_slice("X", vec![1, 1], &[1f32]).unwrap();
    let batch = served.metadata().prepare(vec![x]).unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(50);
    let call = served.submit(batch, Some(deadline)).unwrap();
    let result = call.blocking_recv().unwrap();
    assert!(result.unwrap_err().to_string().contains("interrupted"));
    // Stuck once past the deadline and the one-second floor; the watchdog looks every 200 ms.
    let took = started.elapsed();
    assert!(
        took >= crate::InstanceHealth::STUCK_FLOOR,
        "interrupted after {took:?}"
    );
    assert!(took < Duration::from_secs(30), "never interrupted");
    assert_eq!(interrupted.load(Relaxed), 1);
}

/// Doubles like [`Doubler`], names the thread of each call, and may run on any thread
/// when `any_thread` says so; each call takes `pause`.
struct Anywhere {
    meta: ModelMetadata,
    any_thread: bool,
    pause: Duration,
    threads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Backend for Anywhere {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.threads.lock().unwrap().push(name);
        std::thread::sleep(self.pause);
        double(batch)
    }
    fn runs_on_any_thread(&self) -> bool {
        self.any_thread
    }
}

fn anywhere(any_thread: bool, pause_ms: u64) -> (InstancePool, Arc<std::sync::Mutex<Vec<String>>>) {
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = threads.clone();
    let pool = InstancePool::start("anywhere", 1, move |i| {
        Ok(Box::new(Anywhere {
            meta: doubler(i)?.metadata().clone(),
            any_thread,
            pause: Duration::from_millis(pause_ms),
            threads: log.clone(),
        }) as Box<dyn Backend>)
    })
    .unwrap();
    (pool, threads)
}

fn this_thread() -> String {
    std::thread::current().name().unwrap_or("?").to_string()
}

#[test]
fn an_idle_instance_runs_a_blocking_call_on_the_callers_thread() {
    let (pool, threads) = anywhere(true, 0);
    let y = pool.run_blocking(batch(&pool, 2.0)).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![4.0]);
    assert_eq!(*threads.lock().unwrap(), vec![this_thread()]);
    assert_eq!(pool.stats().success.count(), 1);
    assert_eq!(pool.stats().execution_count.load(Relaxed), 1);
}

#[test]
fn a_backend_bound_to_its_thread_always_runs_there() {
    let (pool, threads) = anywhere(false, 0);
    for v in [1.0, 2.0] {
        assert_eq!(
            pool.run_blocking(batch(&pool, v)).unwrap()[0]
                .to_vec::<f32>()
                .unwrap(),
            vec![v * 2.0]
        );
    }
    assert_eq!(*threads.lock().unwrap(), vec!["tb-anywhere-0"; 2]);
}

#[test]
fn a_busy_instance_leaves_the_call_to_its_own_thread() {
    let (pool, threads) = anywhere(true, 300);
    std::thread::scope(|s| {
        let first = s.spawn(|| pool.run_blocking(batch(&pool, 1.0)));
        while threads.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The instance is busy on `first`'s thread: this call queues for the worker.
        let y = pool.run_blocking(batch(&pool, 3.0)).unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![6.0]);
        assert!(first.join().unwrap().is_ok());
    });
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 2);
    assert_ne!(
        threads[0], "tb-anywhere-0",
        "the first call ran on its caller"
    );
    assert_eq!(threads[1], "tb-anywhere-0");
}

#[tokio::test]
async fn an_async_caller_runs_a_call_itself_only_once_calls_are_known_to_be_short() {
    let (pool, threads) = anywhere(true, 0);
    for v in [1.0, 2.0] {
        assert_eq!(
            pool.run(batch(&pool, v)).await.unwrap()[0]
                .to_vec::<f32>()
                .unwrap(),
            vec![v * 2.0]
        );
    }
    // The first call's length was unknown: the instance's thread ran it.
    assert_eq!(
        *threads.lock().unwrap(),
        vec!["tb-anywhere-0".to_string(), this_thread()]
    );

    let (slow, threads) = anywhere(true, 2);
    for v in [1.0, 2.0] {
        slow.run(batch(&slow, v)).await.unwrap();
    }
    assert_eq!(
        *threads.lock().unwrap(),
        vec!["tb-anywhere-0"; 2],
        "a 2 ms call is not short"
    );
}

#[test]
fn with_another_caller_waiting_the_call_goes_to_the_instance_thread() {
    let (pool, threads) = anywhere(true, 0);
    let other = pool.waiting();
    pool.run_blocking(batch(&pool, 1.0)).unwrap();
    drop(other);
    pool.run_blocking(batch(&pool, 2.0)).unwrap();
    assert_eq!(
        *threads.lock().unwrap(),
        vec!["tb-anywhere-0".to_string(), this_thread()]
    );
}

#[test]
fn after_a_call_of_several_rows_a_lone_row_goes_to_the_instance_thread() {
    let (pool, threads) = anywhere(true, 0);
    let two = Tensor::from_slice("X", vec![2, 1], &[1f32, 2.0]).unwrap();
    let two = pool.metadata().prepare(vec![two]).unwrap();
    assert_eq!(
        pool.run_blocking(two).unwrap()[0].to_vec::<f32>().unwrap(),
        vec![2.0, 4.0]
    );
    for v in [3.0, 4.0] {
        pool.run_blocking(batch(&pool, v)).unwrap();
    }
    // The first call ran here (nothing before it); the lone row after the two-row call
    // went to the instance; the next, after a one-row call, ran here again.
    let here = this_thread();
    assert_eq!(
        *threads.lock().unwrap(),
        vec![here.clone(), "tb-anywhere-0".to_string(), here]
    );
}

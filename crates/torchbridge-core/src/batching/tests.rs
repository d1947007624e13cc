//! The scheduler end to end, on a backend that doubles its input and logs each call.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{
    Backend, Batch, BatchingConfig, CallTimes, CallTrace, DataType, Error, InstancePool,
    ModelMetadata, Result, ServedModel, Tensor, TensorSpec,
};

/// Doubles FP32 `X` (any width) into `Y`; logs each call's rows; sleeps `pause` per
/// call; panics on NaN.
struct Doubler {
    meta: ModelMetadata,
    calls: Arc<Mutex<Vec<usize>>>,
    pause: Duration,
    any_thread: bool,
}

impl Backend for Doubler {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }
    fn runs_on_any_thread(&self) -> bool {
        self.any_thread
    }
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        self.calls.lock().unwrap().push(batch.rows);
        std::thread::sleep(self.pause);
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

struct Setup {
    model: ServedModel,
    calls: Arc<Mutex<Vec<usize>>>,
}

fn served(instances: usize, pause_ms: u64, config: BatchingConfig) -> Setup {
    served_on(instances, pause_ms, config, false)
}

/// As `served`; with `any_thread`, a lone caller may run its call on its own thread.
fn served_on(instances: usize, pause_ms: u64, config: BatchingConfig, any_thread: bool) -> Setup {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        dims: vec![-1],
    };
    let meta = ModelMetadata {
        name: "doubler".into(),
        version: 1,
        platform: "test".into(),
        max_batch_size: 8,
        inputs: vec![spec("X")],
        outputs: vec![spec("Y")],
    };
    let log = calls.clone();
    let pool = InstancePool::start("doubler", instances, move |_| {
        Ok(Box::new(Doubler {
            meta: meta.clone(),
            calls: log.clone(),
            pause: Duration::from_millis(pause_ms),
            any_thread,
        }) as Box<dyn Backend>)
    })
    .unwrap();
    let model = ServedModel::new(pool, Some(&config)).unwrap();
    Setup { model, calls }
}

fn config(delay_us: u64, preferred: &[u32], max_queue_size: u32) -> BatchingConfig {
    BatchingConfig {
        max_queue_delay_us: delay_us,
        preferred_batch_sizes: preferred.to_vec(),
        max_queue_size,
        max_queue_wait_us: None,
    }
}

/// `rows` rows of `width` values, starting at `first` and counting up.
fn batch(model: &ServedModel, first: f32, rows: usize, width: usize) -> Batch {
    let values: Vec<f32> = (0..rows * width).map(|i| first + i as f32).collect();
    let x = Tensor::from_slice("X", vec![rows as i64, width as i64], &values).unwrap();
    model.metadata().prepare(vec![x]).unwrap()
}

fn doubled(first: f32, rows: usize, width: usize) -> Vec<f32> {
    (0..rows * width)
        .map(|i| 2.0 * (first + i as f32))
        .collect()
}

#[test]
fn many_threads_get_their_own_rows_from_shared_batches() {
    let Setup { model, calls } = served(2, 1, config(2000, &[4, 8], 1024));
    std::thread::scope(|s| {
        for t in 0..24 {
            let model = &model;
            s.spawn(move || {
                for i in 0..20 {
                    let (rows, width) = (1 + (t + i) % 3, 2 + t % 2);
                    let first = (t * 1000 + i * 10) as f32;
                    let y = model
                        .run_blocking(batch(model, first, rows, width))
                        .unwrap();
                    assert_eq!(y[0].shape, vec![rows as i64, width as i64]);
                    assert_eq!(y[0].to_vec::<f32>().unwrap(), doubled(first, rows, width));
                }
            });
        }
    });
    let calls = calls.lock().unwrap();
    assert!(
        calls.iter().all(|&rows| (1..=8).contains(&rows)),
        "{calls:?}"
    );
    assert!(calls.iter().any(|&rows| rows > 3), "no batching: {calls:?}");
    let stats = model.stats();
    let sizes = stats.batch_sizes.snapshot();
    assert_eq!(
        sizes.iter().map(|s| s.count).sum::<u64>(),
        calls.len() as u64
    );
    assert_eq!(stats.success.count(), 24 * 20);
    assert_eq!(stats.queue.count(), 24 * 20);
    // Each request counts the compute time of the call that carried it (Triton's
    // per-request statistics), so the sum over requests exceeds the calls' own.
    for stage in [
        &stats.compute_input,
        &stats.compute_infer,
        &stats.compute_output,
    ] {
        assert_eq!(stage.count(), 24 * 20);
    }
    let call_nanos: u64 = sizes.iter().map(|s| s.nanos).sum();
    assert!(
        stats.compute_infer.nanos() > call_nanos,
        "per request, not per call"
    );
    assert_eq!(stats.execution_count.load(Relaxed), calls.len() as u64);
    assert_eq!(
        stats.inference_count.load(Relaxed),
        calls.iter().sum::<usize>() as u64
    );
}

/// `callers` tasks, each running one row of width 2; the i-th starts at `i`.
fn spawn_callers(
    model: &Arc<ServedModel>,
    callers: usize,
) -> Vec<tokio::task::JoinHandle<Result<Vec<Tensor>>>> {
    (0..callers)
        .map(|i| {
            let model = model.clone();
            tokio::spawn(async move { model.run(batch(&model, i as f32, 1, 2)).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preferred_size_goes_at_once_and_async_callers_work() {
    // A delay longer than the test may take: only the third arrival, completing the
    // preferred size, can release these three (it must wake the instance that waits
    // out the delay).
    let Setup { model, calls } = served(1, 0, config(600_000_000, &[3], 16));
    let model = Arc::new(model);
    let runs = spawn_callers(&model, 3);
    for (i, run) in runs.into_iter().enumerate() {
        let answered = tokio::time::timeout(Duration::from_secs(60), run).await;
        let y = answered
            .expect("released by the preferred size")
            .unwrap()
            .unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), doubled(i as f32, 1, 2));
    }
    assert_eq!(*calls.lock().unwrap(), vec![3]);
}

/// One runtime thread runs each caller up to its call before the next caller starts: a
/// lone caller that ran its call there at once would leave every call at one row.
#[tokio::test(flavor = "current_thread")]
async fn callers_on_a_single_threaded_runtime_still_batch() {
    let Setup { model, calls } = served_on(1, 0, config(0, &[], 64), true);
    let model = Arc::new(model);
    // One call first, so the pool knows calls are short: from then on a lone async
    // caller may run its call on its own thread.
    model.run(batch(&model, 0.0, 1, 2)).await.unwrap();
    calls.lock().unwrap().clear();
    let runs = spawn_callers(&model, 24);
    for (i, run) in runs.into_iter().enumerate() {
        let y = run.await.unwrap().unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), doubled(i as f32, 1, 2));
    }
    let calls = calls.lock().unwrap();
    assert!(
        calls.iter().any(|&rows| rows > 1),
        "never batched: {calls:?}"
    );
}

#[test]
fn a_failed_batch_fails_every_request_in_it() {
    let Setup { model, calls } = served(1, 0, config(60_000_000, &[2], 16));
    let mut bad = batch(&model, 0.0, 1, 1);
    bad.inputs[0] = Tensor::from_slice("X", vec![1, 1], &[f32::NAN]).unwrap();
    let a = model.submit(bad, None).unwrap();
    let b = model.submit(batch(&model, 1.0, 1, 1), None).unwrap();
    for rx in [a, b] {
        let e = rx.blocking_recv().unwrap().unwrap_err().to_string();
        assert!(e.contains("the bridge panicked: NaN input"), "{e}");
    }
    assert_eq!(*calls.lock().unwrap(), vec![2]);
    // As in Triton, a failure counts in `fail` alone: no inference, execution, queue
    // wait or compute time.
    let stats = model.stats();
    assert_eq!(stats.fail.count(), 2);
    assert_eq!(stats.execution_count.load(Relaxed), 0);
    assert_eq!(stats.inference_count.load(Relaxed), 0);
    assert_eq!(stats.queue.count() + stats.compute_infer.count(), 0);
    assert!(stats.batch_sizes.snapshot().is_empty());
}

#[test]
fn a_full_queue_refuses_and_every_request_is_answered() {
    // One slow instance: one batch runs, one waits, and four requests may queue.
    let Setup { model, .. } = served(1, 20, config(100, &[], 4));
    let results: Vec<Result<Vec<Tensor>>> = std::thread::scope(|s| {
        let model = &model;
        let handles: Vec<_> = (0..32)
            .map(|t| s.spawn(move || model.run_blocking(batch(model, t as f32, 8, 1))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut overloaded = 0;
    for (t, result) in results.into_iter().enumerate() {
        match result {
            Ok(y) => assert_eq!(y[0].to_vec::<f32>().unwrap(), doubled(t as f32, 8, 1)),
            Err(Error::Overloaded { model, queued, .. }) => {
                assert_eq!((model.as_str(), queued), ("doubler", 4));
                overloaded += 1;
            }
            Err(e) => panic!("request {t}: {e}"),
        }
    }
    assert!(overloaded > 0, "the queue never filled");
}

#[test]
fn a_request_past_its_deadline_is_answered_and_never_run() {
    let Setup { model, calls } = served(1, 0, config(60_000_000, &[], 16));
    let soon = std::time::Instant::now() + Duration::from_millis(20);
    let e = model
        .run_blocking_with_deadline(batch(&model, 0.0, 1, 1), Some(soon))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("did not start the request before its deadline")
    );
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(model.stats().fail.count(), 1);
}

#[test]
fn a_request_whose_caller_left_is_never_run() {
    let Setup { model, calls } = served(1, 0, config(50_000, &[], 16));
    drop(model.submit(batch(&model, 0.0, 1, 1), None).unwrap());
    let y = model.run_blocking(batch(&model, 1.0, 1, 1)).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![2.0]);
    assert_eq!(*calls.lock().unwrap(), vec![1]);
}

#[test]
fn dropping_the_model_runs_what_is_queued() {
    let Setup { model, calls } = served(1, 5, config(60_000_000, &[], 64));
    let pending: Vec<_> = (0..20)
        .map(|i| model.submit(batch(&model, i as f32, 1, 1), None).unwrap())
        .collect();
    drop(model);
    for (i, rx) in pending.into_iter().enumerate() {
        let y = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(y[0].to_vec::<f32>().unwrap(), doubled(i as f32, 1, 1));
    }
    assert_eq!(calls.lock().unwrap().iter().sum::<usize>(), 20);
}

#[test]
fn a_deadline_that_passes_while_the_instance_is_busy_is_answered_on_time() {
    // One instance, busy for 400 ms on `first`; `second` may wait 30 ms.
    let Setup { model, calls } = served(1, 400, config(0, &[], 16));
    let first = model.submit(batch(&model, 0.0, 1, 1), None).unwrap();
    while calls.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let soon = std::time::Instant::now() + Duration::from_millis(30);
    let mut second = model.submit(batch(&model, 1.0, 1, 1), Some(soon)).unwrap();
    let e = loop {
        match second.try_recv() {
            Ok(result) => break result.unwrap_err(),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    let mut first = first;
    assert!(
        first.try_recv().is_err(),
        "answered before the busy call ended"
    );
    assert!(first.blocking_recv().unwrap().is_ok());
    assert_eq!(
        *calls.lock().unwrap(),
        vec![1],
        "the late request never ran"
    );
}

#[test]
fn a_full_queue_refuses_in_submit_itself() {
    let Setup { model, calls } = served(1, 300, config(0, &[], 1));
    let running = model.submit(batch(&model, 0.0, 1, 1), None).unwrap();
    // Wait until the instance runs it, so the queue is empty again.
    while calls.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let queued = model.submit(batch(&model, 1.0, 1, 1), None).unwrap();
    let e = model.submit(batch(&model, 2.0, 1, 1), None).unwrap_err();
    assert!(matches!(e, Error::Overloaded { queued: 1, .. }), "{e}");
    assert!(running.blocking_recv().unwrap().is_ok());
    assert!(queued.blocking_recv().unwrap().is_ok());
}

#[test]
fn a_request_predicted_to_wait_too_long_is_refused_and_a_later_one_taken() {
    let limit = Duration::from_millis(40);
    let mut cfg = config(0, &[], 1024);
    cfg.max_queue_wait_us = Some(limit.as_micros() as u64);
    let Setup { model, calls } = served(1, 100, cfg);
    // Nothing measured yet: admitted; its call teaches the queue that a batch takes ~100 ms.
    assert!(model.run_blocking(batch(&model, 0.0, 1, 1)).is_ok());
    let started = std::time::Instant::now();
    let running = model.submit(batch(&model, 1.0, 1, 1), None).unwrap();
    while calls.lock().unwrap().len() < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Behind a call with ~100 ms to go: refused at once, saying how long it would wait.
    let e = model.submit(batch(&model, 2.0, 1, 1), None).unwrap_err();
    match &e {
        Error::Overloaded {
            queued: 0,
            predicted_wait_us: Some(us),
            ..
        } => assert!(
            *us > limit.as_micros() as u64 && *us <= 100_000,
            "predicted {us} us"
        ),
        other => panic!("expected a refusal by predicted wait, got {other}"),
    }
    assert!(e.to_string().contains("max_queue_wait_us"), "{e}");
    // Near the end of the running call the wait is short enough.
    std::thread::sleep(Duration::from_millis(75).saturating_sub(started.elapsed()));
    let late = model.submit(batch(&model, 3.0, 1, 1), None).unwrap();
    assert!(running.blocking_recv().unwrap().is_ok());
    assert_eq!(
        late.blocking_recv().unwrap().unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![6.0]
    );
    assert_eq!(
        *calls.lock().unwrap(),
        vec![1, 1, 1],
        "the refused request never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_request_records_the_call_that_carried_it_or_none() {
    // One instance, busy 300 ms with the first request; two more queue behind it and
    // share the next call; a fourth may wait only 20 ms and never runs.
    let Setup { model, calls } = served(1, 300, config(0, &[], 16));
    let model = Arc::new(model);
    let traces: Vec<Arc<CallTrace>> = (0..4).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, trace) in traces.iter().enumerate() {
        let (m, trace) = (model.clone(), trace.clone());
        let deadline = (i == 3).then(|| std::time::Instant::now() + Duration::from_millis(20));
        tasks.push(tokio::spawn(async move {
            let x = batch(&m, i as f32, 1, 1);
            m.run_traced(x, deadline, Some(trace)).await
        }));
        while i == 0 && calls.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert!(matches!(results[3], Err(Error::Timeout { .. })));
    assert_eq!(*calls.lock().unwrap(), [1, 2]);
    let times: Vec<CallTimes> = traces.iter().map(|t| t.times().unwrap()).collect();
    for t in &times[..3] {
        let call = t.call.unwrap();
        assert!(t.queued <= call.started && call.started < call.ended);
    }
    assert_eq!(times[1].call, times[2].call, "one call carried both");
    assert!(times[0].call.unwrap().ended <= times[1].call.unwrap().started);
    assert_eq!(times[3].call, None);
}

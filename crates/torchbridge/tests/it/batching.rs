//! Dynamic batching through the real bridges: concurrent callers share backend calls
//! and each still gets exactly its own rows; a full queue refuses; deadlines hold.
#![cfg(any(feature = "python", feature = "torchscript", feature = "onnx"))]

use std::sync::Barrier;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use torchbridge::{BackendKind, Error, Model, Tensor};

use crate::common::{assert_matches, copy_dir, model_dir, reference, row};

/// The fixture `mlp` (max_batch_size 8) with `instances` and a `[batching]` table.
fn batched_mlp(bridge: BackendKind, instances: u32, batching: &str) -> (tempfile::TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mlp");
    copy_dir(&model_dir("mlp"), &root);
    let config = std::fs::read_to_string(root.join("config.toml")).unwrap();
    let config = config.replace("instances = 1", &format!("instances = {instances}"));
    assert!(config.contains(&format!("instances = {instances}")));
    let config = format!("{config}\n[batching]\n{batching}\n");
    std::fs::write(root.join("config.toml"), config).unwrap();
    let model = Model::load_with(&root, bridge).unwrap();
    (dir, model)
}

/// Rows `start..start + n` of a batched tensor.
fn rows(t: &Tensor, start: usize, n: usize) -> Tensor {
    let width = t.data.len() / t.shape[0] as usize;
    let mut shape = t.shape.clone();
    shape[0] = n as i64;
    let data = t.data.slice(start * width..(start + n) * width);
    Tensor::new(t.name.clone(), t.datatype, shape, data).unwrap()
}

fn thirty_two_threads(bridge: BackendKind) {
    let batching = "max_queue_delay_us = 2000\npreferred_batch_sizes = [4, 8]";
    let (_dir, model) = batched_mlp(bridge, 2, batching);
    let (inputs, expected) = reference(&model);
    std::thread::scope(|s| {
        for t in 0..32 {
            let (model, inputs, expected) = (&model, &inputs, &expected);
            s.spawn(move || {
                for i in 0..20 {
                    // Single rows, and 2 or 3 rows at once, from every thread.
                    let (start, n) = match (t + i) % 5 {
                        k @ 0..=2 => (k, 1),
                        3 => (1, 2),
                        _ => (0, 3),
                    };
                    let take = |x: &Tensor| {
                        if n == 1 {
                            row(x, start)
                        } else {
                            rows(x, start, n)
                        }
                    };
                    let out = model.infer(inputs.iter().map(take).collect()).unwrap();
                    let want: Vec<_> = expected.iter().map(take).collect();
                    assert_matches(&format!("{bridge} thread {t} call {i}"), &out, &want);
                }
            });
        }
    });
    let stats = model.stats();
    let sizes = stats.batch_sizes.snapshot();
    assert!(
        sizes.iter().all(|s| (1..=8).contains(&s.batch_size)),
        "{sizes:?}"
    );
    // No single request has more than 3 rows: anything larger was batched.
    assert!(
        sizes.iter().any(|s| s.batch_size > 3),
        "never batched: {sizes:?}"
    );
    let calls: u64 = sizes.iter().map(|s| s.count).sum();
    assert_eq!(stats.execution_count.load(Relaxed), calls);
    assert!(calls < 32 * 20, "{calls} calls for {} requests", 32 * 20);
    assert_eq!(stats.success.count(), 32 * 20);
}

#[test]
#[cfg(feature = "python")]
fn python_bridge_batches_thirty_two_threads() {
    thirty_two_threads(BackendKind::Python);
}

#[test]
#[cfg(feature = "torchscript")]
fn torchscript_bridge_batches_thirty_two_threads() {
    thirty_two_threads(BackendKind::Torchscript);
}

#[test]
#[cfg(feature = "onnx")]
fn onnx_bridge_batches_thirty_two_threads() {
    thirty_two_threads(BackendKind::Onnx);
}

/// Any bridge this build has; the queue's behaviour does not depend on it.
fn some_bridge() -> BackendKind {
    *torchbridge::compiled_bridges()
        .first()
        .expect("a bridge compiled in")
}

#[test]
fn a_flooded_queue_refuses_the_excess_and_answers_everyone() {
    // Two requests may queue; they wait 100 ms for companions that are all refused.
    let batching = "max_queue_delay_us = 100000\nmax_queue_size = 2";
    let (_dir, model) = batched_mlp(some_bridge(), 1, batching);
    let (inputs, expected) = reference(&model);
    let start = Barrier::new(32);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|t| {
                let (model, inputs, start) = (&model, &inputs, &start);
                s.spawn(move || {
                    start.wait();
                    model.infer(inputs.iter().map(|x| row(x, t % 3)).collect())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut ok, mut refused) = (0, 0);
    for (t, result) in results.into_iter().enumerate() {
        match result {
            Ok(out) => {
                let want: Vec<_> = expected.iter().map(|x| row(x, t % 3)).collect();
                assert_matches(&format!("request {t}"), &out, &want);
                ok += 1;
            }
            Err(Error::Overloaded { queued, .. }) => {
                assert_eq!(queued, 2);
                refused += 1;
            }
            Err(e) => panic!("request {t}: {e}"),
        }
    }
    assert_eq!(ok + refused, 32);
    assert!(ok >= 2 && refused > 0, "{ok} answered, {refused} refused");
    // Once the queue has drained, requests are taken again.
    let out = model.infer(inputs.iter().map(|x| row(x, 0)).collect());
    assert_matches("after the flood", &out.unwrap(), &[row(&expected[0], 0)]);
}

#[test]
fn a_request_not_started_by_its_deadline_is_never_run() {
    // A lone request waits 300 ms for companions: longer than its deadline.
    let (_dir, model) = batched_mlp(some_bridge(), 1, "max_queue_delay_us = 300000");
    let (inputs, expected) = reference(&model);
    let one = || inputs.iter().map(|x| row(x, 1)).collect::<Vec<_>>();
    let soon = Instant::now() + Duration::from_millis(30);
    match model.infer_with_deadline(one(), soon) {
        Err(Error::Timeout { model, waited_ms }) => {
            assert_eq!(model, "mlp");
            assert!(waited_ms >= 20, "answered after {waited_ms} ms");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let past = Instant::now();
    assert!(matches!(
        model.infer_with_deadline(one(), past),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(model.stats().execution_count.load(Relaxed), 0);
    // Without a deadline it runs once its delay is out.
    let out = model.infer(one()).unwrap();
    assert_matches("no deadline", &out, &[row(&expected[0], 1)]);
    assert_eq!(model.stats().execution_count.load(Relaxed), 1);
}

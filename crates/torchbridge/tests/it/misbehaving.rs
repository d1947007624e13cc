//! A python model that raises, returns the wrong thing, or hangs fails its own requests
//! with a message naming the fault, and the model goes on serving (fixture
//! `py_misbehaving`: the first element of `X` picks the misbehaviour).
#![cfg(feature = "python")]

use std::time::{Duration, Instant};

use torchbridge::{BackendKind, Error, Model, ModelDir, ServedModel, Tensor};

use crate::common::model_dir;

/// A one-row `X` whose first element picks the handler's mode.
fn x(mode: f32, second: f32) -> Tensor {
    Tensor::from_slice("X", vec![1, 2], &[mode, second]).unwrap()
}

fn error_of(model: &Model, mode: f32) -> Error {
    model.infer(vec![x(mode, 0.0)]).unwrap_err()
}

fn assert_still_serves(model: &Model) {
    let y = model.infer(vec![x(1.5, 2.5)]).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![1.5, 2.5]);
}

#[test]
fn an_exception_fails_its_request_with_the_message_and_the_model_serves_on() {
    let model = Model::load(model_dir("py_misbehaving")).unwrap();
    match error_of(&model, 101.0) {
        Error::Python { model: name, error } => {
            assert_eq!(name, "py_misbehaving");
            assert_eq!(error.kind, "RuntimeError");
            assert_eq!(error.message, "the handler failed on purpose");
        }
        other => panic!("expected a Python error, got {other}"),
    }
    assert_still_serves(&model);
}

#[test]
fn a_wrong_output_name_shape_or_datatype_is_named() {
    let model = Model::load(model_dir("py_misbehaving")).unwrap();
    let cases = [
        (102.0, "predict() returned no output `Y` (its keys: `Z`)"),
        (103.0, "output `Y` should have shape [1, 2], got [1, 1]"),
        (
            104.0,
            "output `Y` is declared FP32 but the model returned torch.float64 (FP64)",
        ),
    ];
    for (mode, wanted) in cases {
        match error_of(&model, mode) {
            Error::Inference {
                model: name,
                message,
            } => {
                assert_eq!(name, "py_misbehaving");
                assert!(message.contains(wanted), "mode {mode}: {message}");
            }
            other => panic!("mode {mode}: expected an inference error, got {other}"),
        }
        assert_still_serves(&model);
    }
}

/// Waits (polling, bounded) until `served` reports exactly `count` stuck instances.
fn wait_for_stuck(served: &ServedModel, count: usize) -> Vec<usize> {
    let began = Instant::now();
    loop {
        let stuck = served.stats().stuck_instances();
        if stuck.len() == count {
            return stuck;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "waited for {count} stuck instances; have {stuck:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hung_call_marks_its_instance_stuck_and_all_stuck_refuses_new_requests() {
    // Two instances. The first hangs 5 s, the second 3 s; each request's deadline is
    // 100 ms, so each call is stuck after the 1 s floor.
    let dir = ModelDir::open(&model_dir("py_misbehaving"), None).unwrap();
    let served = torchbridge::start_model(&dir, BackendKind::Python).unwrap();
    let run = |mode: f32, second: f32| {
        let batch = served.metadata().prepare(vec![x(mode, second)]).unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        served.submit(batch, Some(deadline)).unwrap()
    };
    let first = run(105.0, 5.0);
    let stuck = wait_for_stuck(&served, 1);
    // The other instance still serves.
    let good = served.metadata().prepare(vec![x(1.0, 2.0)]).unwrap();
    let y = served.run_blocking(good).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    assert_eq!(
        served.stats().stuck_instances(),
        stuck,
        "still the same one"
    );

    let second = run(105.0, 3.0);
    assert_eq!(wait_for_stuck(&served, 2), vec![0, 1]);
    let good = served.metadata().prepare(vec![x(1.0, 2.0)]).unwrap();
    match served.submit(good, None).unwrap_err() {
        Error::NotReady { model, reason } => {
            assert_eq!(model, "py_misbehaving");
            assert!(
                reason.contains("all 2 of its instances are stuck"),
                "{reason}"
            );
        }
        other => panic!("expected NotReady, got {other}"),
    }

    // Both calls return in the end (their receivers were kept, so they are answered).
    assert!(second.blocking_recv().unwrap().is_ok());
    assert!(first.blocking_recv().unwrap().is_ok());
    assert!(served.stats().stuck_instances().is_empty());
    let good = served.metadata().prepare(vec![x(1.0, 2.0)]).unwrap();
    assert!(served.run_blocking(good).is_ok());
}

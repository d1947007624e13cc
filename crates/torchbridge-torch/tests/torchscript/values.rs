//! Values: outputs equal what Python computed, for every datatype, batch size and thread count.

use crate::compare::assert_close;
use crate::fixtures::fixtures;
use crate::{config, infer, inference_error, load, mlp_config};

#[test]
fn fp32_mlp_matches_python_at_batch_1_and_3() {
    let mut backend = load("mlp", mlp_config("max_batch_size = 8")).unwrap();
    assert_eq!(backend.metadata().platform, "torchscript");
    for run in ["batch1", "batch3", "batch1"] {
        let inputs = fixtures().inputs("mlp", run, &["INPUT0"]);
        let outputs = infer(backend.as_mut(), inputs).unwrap();
        assert_close(&outputs, &fixtures().outputs("mlp", run, &["OUTPUT0"]));
    }
}

#[test]
fn int64_model_matches_python() {
    let config = config("", &[("X", "INT64", "[5]")], &[("Y", "INT64", "[5]")]);
    let mut backend = load("int64", config).unwrap();
    let outputs = infer(backend.as_mut(), fixtures().inputs("int64", "run", &["X"])).unwrap();
    assert_close(&outputs, &fixtures().outputs("int64", "run", &["Y"]));
}

const TCH_DATATYPES: [&str; 10] = [
    "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16",
];

fn declare(names: &[String]) -> Vec<(&str, &str, &str)> {
    names
        .iter()
        .zip(TCH_DATATYPES)
        .map(|(n, t)| (n.as_str(), t, "[2, 3]"))
        .collect()
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn every_datatype_tch_holds_crosses_both_ways() {
    let inputs: Vec<String> = TCH_DATATYPES.iter().map(|t| format!("IN_{t}")).collect();
    let outputs: Vec<String> = TCH_DATATYPES.iter().map(|t| format!("OUT_{t}")).collect();
    let mut backend = load("every", config("", &declare(&inputs), &declare(&outputs))).unwrap();
    let given = fixtures().inputs("every", "run", &as_strs(&inputs));
    let returned = infer(backend.as_mut(), given).unwrap();
    assert_close(
        &returned,
        &fixtures().outputs("every", "run", &as_strs(&outputs)),
    );
}

#[test]
fn a_module_that_raises_is_reported_and_the_next_call_works() {
    let config = config(
        "max_batch_size = 1",
        &[("X", "FP32", "[4]")],
        &[("Y", "FP32", "[4]")],
    );
    let mut backend = load("raises", config).unwrap();
    let e = inference_error(infer(
        backend.as_mut(),
        fixtures().inputs("raises", "bad", &["X"]),
    ));
    assert!(
        e.starts_with("model `test-model` failed:") && e.contains("negative input"),
        "{e}"
    );
    assert!(
        !e.contains("frame #") && !e.contains("Exception raised from"),
        "{e}"
    );
    let good = infer(
        backend.as_mut(),
        fixtures().inputs("raises", "good", &["X"]),
    )
    .unwrap();
    assert_close(&good, &fixtures().outputs("raises", "good", &["Y"]));
}

#[test]
fn each_instance_runs_with_its_own_thread_count_on_whichever_thread_calls_it() {
    // Loaded here, run elsewhere: libtorch's count is process-global (the last load set
    // it to 2), yet each instance must run with its own.
    let backends: Vec<_> = [1, 2]
        .into_iter()
        .map(|threads| {
            (
                threads,
                load(
                    "mlp",
                    mlp_config(&format!("max_batch_size = 8\nthreads = {threads}")),
                )
                .unwrap(),
            )
        })
        .collect();
    let handles: Vec<_> = backends
        .into_iter()
        .map(|(threads, mut backend)| {
            std::thread::spawn(move || {
                for _ in 0..5 {
                    infer(
                        backend.as_mut(),
                        fixtures().inputs("mlp", "batch3", &["INPUT0"]),
                    )
                    .unwrap();
                    assert_eq!(tch::get_num_threads(), threads);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

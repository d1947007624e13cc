//! Every form the bridge loads gives Python's answer, for every datatype it carries.

use torchbridge_core::{Batch, Tensor};

use crate::fixtures::{check_run, fixtures};

#[test]
fn a_handler_takes_fp32_int64_bool_and_bf16_and_its_parameters() {
    let mut model = fixtures().load("handler_multi").unwrap();
    assert_eq!(model.metadata().platform, "python");
    check_run(model.as_mut(), "handler_multi", "batch3");
}

#[test]
fn a_handler_takes_and_returns_bytes() {
    let mut model = fixtures().load("handler_strings").unwrap();
    check_run(model.as_mut(), "handler_strings", "batch3");
    let echo = Tensor::from_strings("TEXT", vec![1, 1], &["abc"]).unwrap();
    let out = model
        .infer(Batch {
            inputs: vec![echo],
            rows: 1,
        })
        .unwrap();
    assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![3]);
    assert_eq!(out[1].strings().unwrap(), vec![b"ABC"]);
}

#[test]
fn torchscript_with_a_tuple_out() {
    let mut model = fixtures().load("torchscript").unwrap();
    check_run(model.as_mut(), "torchscript", "batch3");
}

#[test]
fn torchscript_with_a_dict_out_of_bf16_and_bool_matched_by_name() {
    let mut model = fixtures().load("torchscript_dict").unwrap();
    check_run(model.as_mut(), "torchscript_dict", "batch2");
}

#[test]
fn a_trusted_pickle_loads_as_a_module() {
    let mut model = fixtures().load("pickled_trusted").unwrap();
    check_run(model.as_mut(), "pickled_trusted", "batch3");
}

#[test]
fn an_exported_program() {
    let mut model = fixtures().load("exported").unwrap();
    check_run(model.as_mut(), "exported", "batch3");
}

#[test]
fn instances_of_one_model_run_side_by_side_on_their_own_threads() {
    let threads: Vec<_> = (0..4)
        .map(|instance| {
            let mut ctx = fixtures().context("handler_multi");
            ctx.instance = instance;
            let mut model = torchbridge_python::load(&ctx).unwrap();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    check_run(model.as_mut(), "handler_multi", "batch3");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn torch_version_is_the_venvs() {
    let version = torchbridge_python::torch_version().unwrap();
    assert!(version.starts_with("2."), "{version}");
}

//! How a module's return value (tensor, tuple, dict) becomes the declared outputs.

use torchbridge_core::ModelConfig;

use crate::compare::assert_close;
use crate::fixtures::fixtures;
use crate::{config, infer, inference_error, load};

fn tuple_config(outputs: &[(&str, &str, &str)]) -> ModelConfig {
    config(
        "max_batch_size = 4",
        &[("A", "FP32", "[3]"), ("B", "FP32", "[3]")],
        outputs,
    )
}

#[test]
fn tuple_outputs_map_in_order_and_inputs_go_in_config_order() {
    let outputs = [("DIFF", "FP32", "[3]"), ("PRODUCT", "FP32", "[3]")];
    let mut backend = load("tuple", tuple_config(&outputs)).unwrap();
    let mut inputs = fixtures().inputs("tuple", "run", &["A", "B"]);
    inputs.reverse(); // a request may name them in any order; forward(a, b) gets A, B
    let returned = infer(backend.as_mut(), inputs).unwrap();
    assert_close(
        &returned,
        &fixtures().outputs("tuple", "run", &["DIFF", "PRODUCT"]),
    );
}

#[test]
fn a_tuple_longer_than_the_declared_outputs_is_an_error() {
    let mut backend = load("tuple", tuple_config(&[("DIFF", "FP32", "[3]")])).unwrap();
    let inputs = fixtures().inputs("tuple", "run", &["A", "B"]);
    let e = inference_error(infer(backend.as_mut(), inputs));
    assert!(
        e.contains("returned 2 tensor(s), but the config declares 1 output(s) (`DIFF`)"),
        "{e}"
    );
}

#[test]
fn dict_outputs_map_by_name_not_by_order() {
    let outputs = [("first", "FP32", "[3]"), ("second", "FP32", "[3]")];
    let mut backend = load(
        "dict",
        config("max_batch_size = 2", &[("X", "FP32", "[3]")], &outputs),
    )
    .unwrap();
    let expected = fixtures().dict_outputs("dict", "run");
    assert_eq!(
        expected[0].name, "second",
        "the fixture's dict order differs from the config's"
    );
    let returned = infer(backend.as_mut(), fixtures().inputs("dict", "run", &["X"])).unwrap();
    let (second, first) = (&expected[0], &expected[1]);
    assert_close(&returned, &[first.clone(), second.clone()]);
}

#[test]
fn a_dict_without_a_declared_output_names_it() {
    let outputs = [("first", "FP32", "[3]"), ("third", "FP32", "[3]")];
    let mut backend = load(
        "dict",
        config("max_batch_size = 2", &[("X", "FP32", "[3]")], &outputs),
    )
    .unwrap();
    let e = inference_error(infer(
        backend.as_mut(),
        fixtures().inputs("dict", "run", &["X"]),
    ));
    assert!(
        e.contains("no key `third` (its keys: `second`, `first`)"),
        "{e}"
    );
}

#[test]
fn an_output_of_another_dtype_names_the_output_and_both_types() {
    let config = config(
        "max_batch_size = 1",
        &[("X", "FP32", "[4]")],
        &[("Y", "FP32", "[4]")],
    );
    let mut backend = load("double", config).unwrap();
    let e = inference_error(infer(
        backend.as_mut(),
        fixtures().inputs("double", "run", &["X"]),
    ));
    assert!(
        e.contains("output `Y` is declared FP32 but the model returned torch.float64 (FP64)"),
        "{e}"
    );
}

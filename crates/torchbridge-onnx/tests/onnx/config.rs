//! config.toml against the model file, and loads that must fail clearly.

use torchbridge_core::{Error, ModelForm};

use crate::fixtures::{context, fixtures, load};

fn load_error(model: &str, config: &str) -> String {
    load_error_of(&context(model, config))
}

fn load_error_of(ctx: &torchbridge_core::LoadContext) -> String {
    match torchbridge_onnx::load(ctx) {
        Err(e @ Error::Load { .. }) => e.to_string(),
        Err(e) => panic!("expected a load error, got {e:?}"),
        Ok(_) => panic!("expected a load error, the model loaded"),
    }
}

const TWO_IO: &str = r#"
backend = "onnx"
max_batch_size = 4
[[input]]
name = "ids"
datatype = "INT64"
dims = [3]
[[input]]
name = "features"
datatype = "FP32"
dims = [6]
[[output]]
name = "count"
datatype = "INT64"
dims = []
[[output]]
name = "score"
datatype = "FP32"
dims = [-1]
"#;

#[test]
fn declared_tensors_that_agree_are_served_in_config_order() {
    let mut backend = load("two_io", TWO_IO);
    let names: Vec<&str> = backend
        .metadata()
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["ids", "features"]);
    let case = crate::fixtures::cases("two_io").pop().unwrap();
    let batch = backend.metadata().prepare(case.inputs).unwrap();
    let outputs = backend.infer(batch).unwrap();
    crate::fixtures::assert_close(&outputs[0], &case.outputs[1], "count");
    crate::fixtures::assert_close(&outputs[1], &case.outputs[0], "score");
}

#[test]
fn declared_tensors_that_disagree_are_named() {
    let e = load_error(
        "two_io",
        &TWO_IO.replace("\"INT64\"\ndims = [3]", "\"INT32\"\ndims = [3]"),
    );
    assert!(
        e.starts_with("model `two_io` failed to load through the onnx bridge: "),
        "{e}"
    );
    assert!(
        e.contains("config.toml declares input `ids` as INT32, but the model's is INT64"),
        "{e}"
    );
    let e = load_error(
        "two_io",
        &TWO_IO.replace("name = \"features\"", "name = \"INPUT0\""),
    );
    assert!(e.contains("declares input `INPUT0`, which the model does not have; its inputs are `features` (FP32 [-1, 6]), `ids` (INT64 [-1, 3])"), "{e}");
    let e = load_error("two_io", &TWO_IO.replace("dims = [6]", "dims = [5]"));
    assert!(e.contains("input `features` with dims [5], but the model's shape without its batch dimension is [6]"), "{e}");
    let e = load_error(
        "two_io",
        &TWO_IO.replace("name = \"score\"", "name = \"logits\""),
    );
    assert!(
        e.contains("declares output `logits`, which the model does not have"),
        "{e}"
    );
}

#[test]
fn a_declared_subset_of_outputs_is_all_that_is_returned() {
    let config = TWO_IO.split("[[output]]\nname = \"score\"").next().unwrap();
    let mut backend = load("two_io", config);
    let case = crate::fixtures::cases("two_io").pop().unwrap();
    let outputs = backend
        .infer(backend.metadata().prepare(case.inputs).unwrap())
        .unwrap();
    assert_eq!(outputs.len(), 1);
    crate::fixtures::assert_close(&outputs[0], &case.outputs[1], "count");
}

#[test]
fn cuda_is_refused_with_the_reason() {
    let e = load_error("mlp", "backend = \"onnx\"\ndevice = \"cuda:0\"");
    assert!(
        e.contains(
            "`device = \"cuda:0\"` is not available: this build runs ONNX Runtime on the CPU"
        ),
        "{e}"
    );
}

#[test]
fn only_onnx_files_are_loaded() {
    let mut ctx = context("mlp", "backend = \"onnx\"");
    ctx.form = ModelForm::TorchScript(ctx.version_dir.join("model.pt"));
    let e = load_error_of(&ctx);
    assert!(
        e.contains("loads `model.onnx`, not") && e.contains("model.pt"),
        "{e}"
    );
}

#[test]
fn a_missing_or_corrupt_model_file_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context("mlp", "backend = \"onnx\"");
    ctx.form = ModelForm::Onnx(dir.path().join("model.onnx"));
    let e = load_error_of(&ctx);
    assert!(e.contains("cannot open") && e.contains("model.onnx"), "{e}");
    std::fs::write(dir.path().join("model.onnx"), b"this is not protobuf").unwrap();
    let e = load_error_of(&ctx);
    assert!(e.contains("cannot open") && e.contains("model.onnx"), "{e}");
    assert!(fixtures().join("mlp/model.onnx").is_file());
}

#[test]
fn python_env_names_the_virtualenv_holding_onnx_runtime() {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    let config = format!(
        "backend = \"onnx\"\npython_env = {:?}",
        venv.display().to_string()
    );
    let mut backend = load("mlp", &config);
    crate::fixtures::check_cases(backend.as_mut(), "mlp");
}

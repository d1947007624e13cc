//! What refuses to load, and says why.

use torchbridge_core::{Device, ModelForm};

use crate::fixtures::fixtures;
use crate::{config, context, load, load_error, mlp_config};

#[test]
fn a_config_without_inputs_or_outputs_is_a_load_error() {
    let e = load_error(load("mlp", config("", &[], &[("OUTPUT0", "FP32", "[3]")])));
    assert!(
        e.contains("torchscript bridge") && e.contains("must: add an `[[input]]` table"),
        "{e}"
    );
    let e = load_error(load("mlp", config("", &[("INPUT0", "FP32", "[4]")], &[])));
    assert!(e.contains("add an `[[output]]` table"), "{e}");
}

#[test]
fn datatypes_tch_cannot_hold_are_refused_at_load() {
    let e = load_error(load(
        "mlp",
        config("", &[("S", "BYTES", "[1]")], &[("Y", "FP32", "[3]")]),
    ));
    assert!(
        e.contains("`[[input]]` `S` is BYTES: the torchscript bridge does not take BYTES"),
        "{e}"
    );
    let e = load_error(load(
        "mlp",
        config("", &[("X", "FP32", "[4]")], &[("Y", "UINT32", "[3]")]),
    ));
    assert!(
        e.contains("`[[output]]` `Y` is UINT32: tch 0.26 has no unsigned"),
        "{e}"
    );
}

#[test]
fn wrong_files_and_absent_devices_are_load_errors() {
    let path = fixtures().model("mlp");
    let onnx = context(ModelForm::Onnx(path.with_extension("onnx")), mlp_config(""));
    let e = load_error(torchbridge_torch::load(&onnx));
    assert!(
        e.contains("loads TorchScript files (model.pt), not") && e.contains("model.onnx"),
        "{e}"
    );
    let missing = path.with_file_name("absent.pt");
    let e = load_error(torchbridge_torch::load(&context(
        ModelForm::TorchScript(missing),
        mlp_config(""),
    )));
    assert!(
        e.contains("cannot load") && e.contains("absent.pt") && !e.contains("frame #"),
        "{e}"
    );
    let mut on_gpu = mlp_config("");
    on_gpu.device = Device::Cuda(99);
    let e = load_error(load("mlp", on_gpu));
    assert!(
        e.contains("device `cuda:99` is not available: libtorch sees"),
        "{e}"
    );
}

#[test]
fn libtorch_version_is_the_one_tch_0_26_needs() {
    assert!(torchbridge_torch::libtorch_version().starts_with("2.13.0"));
}

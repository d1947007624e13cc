//! The torchscript bridge against real libtorch: models scripted by Python at test time
//! (`tests/fixtures/make_models.py`), outputs compared with what Python computed.
//!
//! Run: `source scripts/env.sh && cargo test -p torchbridge-torch`

mod compare;
mod fixtures;
mod loading;
mod outputs;
mod values;

use std::path::{Path, PathBuf};

use fixtures::fixtures;
use torchbridge_core::{Backend, Error, LoadContext, ModelConfig, ModelForm, Result, Tensor};

/// A `config.toml` for the torchscript bridge: top-level `settings`, then tensors as
/// `(name, datatype, dims)`.
fn config(
    settings: &str,
    inputs: &[(&str, &str, &str)],
    outputs: &[(&str, &str, &str)],
) -> ModelConfig {
    let mut text = format!("backend = \"torchscript\"\n{settings}\n");
    for (key, tensors) in [("input", inputs), ("output", outputs)] {
        for (name, datatype, dims) in tensors {
            text += &format!(
                "[[{key}]]\nname = \"{name}\"\ndatatype = \"{datatype}\"\ndims = {dims}\n"
            );
        }
    }
    ModelConfig::from_toml(&text).unwrap()
}

fn context(form: ModelForm, config: ModelConfig) -> LoadContext {
    LoadContext {
        model: "test-model".into(),
        version: 1,
        version_dir: form
            .path()
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf),
        config,
        form,
        instance: 0,
    }
}

fn load(case: &str, config: ModelConfig) -> Result<Box<dyn Backend>> {
    torchbridge_torch::load(&context(
        ModelForm::TorchScript(fixtures().model(case)),
        config,
    ))
}

/// One call as the instance pool makes it: inputs checked and ordered, outputs checked.
fn infer(backend: &mut dyn Backend, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
    let batch = backend.metadata().prepare(inputs)?;
    let rows = batch.rows;
    let outputs = backend.infer(batch)?;
    backend.metadata().check_outputs(&outputs, rows)?;
    Ok(outputs)
}

fn load_error(result: Result<Box<dyn Backend>>) -> String {
    match result {
        Err(e @ Error::Load { .. }) => e.to_string(),
        Err(other) => panic!("expected a load error, got {other:?}"),
        Ok(_) => panic!("expected a load error, the model loaded"),
    }
}

fn inference_error(result: Result<Vec<Tensor>>) -> String {
    match result {
        Err(e @ Error::Inference { .. }) => e.to_string(),
        other => panic!("expected an inference error, got {other:?}"),
    }
}

fn mlp_config(settings: &str) -> ModelConfig {
    config(
        settings,
        &[("INPUT0", "FP32", "[4]")],
        &[("OUTPUT0", "FP32", "[3]")],
    )
}

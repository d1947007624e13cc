//! Generating the test models once per process, and reading their cases back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use torchbridge_core::{Backend, DataType, LoadContext, ModelConfig, ModelForm, Tensor};

/// The venv's python: `VIRTUAL_ENV`, else the project's `.venv`.
fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    venv.join("bin/python")
}

/// The folder holding every fixture model, generated on first use.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_models.py");
        let python = python();
        let out = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (run scripts/setup to make the venv)",
                    python.display()
                )
            });
        assert!(
            out.status.success(),
            "{} {} failed:\n{}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn model_path(model: &str) -> PathBuf {
    fixtures().join(model).join("model.onnx")
}

/// A load context for fixture `model` under `config` (config.toml text).
pub fn context(model: &str, config: &str) -> LoadContext {
    let path = model_path(model);
    LoadContext {
        model: model.to_string(),
        version: 1,
        config: ModelConfig::from_toml(config).unwrap(),
        version_dir: path.parent().unwrap().to_path_buf(),
        form: ModelForm::Onnx(path),
        instance: 0,
    }
}

pub fn load(model: &str, config: &str) -> Box<dyn Backend> {
    torchbridge_onnx::load(&context(model, config)).unwrap_or_else(|e| panic!("{e}"))
}

/// One case of `cases.json`: inputs and the outputs PyTorch computed from them.
pub struct Case {
    pub name: String,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
}

pub fn cases(model: &str) -> Vec<Case> {
    let folder = fixtures().join(model);
    let text = std::fs::read_to_string(folder.join("cases.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let tensors = |list: &Value| -> Vec<Tensor> {
        let list = list.as_array().unwrap();
        list.iter()
            .map(|t| {
                let datatype: DataType = t["datatype"].as_str().unwrap().parse().unwrap();
                let shape = t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                let data = std::fs::read(folder.join(t["file"].as_str().unwrap())).unwrap();
                Tensor::new(t["name"].as_str().unwrap(), datatype, shape, data).unwrap()
            })
            .collect()
    };
    let list = json["cases"].as_array().unwrap();
    list.iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            inputs: tensors(&c["inputs"]),
            outputs: tensors(&c["outputs"]),
        })
        .collect()
}

/// Floats within 1e-5 relative (absolute below magnitude 1); everything else exactly.
pub fn assert_close(got: &Tensor, want: &Tensor, context: &str) {
    assert_eq!(
        (&got.name, got.datatype, &got.shape),
        (&want.name, want.datatype, &want.shape),
        "{context}"
    );
    let (got_values, want_values) = match want.datatype {
        DataType::Fp32 => (
            widen(&got.to_vec::<f32>().unwrap()),
            widen(&want.to_vec::<f32>().unwrap()),
        ),
        DataType::Fp64 => (got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap()),
        DataType::Fp16 => (
            got.to_vec::<half::f16>()
                .unwrap()
                .iter()
                .map(|v| v.to_f64())
                .collect(),
            want.to_vec::<half::f16>()
                .unwrap()
                .iter()
                .map(|v| v.to_f64())
                .collect(),
        ),
        _ => {
            assert_eq!(got.data, want.data, "{context}: `{}` differs", want.name);
            return;
        }
    };
    for (i, (g, w)) in got_values.iter().zip(&want_values).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{context}: `{}`[{i}] is {g}, PyTorch says {w}",
            want.name
        );
    }
}

fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

/// Runs every case of `model` through `backend` and compares with PyTorch.
pub fn check_cases(backend: &mut dyn Backend, model: &str) {
    for case in cases(model) {
        let batch = backend.metadata().prepare(case.inputs).unwrap();
        let rows = batch.rows;
        let outputs = backend
            .infer(batch)
            .unwrap_or_else(|e| panic!("{model}/{}: {e}", case.name));
        backend.metadata().check_outputs(&outputs, rows).unwrap();
        assert_eq!(outputs.len(), case.outputs.len(), "{model}/{}", case.name);
        for (got, want) in outputs.iter().zip(&case.outputs) {
            assert_close(got, want, &format!("{model}/{}", case.name));
        }
    }
}

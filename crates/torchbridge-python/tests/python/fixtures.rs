//! The test models: made once per version of the fixture script by
//! `tests/fixtures/make_models.py` with the venv's python, kept under Cargo's target
//! tmpdir, read through its manifest; and helpers to load and compare.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use torchbridge_core::{
    Backend, BackendKind, Batch, DataType, LoadContext, ModelDir, Result, Tensor,
};

const SCRIPT: &str = include_str!("../fixtures/make_models.py");

pub struct Fixtures {
    root: PathBuf,
    manifest: Value,
}

/// The fixtures, generating them on first use (a few seconds of Python).
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = generate();
        let text = std::fs::read_to_string(root.join("manifest.json")).expect("read manifest");
        Fixtures {
            manifest: serde_json::from_str(&text).expect("parse manifest.json"),
            root,
        }
    })
}

/// `<target tmpdir>/python-fixtures-<hash of the script>`, made if absent. Python writes
/// into a fresh temporary directory that is then renamed into place, so a concurrent
/// test process never reads a half-written set.
fn generate() -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    SCRIPT.hash(&mut hasher);
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.join(format!("python-fixtures-{:016x}", hasher.finish()));
    if root.join("manifest.json").is_file() {
        return root;
    }
    let staging = tempfile::tempdir_in(tmp).expect("make a staging directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_models.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(staging.path())
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let staged = staging.keep();
    if std::fs::rename(&staged, &root).is_err() {
        let _ = std::fs::remove_dir_all(&staged); // another process got there first
    }
    root
}

/// `$VIRTUAL_ENV/bin/python`, else the project's `.venv`.
fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    venv.join("bin/python")
}

impl Fixtures {
    pub fn model_dir(&self, case: &str) -> PathBuf {
        let model = self.manifest[case]["model"].as_str();
        self.root
            .join(model.unwrap_or_else(|| panic!("no case `{case}`")))
    }

    /// The load context the registry would build for `case`, version 1, instance 0.
    pub fn context(&self, case: &str) -> LoadContext {
        let dir = ModelDir::open(&self.model_dir(case), None).expect("open the model dir");
        LoadContext {
            model: case.to_string(),
            version: dir.version,
            form: dir.form_for(BackendKind::Python).expect("a python form"),
            version_dir: dir.version_dir,
            config: dir.config,
            instance: 0,
        }
    }

    pub fn load(&self, case: &str) -> Result<Box<dyn Backend>> {
        torchbridge_python::load(&self.context(case))
    }

    /// A run's inputs, as Python generated them.
    pub fn inputs(&self, case: &str, run: &str) -> Vec<Tensor> {
        self.tensors(&self.run(case, run)["inputs"])
    }

    /// What Python computed for a run.
    pub fn outputs(&self, case: &str, run: &str) -> Vec<Tensor> {
        self.tensors(&self.run(case, run)["outputs"])
    }

    fn run(&self, case: &str, run: &str) -> &Value {
        let value = &self.manifest[case]["runs"][run];
        assert!(value.is_object(), "no run `{run}` of case `{case}`");
        value
    }

    fn tensors(&self, entries: &Value) -> Vec<Tensor> {
        let entries = entries.as_array().expect("a list of tensors");
        entries
            .iter()
            .map(|entry| {
                let datatype: DataType = entry["datatype"].as_str().unwrap().parse().unwrap();
                let shape = entry["shape"].as_array().unwrap();
                let shape = shape.iter().map(|d| d.as_i64().unwrap()).collect();
                let bytes = std::fs::read(self.root.join(entry["file"].as_str().unwrap()));
                let name = entry["name"].as_str().unwrap();
                Tensor::new(name, datatype, shape, bytes.unwrap()).unwrap()
            })
            .collect()
    }
}

/// Runs `case`'s inputs for `run` through `backend` and checks every output against
/// Python's: floats within 1e-5 relative (absolute below 1), everything else exactly.
pub fn check_run(backend: &mut dyn Backend, case: &str, run: &str) {
    let inputs = fixtures().inputs(case, run);
    let rows = inputs[0].shape.first().copied().unwrap_or(1) as usize;
    let got = backend.infer(Batch { inputs, rows }).unwrap();
    backend.metadata().check_outputs(&got, rows).unwrap();
    let want = fixtures().outputs(case, run);
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(&want) {
        assert_eq!((&got.name, got.datatype), (&want.name, want.datatype));
        assert_eq!(got.shape, want.shape, "{case}: shape of `{}`", got.name);
        match got.datatype {
            DataType::Fp32 => close(&got.to_vec::<f32>().unwrap(), &want.to_vec().unwrap()),
            DataType::Bf16 => {
                let widen = |t: &Tensor| -> Vec<f32> {
                    t.to_vec::<half::bf16>()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_f32())
                        .collect()
                };
                close(&widen(got), &widen(want));
            }
            _ => assert_eq!(got.data, want.data, "{case}: `{}`", got.name),
        }
    }
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "got {got:?}, want {want:?}"
        );
    }
}

//! The test models: made once per fixture script by `tests/fixtures/make_models.py`
//! with the project's venv, kept under Cargo's target tmpdir, read through its manifest.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use torchbridge_core::{DataType, Tensor};

const SCRIPT: &str = include_str!("../fixtures/make_models.py");

pub struct Fixtures {
    root: PathBuf,
    manifest: Value,
}

/// The fixtures, generating them on first use (about two seconds of Python).
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = generate();
        let text = std::fs::read_to_string(root.join("manifest.json")).expect("read manifest.json");
        Fixtures {
            manifest: serde_json::from_str(&text).expect("parse manifest.json"),
            root,
        }
    })
}

/// `<target tmpdir>/torchscript-fixtures-<hash of the script>`, made by the script if
/// absent. Python writes into a fresh directory that is then renamed into place, so a
/// second test process never reads a half-written set.
fn generate() -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    SCRIPT.hash(&mut hasher);
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.join(format!("torchscript-fixtures-{:016x}", hasher.finish()));
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
        // Another test process got there first; its set is the same.
        let _ = std::fs::remove_dir_all(&staged);
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
    pub fn model(&self, case: &str) -> PathBuf {
        let model = self.manifest[case]["model"]
            .as_str()
            .expect("case has a model");
        self.root.join(model)
    }

    fn run(&self, case: &str, run: &str) -> &Value {
        let value = &self.manifest[case]["runs"][run];
        assert!(
            value.is_object(),
            "no run `{run}` of case `{case}` in the manifest"
        );
        value
    }

    /// A run's inputs, given the names the config declares, in order.
    pub fn inputs(&self, case: &str, run: &str, names: &[&str]) -> Vec<Tensor> {
        self.tensors(&self.run(case, run)["inputs"], names)
    }

    /// What Python computed for a run, named positionally.
    pub fn outputs(&self, case: &str, run: &str, names: &[&str]) -> Vec<Tensor> {
        self.tensors(&self.run(case, run)["outputs"], names)
    }

    /// What Python computed for a run that returned a dict, named by its keys.
    pub fn dict_outputs(&self, case: &str, run: &str) -> Vec<Tensor> {
        let keys = self.run(case, run)["output_names"]
            .as_array()
            .expect("output_names");
        let names: Vec<&str> = keys.iter().map(|k| k.as_str().unwrap()).collect();
        self.outputs(case, run, &names)
    }

    fn tensors(&self, entries: &Value, names: &[&str]) -> Vec<Tensor> {
        let entries = entries.as_array().expect("a list of tensors");
        assert_eq!(entries.len(), names.len(), "names for every tensor");
        entries
            .iter()
            .zip(names)
            .map(|(entry, name)| {
                let datatype: DataType = entry["datatype"].as_str().unwrap().parse().unwrap();
                let shape = entry["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                let bytes = std::fs::read(self.root.join(entry["file"].as_str().unwrap())).unwrap();
                Tensor::new(*name, datatype, shape, bytes).unwrap()
            })
            .collect()
    }
}

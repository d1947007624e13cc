//! One interpreter serves every python model: modules beside each model.py (a
//! `helpers.py`) must stay that model's, and not replace the process's own.

use std::path::Path;

use pyo3::types::{PyAnyMethods, PyDict, PyDictMethods};

use torchbridge_core::{Backend, BackendKind, Batch, LoadContext, ModelDir, Tensor};

const CONFIG: &str = "backend = \"python\"\nmax_batch_size = 4\n\
    [[input]]\nname = \"X\"\ndatatype = \"FP32\"\ndims = [1]\n\
    [[output]]\nname = \"Y\"\ndatatype = \"FP32\"\ndims = [1]\n";

/// `helpers.K` is imported when model.py loads, and again (lazily) at each call.
const HANDLER: &str = r#"from helpers import K


class Model:
    def __init__(self, model_dir, config):
        pass

    def predict(self, inputs):
        import helpers
        return {"Y": inputs["X"] * K + helpers.K}
"#;

/// Writes model version `version` of `model` under `root`, its helpers.py saying `k`.
fn write_model(root: &Path, model: &str, version: u64, k: f32) {
    let dir = root.join(model);
    std::fs::create_dir_all(dir.join(version.to_string())).unwrap();
    std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
    let version_dir = dir.join(version.to_string());
    std::fs::write(version_dir.join("model.py"), HANDLER).unwrap();
    std::fs::write(version_dir.join("helpers.py"), format!("K = {k:?}\n")).unwrap();
}

fn load(root: &Path, model: &str, version: u64) -> Box<dyn Backend> {
    let dir = ModelDir::open(&root.join(model), Some(version)).unwrap();
    torchbridge_python::load(&LoadContext {
        model: model.to_string(),
        version: dir.version,
        form: dir.form_for(BackendKind::Python).unwrap(),
        version_dir: dir.version_dir,
        config: dir.config,
        instance: 0,
    })
    .unwrap()
}

/// X = 1: the model answers 2·K of its own helpers.
fn answer(model: &mut dyn Backend) -> f32 {
    let x = Tensor::from_slice("X", vec![1, 1], &[1.0f32]).unwrap();
    let out = model
        .infer(Batch {
            inputs: vec![x],
            rows: 1,
        })
        .unwrap();
    out[0].to_vec::<f32>().unwrap()[0]
}

#[test]
fn models_and_versions_each_import_their_own_helpers() {
    let repo = tempfile::tempdir().unwrap();
    write_model(repo.path(), "h1", 1, 1.0);
    write_model(repo.path(), "h2", 1, 2.0);
    write_model(repo.path(), "h1", 2, 3.0);
    let mut one = load(repo.path(), "h1", 1);
    let mut two = load(repo.path(), "h2", 1);
    let mut one_v2 = load(repo.path(), "h1", 2);
    assert_eq!(answer(one.as_mut()), 2.0);
    assert_eq!(answer(two.as_mut()), 4.0);
    assert_eq!(answer(one_v2.as_mut()), 6.0);
    assert_eq!(answer(one.as_mut()), 2.0, "after the others loaded");

    // The process's own module of that name is left as it was.
    let leaked: bool = pyo3::Python::attach(|py| {
        let globals = PyDict::new(py);
        py.run(
            c"import sys\nout = 'helpers' in sys.modules",
            Some(&globals),
            None,
        )
        .unwrap();
        globals.get_item("out").unwrap().unwrap().extract().unwrap()
    });
    assert!(!leaked, "a model's helpers leaked into sys.modules");
}

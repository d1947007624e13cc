//! The interpreter runs in the model's virtualenv, and another model's is added to it.

use std::path::{Path, PathBuf};

use pyo3::types::{PyAnyMethods, PyDict, PyDictMethods};
use torchbridge_core::{Batch, ModelForm, Tensor};

use crate::fixtures::fixtures;

fn project_venv() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    venv.canonicalize().unwrap()
}

/// The interpreter starts as the venv's python whatever PATH holds: the venv is
/// sys.prefix, torch comes from it, and the base interpreter's site-packages (with
/// other versions of torch's dependencies) are hidden as in the venv itself.
#[test]
fn torch_comes_from_the_venv_and_the_base_site_packages_are_hidden() {
    torchbridge_python::torch_version().unwrap();
    let venv = project_venv().display().to_string();
    type Probe = (String, String, String, String, Vec<String>);
    let (torch_file, prefix, base_prefix, executable, site_dirs): Probe =
        pyo3::Python::attach(|py| {
            let probe = c"import sys, torch\nout = (torch.__file__, sys.prefix, sys.base_prefix, \
                sys.executable, [p for p in sys.path if p.endswith('-packages')])";
            let globals = PyDict::new(py);
            py.run(probe, Some(&globals), None).unwrap();
            globals.get_item("out").unwrap().unwrap().extract().unwrap()
        });
    assert!(
        torch_file.starts_with(&venv),
        "{torch_file} is not in {venv}"
    );
    assert_eq!(prefix, venv);
    assert_eq!(executable, format!("{venv}/bin/python"));
    // The first is the venv's; later ones are other tests' virtualenvs.
    assert!(site_dirs[0].starts_with(&venv), "{site_dirs:?}");
    assert!(
        !site_dirs.iter().any(|d| d.starts_with(&base_prefix)),
        "{site_dirs:?}"
    );
}

/// A second model naming another virtualenv (of the same Python) gets its packages.
#[test]
fn a_second_models_venv_is_added_to_the_same_interpreter() {
    torchbridge_python::torch_version().unwrap();
    let venv = tempfile::tempdir().unwrap();
    let site_packages = venv.path().join("lib/python3.11/site-packages");
    std::fs::create_dir_all(&site_packages).unwrap();
    std::fs::write(venv.path().join("pyvenv.cfg"), "version = 3.11.7\n").unwrap();
    std::fs::write(site_packages.join("second_venv_marker.py"), "ANSWER = 42\n").unwrap();
    let handler = tempfile::tempdir().unwrap();
    let model_py = handler.path().join("model.py");
    let source = "import torch\nimport second_venv_marker\n\nclass Model:\n    \
        def __init__(self, model_dir, config):\n        pass\n\n    \
        def predict(self, inputs):\n        return {\"Y\": inputs[\"X\"] * second_venv_marker.ANSWER}\n";
    std::fs::write(&model_py, source).unwrap();
    let mut ctx = fixtures().context("handler_errors");
    ctx.config.python_env = Some(venv.path().to_path_buf());
    ctx.form = ModelForm::PythonHandler(model_py);
    ctx.version_dir = handler.path().to_path_buf();
    let mut model = torchbridge_python::load(&ctx).unwrap();
    let x = Tensor::from_slice("X", vec![1, 2], &[1.0f32, 2.0]).unwrap();
    let y = model
        .infer(Batch {
            inputs: vec![x],
            rows: 1,
        })
        .unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![42.0, 84.0]);
}

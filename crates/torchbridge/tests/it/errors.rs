//! Each mistake a user can make gets a message naming the thing at fault.

use torchbridge::{BackendKind, Error, Model, Tensor};

use crate::common::model_dir;

fn load_error(result: torchbridge::Result<Model>) -> String {
    result.map(|_| ()).unwrap_err().to_string()
}

#[test]
#[cfg(feature = "python")]
fn a_python_exception_fails_one_call_and_the_next_works() {
    let model = Model::load(model_dir("py_error")).unwrap();
    let bad = Tensor::from_slice("X", vec![1, 2], &[-1.0f32, 2.0]).unwrap();
    match model.infer(vec![bad]).unwrap_err() {
        Error::Python { error, .. } => {
            assert_eq!(error.kind, "ValueError");
            assert!(error.message.contains("negative input"), "{error}");
            assert!(error.traceback.contains("model.py"), "{error}");
        }
        other => panic!("expected a Python error, got {other}"),
    }
    let good = Tensor::from_slice("X", vec![1, 2], &[1.0f32, 2.0]).unwrap();
    assert_eq!(
        model.infer(vec![good]).unwrap()[0].to_vec::<f32>().unwrap(),
        vec![1.0, 2.0]
    );
}

#[test]
#[cfg(feature = "python")]
fn a_pickle_is_refused_unless_trusted() {
    let err = load_error(Model::load(model_dir("pickled")));
    assert!(err.contains("trust_pickle"), "{err}");
    let model = Model::load(model_dir("pickled_trusted")).unwrap();
    let x = Tensor::from_slice("X", vec![1, 2], &[1.0f32, 2.0]).unwrap();
    assert_eq!(model.infer(vec![x]).unwrap()[0].shape, vec![1, 2]);
}

#[test]
fn a_missing_form_names_the_file_wanted() {
    let err = load_error(Model::load_with(model_dir("dict_out"), BackendKind::Onnx));
    assert!(
        err.contains("no model file for the onnx bridge (expected model.onnx)"),
        "{err}"
    );
}

#[test]
fn a_bad_config_names_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("1")).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "backend = \"onnx\"\nmax_batch = 4\n",
    )
    .unwrap();
    let err = load_error(Model::load(dir.path()));
    assert!(
        err.contains("config.toml") && err.contains("unknown field `max_batch`"),
        "{err}"
    );
}

#[test]
#[cfg(feature = "torchscript")]
fn wrong_inputs_are_refused_before_the_bridge_runs() {
    let model = Model::load_with(model_dir("mlp"), BackendKind::Torchscript).unwrap();
    let wrong = Tensor::from_slice("INPUT0", vec![1, 15], &[0f32; 15]).unwrap();
    let err = model.infer(vec![wrong]).unwrap_err().to_string();
    assert!(
        err.contains("must have shape [-1, 16], got [1, 15]"),
        "{err}"
    );
    let wrong = Tensor::from_slice("INPUT0", vec![9, 16], &[0f32; 144]).unwrap();
    let err = model.infer(vec![wrong]).unwrap_err().to_string();
    assert!(
        err.contains("9 rows; the batch size must be 1..=8"),
        "{err}"
    );
}

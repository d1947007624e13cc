//! Each way a python model can fail is reported as what it is, and the next call works.

use torchbridge_core::{Batch, Error, Tensor};

use crate::fixtures::fixtures;

fn call(
    model: &mut dyn torchbridge_core::Backend,
    values: &[f32],
) -> torchbridge_core::Result<Vec<Tensor>> {
    let x = Tensor::from_slice("X", vec![1, 2], values).unwrap();
    model.infer(Batch {
        inputs: vec![x],
        rows: 1,
    })
}

#[test]
fn an_exception_in_predict_is_a_python_error_and_the_next_call_works() {
    let mut model = fixtures().load("handler_errors").unwrap();
    match call(model.as_mut(), &[-1.0, 2.0]).unwrap_err() {
        Error::Python { model, error } => {
            assert_eq!(model, "handler_errors");
            assert_eq!(error.kind, "ValueError");
            assert_eq!(error.message, "negative input: -1.0");
            let tb = &error.traceback;
            assert!(tb.starts_with("Traceback (most recent call last)"), "{tb}");
            assert!(tb.contains("model.py") && tb.contains("in check"), "{tb}");
            assert!(
                tb.trim_end().ends_with("ValueError: negative input: -1.0"),
                "{tb}"
            );
        }
        other => panic!("expected a Python error, got {other}"),
    }
    let y = call(model.as_mut(), &[1.0, 2.0]).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![2.0, 3.0]);
}

#[test]
fn a_missing_output_or_a_wrong_dtype_names_the_output() {
    let mut model = fixtures().load("handler_errors").unwrap();
    let err = call(model.as_mut(), &[100.0, 0.0]).unwrap_err();
    assert!(matches!(err, Error::Inference { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("no output `Y` (its keys: `Z`)"), "{err}");
    let err = call(model.as_mut(), &[200.0, 0.0]).unwrap_err().to_string();
    assert!(
        err.contains("output `Y` is declared FP32 but the model returned torch.float64 (FP64)"),
        "{err}"
    );
    call(model.as_mut(), &[1.0, 2.0]).unwrap();
}

#[test]
fn a_pickle_is_refused_unless_trusted() {
    let err = fixtures().load("pickled").map(drop).unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("is not TorchScript"), "{err}");
    assert!(
        err.contains("runs arbitrary code") && err.contains("trust_pickle = true"),
        "{err}"
    );
}

#[test]
fn a_config_without_tensors_is_refused() {
    let mut ctx = fixtures().context("torchscript");
    ctx.config.outputs.clear();
    let err = torchbridge_python::load(&ctx)
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.toml must") && err.contains("`[[output]]`"),
        "{err}"
    );
}

#[test]
fn bytes_are_refused_for_a_module() {
    let mut ctx = fixtures().context("torchscript");
    ctx.config.inputs[0].datatype = torchbridge_core::DataType::Bytes;
    let err = torchbridge_python::load(&ctx)
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`X` is BYTES: only a model.py handler"),
        "{err}"
    );
}

/// The load error of a handler whose model.py is `code` (the fixture's config).
fn load_error_of(code: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = fixtures().context("handler_errors");
    std::fs::write(dir.path().join("model.py"), code).unwrap();
    ctx.form = torchbridge_core::ModelForm::PythonHandler(dir.path().join("model.py"));
    ctx.version_dir = dir.path().to_path_buf();
    torchbridge_python::load(&ctx)
        .map(drop)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_handler_that_fails_to_import_is_a_load_error_with_its_traceback() {
    let err = load_error_of("import no_such_module_here\n");
    assert!(
        err.contains("ModuleNotFoundError") && err.contains("no_such_module_here"),
        "{err}"
    );
    // Where it looked, and where to install it.
    assert!(
        err.contains("the embedded interpreter looked in: Python 3.") && err.contains("sys.path"),
        "{err}"
    );
    assert!(
        err.contains("install the package in the model's virtualenv"),
        "{err}"
    );
}

#[test]
fn a_handler_that_cannot_be_called_as_the_bridge_calls_it_is_refused_at_load() {
    let plain = "class Model:\n    def __init__(self, model_dir, config):\n        pass\n\n";
    for (code, needle) in [
        (
            "class Model:\n    def __init__(self):\n        pass\n\n    \
             def predict(self, inputs):\n        return inputs\n"
                .to_string(),
            "`Model(model_dir, config)` cannot be called so: its signature is ()",
        ),
        (
            format!("{plain}    async def predict(self, inputs):\n        return inputs\n"),
            "`Model.predict` is `async def`",
        ),
        (
            format!("{plain}    def predict(self, x, y):\n        return x\n"),
            "`Model.predict(inputs)` cannot be called so: its signature is (x, y)",
        ),
    ] {
        let err = load_error_of(&code);
        assert!(err.contains(needle), "{code}\n{err}");
    }
}

#[test]
fn a_missing_cuda_device_is_named() {
    let mut ctx = fixtures().context("torchscript");
    ctx.config.device = torchbridge_core::Device::Cuda(64);
    let err = torchbridge_python::load(&ctx)
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(err.contains("device `cuda:64` is not available"), "{err}");
}

#[test]
fn a_venv_for_another_python_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pyvenv.cfg"), "version = 3.9.18\n").unwrap();
    let mut ctx = fixtures().context("handler_errors");
    ctx.config.python_env = Some(dir.path().to_path_buf());
    let err = torchbridge_python::load(&ctx)
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("made for Python 3.9.18") && err.contains("embeds Python 3.11"),
        "{err}"
    );
    assert!(err.contains("`python_env` in config.toml"), "{err}");
}

//! Python exceptions as torchbridge errors.

use std::path::Path;

use pyo3::prelude::*;
use torchbridge_core::{Error, PythonError};

use crate::interpreter::glue;

/// A Python exception in parts: its type name, `str(e)` and the formatted traceback.
pub(crate) fn python_error(py: Python<'_>, err: &PyErr) -> PythonError {
    let kind = err
        .get_type(py)
        .qualname()
        .map_or_else(|_| "Exception".to_string(), |name| name.to_string());
    let message = err.value(py).str().map_or_else(
        |_| "<str() of the exception failed>".to_string(),
        |s| s.to_string(),
    );
    let traceback = glue(py)
        .and_then(|glue| glue.call_method1("format_exception", (err.value(py),)))
        .and_then(|text| text.extract::<String>())
        .unwrap_or_default();
    PythonError {
        kind,
        message,
        traceback,
    }
}

/// Whether the glue raised it because the model does not fit the config (a
/// `BridgeError`), rather than the model's own code failing.
fn is_bridge_error(py: Python<'_>, err: &PyErr) -> bool {
    glue(py)
        .and_then(|glue| glue.getattr("BridgeError"))
        .is_ok_and(|kind| err.is_instance(py, &kind))
}

/// What an exception during a call becomes: a `BridgeError` or a failed conversion is
/// an inference error; anything the model's code raised is a Python error.
pub(crate) fn call_error(py: Python<'_>, model: &str, err: &PyErr) -> Error {
    if is_bridge_error(py, err) {
        return Error::Inference {
            model: model.to_string(),
            message: err.value(py).to_string(),
        };
    }
    Error::Python {
        model: model.to_string(),
        error: python_error(py, err),
    }
}

/// The message of a load of `path` that raised: the glue's own message for a
/// `BridgeError`, else the exception with its traceback.
pub(crate) fn load_message(py: Python<'_>, path: &Path, err: &PyErr) -> String {
    if is_bridge_error(py, err) {
        return err.value(py).to_string();
    }
    let error = python_error(py, err);
    let hint = if err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
        let interpreter = glue(py)
            .and_then(|glue| glue.call_method0("interpreter"))
            .map_or_else(|e| e.to_string(), |i| i.to_string());
        format!(
            "\n(the embedded interpreter looked in: {interpreter}; install the package in the \
             model's virtualenv, named by `python_env` in config.toml or VIRTUAL_ENV)"
        )
    } else if error.message.contains("attempted relative import") {
        "\n(files beside model.py import by their plain names: `import helpers`, not \
         `from . import helpers`)"
            .to_string()
    } else {
        String::new()
    };
    format!("loading {} raised {error}{hint}", path.display())
}

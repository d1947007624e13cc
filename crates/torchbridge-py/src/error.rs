//! The one place a torchbridge [`Error`] becomes a Python exception.
//!
//! Every function the module exports returns [`PyResult`] (this module's alias), whose
//! error is either a torchbridge error or an exception pyo3 raised itself (a failed
//! argument conversion). The classes form a small tree under `TorchbridgeError`, so a
//! caller may catch broadly or by kind; the message is the Rust error's own text.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::{PyErr, create_exception};
use torchbridge::Error;

create_exception!(
    torchbridge,
    TorchbridgeError,
    PyException,
    "Base class of every error torchbridge raises."
);
create_exception!(
    torchbridge,
    ConfigError,
    TorchbridgeError,
    "The model directory or its config.toml is missing or wrong."
);
create_exception!(
    torchbridge,
    ModelError,
    TorchbridgeError,
    "The model failed to load through its bridge."
);
create_exception!(
    torchbridge,
    InferenceError,
    ModelError,
    "The model ran and failed (a Python exception in its code included)."
);
create_exception!(
    torchbridge,
    InvalidInputError,
    TorchbridgeError,
    "The inputs do not match the model's (name, datatype, shape)."
);
create_exception!(
    torchbridge,
    ModelNotFoundError,
    TorchbridgeError,
    "No such model or version."
);
create_exception!(
    torchbridge,
    UnavailableError,
    TorchbridgeError,
    "The model is not ready, or its workers have stopped."
);
create_exception!(
    torchbridge,
    OverloadedError,
    TorchbridgeError,
    "The model's batching queue is full; retry later."
);
create_exception!(
    torchbridge,
    DeadlineExceededError,
    TorchbridgeError,
    "The request's deadline passed before the model started it."
);

/// What the module's functions fail with.
#[derive(Debug)]
pub(crate) enum PyTbError {
    Torchbridge(Error),
    Python(PyErr),
}

pub(crate) type PyResult<T> = std::result::Result<T, PyTbError>;

impl From<Error> for PyTbError {
    fn from(error: Error) -> Self {
        PyTbError::Torchbridge(error)
    }
}

impl From<PyErr> for PyTbError {
    fn from(error: PyErr) -> Self {
        PyTbError::Python(error)
    }
}

impl From<PyTbError> for PyErr {
    fn from(error: PyTbError) -> Self {
        let error = match error {
            PyTbError::Python(error) => return error,
            PyTbError::Torchbridge(error) => error,
        };
        let message = error.to_string();
        match error {
            Error::Config { .. } => ConfigError::new_err(message),
            Error::Load { .. } => ModelError::new_err(message),
            Error::Inference { .. } | Error::Python { .. } | Error::Internal(_) => {
                InferenceError::new_err(message)
            }
            Error::InvalidInput(_) => InvalidInputError::new_err(message),
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } => {
                ModelNotFoundError::new_err(message)
            }
            Error::NotReady { .. } | Error::Unavailable(_) => UnavailableError::new_err(message),
            Error::Overloaded { .. } => OverloadedError::new_err(message),
            Error::Timeout { .. } | Error::DeadlineExceeded { .. } => {
                DeadlineExceededError::new_err(message)
            }
        }
    }
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> pyo3::PyResult<()> {
    let py = m.py();
    m.add("TorchbridgeError", py.get_type::<TorchbridgeError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("InferenceError", py.get_type::<InferenceError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("ModelNotFoundError", py.get_type::<ModelNotFoundError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("OverloadedError", py.get_type::<OverloadedError>())?;
    m.add(
        "DeadlineExceededError",
        py.get_type::<DeadlineExceededError>(),
    )?;
    Ok(())
}

//! Crossing between torchbridge tensors and the glue's Python values.
//!
//! In: each fixed-size input becomes an [`InputBuffer`] over its own bytes (no copy);
//! BYTES inputs become a list of `bytes`. Out: the glue hands back a numpy array over
//! each output's contiguous CPU memory (or `(buffer, shape)` for BYTES and 0-d
//! outputs), whose buffer is copied once into [`Bytes`].

use bytes::Bytes;
use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyList, PyTuple};
use torchbridge_core::{DataType, Error, Result, Tensor, TensorSpec};

use crate::input_buffer::InputBuffer;

/// The inputs as the glue's `Runner.run` takes them: `[(data, shape, aligned)]`.
pub(crate) fn inputs_to_python(py: Python<'_>, inputs: Vec<Tensor>) -> Result<Bound<'_, PyList>> {
    let converted = inputs
        .into_iter()
        .map(|tensor| input_to_python(py, tensor))
        .collect::<Result<Vec<_>>>()?;
    PyList::new(py, converted).map_err(|e| conversion_failed("the inputs", &e))
}

fn input_to_python(py: Python<'_>, tensor: Tensor) -> Result<Bound<'_, PyTuple>> {
    let failed = |e: PyErr| conversion_failed(&format!("input `{}`", tensor.name), &e);
    let shape = PyList::new(py, &tensor.shape).map_err(failed)?.into_any();
    let (data, aligned) = match tensor.datatype.size() {
        None => {
            let strings = tensor.strings()?;
            let items = strings.into_iter().map(|s| PyBytes::new(py, s));
            (PyList::new(py, items).map_err(failed)?.into_any(), true)
        }
        Some(_) if tensor.data.is_empty() => (py.None().into_bound(py), true),
        Some(size) => {
            tensor.check_bytes()?;
            if tensor.datatype == DataType::Bool && tensor.data.iter().any(|&b| b > 1) {
                return Err(Error::InvalidInput(format!(
                    "input `{}`: BOOL elements must be the bytes 0 or 1",
                    tensor.name
                )));
            }
            let aligned = (tensor.data.as_ptr() as usize).is_multiple_of(size);
            let owner = Bound::new(py, InputBuffer::new(tensor.data.clone()));
            (owner.map_err(failed)?.into_any(), aligned)
        }
    };
    let aligned = PyBool::new(py, aligned).to_owned().into_any();
    PyTuple::new(py, [data, shape, aligned]).map_err(failed)
}

/// The glue's outputs as tensors named and typed by `specs`.
pub(crate) fn outputs_from_python(
    result: &Bound<'_, PyAny>,
    specs: &[TensorSpec],
) -> Result<Vec<Tensor>, String> {
    let items: Vec<Bound<'_, PyAny>> = result
        .extract()
        .map_err(|e| format!("the bridge's glue returned an unexpected value: {e}"))?;
    if items.len() != specs.len() {
        return Err(format!(
            "the bridge's glue returned {} outputs for {} declared",
            items.len(),
            specs.len()
        ));
    }
    specs
        .iter()
        .zip(items)
        .map(|(spec, item)| {
            // BYTES and 0-d outputs come as (buffer, shape); the others as a buffer.
            let with_shape = spec.datatype == DataType::Bytes || item.is_instance_of::<PyTuple>();
            let (data, shape) = if with_shape {
                item.extract::<(Bound<'_, PyAny>, Vec<i64>)>()
                    .and_then(|(bytes, shape)| Ok((copy_out(&bytes)?.0, shape)))
            } else {
                copy_out(&item)
            }
            .map_err(|e| format!("output `{}` cannot be read: {e}", spec.name))?;
            Tensor::new(spec.name.clone(), spec.datatype, shape, data).map_err(|e| e.to_string())
        })
        .collect()
}

/// The one copy on the way out: a C-contiguous buffer's bytes into [`Bytes`], with
/// the buffer's shape.
fn copy_out(object: &Bound<'_, PyAny>) -> PyResult<(Bytes, Vec<i64>)> {
    let buffer = PyUntypedBuffer::get(object)?;
    if !buffer.is_c_contiguous() {
        return Err(PyBufferError::new_err("the buffer is not C-contiguous"));
    }
    let shape = buffer.shape().iter().map(|&d| d as i64).collect();
    let len = buffer.len_bytes();
    if len == 0 {
        return Ok((Bytes::new(), shape));
    }
    // SAFETY: the exporter keeps `len` contiguous bytes readable from `buf_ptr` for as
    // long as `buffer` is held (to the end of this function).
    let bytes = unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), len) };
    Ok((Bytes::copy_from_slice(bytes), shape))
}

fn conversion_failed(what: &str, err: &PyErr) -> Error {
    Error::InvalidInput(format!("{what} cannot be handed to Python: {err}"))
}

//! `torchbridge._native.Model`: a loaded model, called with raw tensors.
//!
//! The Python class `torchbridge.Model` wraps this one and does the numpy side; here
//! each tensor is a `(name, datatype, shape, buffer)` tuple.

use std::path::PathBuf;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyByteArray;
use torchbridge::{BackendKind, DataType, Error, Model, ModelMetadata, Tensor};

use crate::error::PyResult;

/// A tensor as it crosses: name, KServe datatype, shape, little-endian bytes.
type RawTensor<B> = (String, String, Vec<i64>, B);

/// A model loaded through one bridge: instances on torchbridge's threads, behind the
/// batching scheduler when its config has `[batching]`. Safe to call from many threads.
#[pyclass(name = "Model", module = "torchbridge._native", frozen)]
pub(crate) struct PyModel {
    model: Model,
}

#[pymethods]
impl PyModel {
    /// Loads the highest version of the model at `path`, through `bridge` or the one its
    /// config.toml names.
    #[staticmethod]
    #[pyo3(signature = (path, bridge = None))]
    fn load(py: Python<'_>, path: PathBuf, bridge: Option<&str>) -> PyResult<Self> {
        let bridge = bridge
            .map(|b| {
                b.parse::<BackendKind>().map_err(|message| Error::Config {
                    path: path.clone(),
                    message: format!("bridge={b:?}: {message}"),
                })
            })
            .transpose()?;
        let model = py.detach(|| match bridge {
            Some(bridge) => Model::load_with(&path, bridge),
            None => Model::load(&path),
        })?;
        Ok(PyModel { model })
    }

    /// Runs one call; blocks this thread (without the GIL) until the model answers.
    fn infer(
        &self,
        py: Python<'_>,
        inputs: Vec<RawTensor<PyBackedBytes>>,
    ) -> PyResult<Vec<RawTensor<Py<PyByteArray>>>> {
        let tensors = inputs
            .into_iter()
            .map(|(name, datatype, shape, data)| {
                let datatype = datatype
                    .parse::<DataType>()
                    .map_err(|message| Error::InvalidInput(format!("input `{name}`: {message}")))?;
                Tensor::new(name, datatype, shape, Bytes::from_owner(data))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        // Counted while detached: the exit hook waits for this thread to attach again
        // (attaching while the interpreter finalizes would end it mid-frame).
        let passage = torchbridge_python::enter_interpreter().ok_or_else(|| Error::Inference {
            model: self.model.metadata().name.clone(),
            message: "the Python interpreter is exiting".into(),
        })?;
        let outputs = py.detach(|| self.model.infer(tensors))?;
        drop(passage);
        Ok(outputs
            .into_iter()
            .map(|t| {
                let data = PyByteArray::new(py, &t.data).unbind();
                (t.name, t.datatype.as_str().to_string(), t.shape, data)
            })
            .collect())
    }

    /// `(name, datatype, shape)` of each input; shape has -1 in front when it batches.
    #[getter]
    fn inputs(&self) -> Vec<(String, String, Vec<i64>)> {
        specs(self.model.metadata(), true)
    }

    /// `(name, datatype, shape)` of each output.
    #[getter]
    fn outputs(&self) -> Vec<(String, String, Vec<i64>)> {
        specs(self.model.metadata(), false)
    }

    #[getter]
    fn name(&self) -> String {
        self.model.metadata().name.clone()
    }

    #[getter]
    fn version(&self) -> u64 {
        self.model.metadata().version
    }

    #[getter]
    fn bridge(&self) -> &'static str {
        self.model.bridge().as_str()
    }

    #[getter]
    fn max_batch_size(&self) -> u32 {
        self.model.metadata().max_batch_size
    }
}

fn specs(meta: &ModelMetadata, inputs: bool) -> Vec<(String, String, Vec<i64>)> {
    let list = if inputs { &meta.inputs } else { &meta.outputs };
    list.iter()
        .map(|s| {
            let shape = meta.full_shape(s);
            (s.name.clone(), s.datatype.as_str().to_string(), shape)
        })
        .collect()
}

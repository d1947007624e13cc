//! The python bridge: any PyTorch model — a `model.py` handler, a TorchScript file, a
//! `torch.save`d module or a `torch.export` program — run by CPython embedded in this
//! process.
//!
//! Why it is built this way:
//!
//! - **One embedded interpreter per process.** pyo3 links libpython; the interpreter
//!   starts on the first load and is shared by every model and instance. CPython cannot
//!   host two torch imports side by side, so there is no per-model interpreter.
//! - **Virtualenv discovery is ours.** An embedded interpreter does not find a
//!   virtualenv by itself (it guesses its home from whatever `python3` is on PATH).
//!   The model's virtualenv (`python_env` in config.toml, else `VIRTUAL_ENV`, else the
//!   build's default) is checked against the embedded Python version (pyvenv.cfg),
//!   and the interpreter is started as that venv's `bin/python` through `PyConfig`,
//!   so CPython sets up `sys.prefix`, site-packages and isolation exactly as the venv's
//!   own python would. A later model naming another virtualenv gets its site-packages
//!   appended with `site.addsitedir` (one interpreter per process).
//! - **The Python side is Python.** A small embedded module (`glue.py`) loads models
//!   and runs them under `torch.inference_mode()`; Rust makes one call per batch
//!   instead of long chains of attribute lookups.
//! - **Zero-copy in, one copy out.** Each input's bytes are lent to Python by an
//!   `InputBuffer` owner that implements the buffer protocol (read-only);
//!   `torch.frombuffer` views it, and the tensor keeps the owner alive. An input whose
//!   address is not aligned for its dtype is copied (that one only). Each output is
//!   made contiguous on the CPU and copied once from its numpy buffer into `Bytes`.
//!   Inputs are views of request memory: a model must not modify them in place.
//! - **The GIL only per call.** A backend holds `Py` handles and is `Send`; it attaches
//!   to the interpreter for the length of one load or one batch and never waits on
//!   anything else while attached. torch releases the GIL inside its ops, so several
//!   instances overlap their compute.
//! - **A handler is an ordinary module.** `model.py` is imported under a module name
//!   unique to the load, with its version directory on `sys.path` only while it is
//!   imported (so helpers beside it import, and never shadow another model's later).
//! - **Exceptions are values.** A Python exception in the model's code becomes
//!   [`Error::Python`] with its type, message and traceback; the interpreter stays
//!   usable for the next call. Nothing here panics across the boundary.

mod backend;
mod convert;
mod errors;
mod exit;
mod input_buffer;
mod interpreter;
mod venv;

pub use exit::{Passage, close as close_for_exit, enter as enter_interpreter};
use torchbridge_core::{Backend, Error, LoadContext, Result};

/// Loads `ctx.form` (model.py, model.pt or model.pt2) as one instance of the model, on
/// the config's device, in eval mode. Starts the interpreter on first use.
pub fn load(ctx: &LoadContext) -> Result<Box<dyn Backend>> {
    Ok(Box::new(backend::PythonBackend::load(ctx)?))
}

/// Serves a callable of the running interpreter (a function or an `nn.Module`) as one
/// instance of the model `metadata` describes: each batch calls it with the input
/// tensors in declared order, under `torch.inference_mode()`; it returns a tensor (one
/// output), a tuple or list in declared order, or a dict by output name, of tensors or
/// numpy arrays. For `torchbridge.serve` in the Python package.
pub fn callable_backend(
    metadata: torchbridge_core::ModelMetadata,
    callable: &pyo3::Py<pyo3::PyAny>,
) -> Result<Box<dyn Backend>> {
    Ok(Box::new(backend::PythonBackend::from_callable(
        metadata, callable,
    )?))
}

/// `torch.__version__` as seen by the embedded interpreter (initialising it if needed,
/// with `VIRTUAL_ENV` or the build's default virtualenv), for server metadata.
pub fn torch_version() -> Result<String> {
    interpreter::prepare(None).map_err(|message| Error::Load {
        model: "torch".into(),
        bridge: "python",
        message,
    })
}

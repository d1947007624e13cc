//! The onnx bridge: models exported from PyTorch to `.onnx`, run by ONNX Runtime
//! through the `ort` crate, with no Python at run time.
//!
//! Why it is built this way:
//!
//! - **Loaded at run time, never downloaded at build time.** `ort` is built with
//!   `load-dynamic`: the build links nothing and fetches nothing, and the process opens
//!   `libonnxruntime` when the first model loads — from `ORT_DYLIB_PATH`, else from the
//!   `onnxruntime` pip wheel in the model's virtualenv (`python_env`, then `VIRTUAL_ENV`,
//!   then the project's `.venv` baked in at build time). The runtime is the one the team
//!   already validated their export with in Python.
//! - **The version is checked before `ort` sees the library.** `ort` panics on a library
//!   it cannot use; here the library is opened first, `OrtGetApiBase()->GetVersionString()`
//!   is read and compared with the minimum the compiled API level needs, so a missing,
//!   foreign or too-old library is a load error that says what to install.
//! - **Inputs are borrowed.** The batch's contiguous buffers become ONNX Runtime tensors
//!   in place (a copy only for a buffer not aligned for its element type, or for strings);
//!   outputs are copied once out of ONNX Runtime's memory into the reply.
//! - **One runtime per process, one session per instance.** The ONNX Runtime
//!   environment is started once; each backend instance owns its session and its
//!   intra-op thread pool, and runs on the thread torchbridge gives it.

mod backend;
mod model;
mod runtime;
mod values;

use torchbridge_core::{Backend, Error, LoadContext, Result};

/// Loads the model `ctx` names (`ModelForm::Onnx`) into an ONNX Runtime session on the
/// CPU, starting ONNX Runtime first if this is the process's first ONNX model.
pub fn load(ctx: &LoadContext) -> Result<Box<dyn Backend>> {
    Ok(Box::new(backend::OnnxBackend::load(ctx)?))
}

/// The ONNX Runtime version in use (initialising the runtime if needed), for server metadata.
///
/// When no model has started the runtime yet, the library is looked for without a
/// `python_env`: `ORT_DYLIB_PATH`, `VIRTUAL_ENV`, then the build's default virtualenv.
pub fn runtime_version() -> Result<String> {
    runtime::runtime(None)
        .map(|r| r.version.clone())
        .map_err(|message| Error::Load {
            model: "onnxruntime".to_string(),
            bridge: backend::BRIDGE,
            message,
        })
}

//! The torchscript bridge: TorchScript modules (`torch.jit.script` / `trace` → `model.pt`)
//! run by libtorch in this process, with no Python at run time.
//!
//! Why it is built this way:
//!
//! - **tch rather than our own C++.** tch's `CModule` and `IValue` already wrap
//!   `torch::jit::load` and `forward`, turn C++ exceptions into `Result`s, and are kept
//!   in step with libtorch releases (tch 0.26 ⇔ torch 2.13.0). A C++ shim of our own
//!   would add a second build system for no gain.
//! - **Positional inputs, declared outputs.** A TorchScript file does not name its
//!   tensors for a caller, so the model's `config.toml` must declare `[[input]]` and
//!   `[[output]]`: inputs go to `forward` in that order; outputs are taken from a tensor,
//!   a tuple or list (in order) or a dict (by name).
//! - **One copy in, one copy out.** Each input's bytes are copied once into a libtorch
//!   tensor (or straight to the GPU); each output is copied once from contiguous CPU
//!   memory into the response buffer. Borrowing the request buffer instead would hand
//!   libtorch unaligned memory that a module could keep past the call.
//! - **Threads are process-global.** libtorch keeps one intra-op thread count for the
//!   whole process; an instance re-applies its `threads` on its own thread before each
//!   call (see `TorchScriptBackend::keep_threads`).

mod backend;
mod convert;
mod errors;
mod kinds;

use torchbridge_core::{Backend, LoadContext, Result};

/// Loads `ctx.form` (a TorchScript file) as one instance of the model, on the config's
/// device, in eval mode.
pub fn load(ctx: &LoadContext) -> Result<Box<dyn Backend>> {
    Ok(Box::new(backend::TorchScriptBackend::load(ctx)?))
}

/// libtorch's version string (e.g. `2.13.0+cu130`), for server metadata: the torch
/// installation this crate was built against, which tch requires at run time too.
pub fn libtorch_version() -> String {
    option_env!("TORCHBRIDGE_LIBTORCH_VERSION")
        .unwrap_or("unknown")
        .to_string()
}

//! `torchbridge._native`: the Rust half of the `torchbridge` Python package (Python
//! calls Rust). The package's Python half (`python/torchbridge/`) converts numpy arrays
//! and holds the exporter; this module loads and runs models through the facade crate.
//!
//! Why it is built this way:
//!
//! - **Bytes across, not arrays.** Python hands each input over as `(name, datatype,
//!   shape, bytes)`; the `bytes` object becomes the tensor's buffer without a copy (a
//!   [`bytes::Bytes`] that owns the Python object). Outputs come back as `bytearray`s
//!   that numpy views in place. No numpy C-API dependency, so one build fits any numpy.
//! - **The GIL is released while Rust waits.** Loading and inference run under
//!   `py.detach`: the model's instances run on torchbridge's own threads, and the python
//!   bridge's instances need the GIL there — holding it here would deadlock them.
//! - **One error conversion** (`error.rs`): every torchbridge error becomes an
//!   exception of a specific class under `TorchbridgeError`.
//! - **The host's interpreter is the interpreter.** Imported from Python, the python
//!   bridge finds CPython already running and uses it as it is.
//! - **`serve` is the same server.** A Python callable becomes the python bridge's
//!   backend (`server.rs`) in a one-model registry served by `torchbridge_server::serve`
//!   on a thread of its own: the routes, batching and statistics are those of
//!   `torchbridge serve`; the GIL is taken only for the callable's calls.

mod error;
mod model;
mod server;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    error::register(m)?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<server::PyServer>()?;
    m.add_function(wrap_pyfunction!(server::init_logging, m)?)?;
    m.add_function(wrap_pyfunction!(server::close_for_exit, m)?)?;
    m.add_function(wrap_pyfunction!(server::on_instance_thread, m)?)?;
    m.add(
        "compiled_bridges",
        torchbridge::compiled_bridges()
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}

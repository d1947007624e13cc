//! The zero-copy way in: Rust-owned input bytes that Python reads in place.

use std::ffi::{c_int, c_void};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::{PyErr, ffi};

/// One input tensor's bytes, lent to Python through the buffer protocol (read-only).
///
/// `torch.frombuffer(owner, dtype=torch.uint8)` makes a tensor over this memory and
/// holds a reference to the owner for as long as the tensor (or any view of it)
/// lives, so the [`Bytes`] — a refcounted slice of the request buffer — stay valid
/// even if a model keeps its input past the call. `Bytes` never move or change their
/// contents, which is what makes lending the pointer sound.
#[pyclass(frozen, name = "InputBuffer", module = "torchbridge")]
#[derive(Debug)]
pub(crate) struct InputBuffer {
    data: Bytes,
}

impl InputBuffer {
    pub(crate) fn new(data: Bytes) -> Self {
        InputBuffer { data }
    }
}

#[pymethods]
impl InputBuffer {
    /// Fills `view` as a 1-D, read-only buffer of unsigned bytes; a request for a
    /// writable buffer fails with `BufferError`.
    ///
    /// # Safety
    /// Called by CPython with a valid (or null) `view`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let data = &slf.get().data;
        let len = ffi::Py_ssize_t::try_from(data.len())?;
        // SAFETY: `PyBuffer_FillInfo` checks `view` for null and the flags, takes a new
        // reference to `slf` into `view.obj`, and points `view.buf` at `data`, which
        // `slf` owns and never mutates (readonly = 1), so the memory outlives the view.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr().cast_mut().cast::<c_void>(),
                len,
                1,
                flags,
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }
}

//! The one embedded interpreter of the process: starting it as the model's
//! virtualenv's python, adding later virtualenvs, and the glue module the bridge calls.

use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;
use pyo3::{ffi, sync::PyOnceLock};

use crate::errors::python_error;
use crate::venv::Venv;

static GLUE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The bridge's Python module (`glue.py`), created on first use.
pub(crate) fn glue(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    let module = GLUE.get_or_try_init(py, || {
        let source = CString::new(include_str!("glue.py"))?;
        PyResult::Ok(
            PyModule::from_code(py, &source, c"torchbridge_glue.py", c"torchbridge_glue")?.unbind(),
        )
    })?;
    Ok(module.bind(py))
}

/// Makes the interpreter ready for a model whose virtualenv is `configured`
/// (`python_env` in config.toml), else `VIRTUAL_ENV`, else the build's default
/// (`TORCHBRIDGE_DEFAULT_VENV`, the checkout's `.venv`) where that exists: checks the
/// virtualenv, starts the interpreter if this process has none yet, puts the
/// virtualenv's site-packages on its path and imports torch. Returns torch's version.
pub(crate) fn prepare(configured: Option<&Path>) -> Result<String, String> {
    let venv = match chosen_venv(configured) {
        Some((path, source)) => Some(
            Venv::check(&path, embedded_version())
                .map_err(|e| format!("{e} (the virtualenv is {source})"))?,
        ),
        None => None,
    };
    start(venv.as_ref())?;
    Python::attach(|py| {
        let glue = glue(py).map_err(|e| format!("the bridge's glue module failed: {e}"))?;
        if let Some(venv) = &venv {
            glue.call_method1("use_venv", (&venv.path, &venv.site_packages))
                .map_err(|e| format!("cannot add the virtualenv {}: {e}", venv.path.display()))?;
        }
        glue.call_method0("torch_version")
            .and_then(|v| v.extract::<String>())
            .map_err(|e| {
                let error = python_error(py, &e);
                let interpreter = glue
                    .call_method0("interpreter")
                    .map_or_else(|e| e.to_string(), |i| i.to_string());
                format!(
                    "cannot import torch ({}: {}); the embedded interpreter is {interpreter}. \
                     Install torch in the model's virtualenv, or name the virtualenv that \
                     has it with `python_env` in config.toml or VIRTUAL_ENV",
                    error.kind, error.message
                )
            })
    })
}

fn chosen_venv(configured: Option<&Path>) -> Option<(PathBuf, &'static str)> {
    if let Some(path) = configured {
        return Some((path.to_path_buf(), "`python_env` in config.toml"));
    }
    // Imported from Python (the `torchbridge` package): the host's interpreter already
    // has its own environment; only an explicit `python_env` adds another.
    if hosted() {
        return None;
    }
    if let Some(path) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        return Some((path.into(), "VIRTUAL_ENV"));
    }
    option_env!("TORCHBRIDGE_DEFAULT_VENV")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .map(|p| (p, "the build's default, TORCHBRIDGE_DEFAULT_VENV"))
}

/// Whether Python was running before torchbridge first looked (the process is a Python
/// program that imported torchbridge), decided on the first call.
fn hosted() -> bool {
    static HOSTED: OnceLock<bool> = OnceLock::new();
    // SAFETY: Py_IsInitialized may be called at any time.
    *HOSTED.get_or_init(|| unsafe { ffi::Py_IsInitialized() } != 0)
}

/// The (major, minor) version of the linked libpython; callable before it starts.
///
/// Read once: `Py_GetVersion` (CPython 3.11 at least) rewrites a static buffer on every
/// call, so instances loading on several threads at once could read it half-written
/// (seen as "embeds Python 0.0" with `instances = 2`).
fn embedded_version() -> (u8, u8) {
    static VERSION: OnceLock<(u8, u8)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        // SAFETY: Py_GetVersion returns a static NUL-terminated string and is documented
        // as safe to call before the interpreter is initialised; OnceLock makes this the
        // only call.
        let version = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
        let mut parts = version.split(['.', ' ']).map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    })
}

/// Starts the interpreter once per process; later calls return the first outcome. A
/// process that already runs Python (torchbridge imported from Python) keeps its own.
fn start(first_venv: Option<&Venv>) -> Result<(), String> {
    static STARTED: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut started = STARTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(outcome) = started.as_ref() {
        return outcome.clone();
    }
    let outcome = if hosted() {
        Ok(())
    } else {
        initialize(first_venv.and_then(|v| v.python.as_deref()))
    };
    tracing::debug!(venv = ?first_venv.map(|v| &v.path), ?outcome, "embedded Python started");
    started.insert(outcome).clone()
}

/// `Py_InitializeFromConfig`, as the venv's python when there is one.
///
/// CPython finds its stdlib and site-packages from the path of the program it thinks
/// it is. Embedded, that is `python3` looked up on PATH, so by default the process
/// would pick up whichever Python (or venv) happens to be first on PATH. Instead the
/// interpreter is told it is `<venv>/bin/python`: it then reads the venv's pyvenv.cfg
/// as that program would (base stdlib from `home`, `sys.prefix` = the venv, its
/// site-packages, the base site-packages hidden unless the venv includes them). With
/// no venv it is the build's base interpreter (`TORCHBRIDGE_PYTHON_BASE`). Signal
/// handlers stay the host's.
fn initialize(venv_python: Option<&Path>) -> Result<(), String> {
    let base = option_env!("TORCHBRIDGE_PYTHON_BASE").map(Path::new);
    let program = venv_python.or(base).filter(|p| p.is_file());
    let program = program
        .map(|p| CString::new(p.to_string_lossy().as_bytes()))
        .transpose()
        .map_err(|_| format!("{program:?} holds a NUL byte"))?;
    // SAFETY: `config` is initialised by PyConfig_InitPythonConfig before any use and
    // cleared after; the string is NUL-terminated and copied by PyConfig_SetBytesString;
    // the thread that initialised the interpreter holds the GIL afterwards and releases
    // it with PyEval_SaveThread, as pyo3's own start does.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.as_mut_ptr();
        (*config).install_signal_handlers = 0;
        let mut status = ffi::PyStatus_Ok();
        if let Some(program) = &program {
            let field = &raw mut (*config).executable;
            status = ffi::PyConfig_SetBytesString(config, field, program.as_ptr());
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(config);
        }
        ffi::PyConfig_Clear(config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(format!(
                "the embedded Python failed to start as {program:?} ({}: {})",
                c_str_or(status.func, "Py_InitializeFromConfig"),
                c_str_or(status.err_msg, "no message"),
            ));
        }
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// # Safety
/// `ptr` is null or a NUL-terminated string.
unsafe fn c_str_or(ptr: *const c_char, default: &str) -> String {
    if ptr.is_null() {
        default.to_string()
    } else {
        // SAFETY: per the contract, a non-null `ptr` is NUL-terminated.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

//! Finding ONNX Runtime's shared library, checking its version, and starting it once
//! per process.
//!
//! ort's own loader panics on a library it cannot use, so the library is opened and its
//! version read here first; every failure becomes a message that says what was searched,
//! what was found and how to fix it.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use ort::environment::Environment;

/// The oldest ONNX Runtime minor version (1.x) this build can drive: ort calls the C API
/// at the version its `api-NN` feature names, and older libraries do not provide it.
pub(crate) const MINIMUM_MINOR: u32 = ort::MINOR_VERSION;

/// The project's virtualenv, baked in at build time by `.cargo/config.toml`.
const BUILD_DEFAULT_VENV: Option<&str> = option_env!("TORCHBRIDGE_DEFAULT_VENV");

/// ONNX Runtime, started: the environment every session of the process is made in.
pub(crate) struct Runtime {
    pub environment: Environment,
    pub library: PathBuf,
    pub version: String,
}

impl Runtime {
    /// Whether the library was loaded from under `dir` (e.g. a model's virtualenv).
    pub fn is_inside(&self, dir: &Path) -> bool {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        canonical(&self.library).starts_with(canonical(dir))
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Held while starting, so two first loads do not race; a failed start is not
/// remembered, so a later load can succeed once the library is installed.
static STARTING: Mutex<()> = Mutex::new(());

/// The process's ONNX Runtime, started on first use from the library that
/// [`LibrarySearch::for_process`] finds.
pub(crate) fn runtime(python_env: Option<&Path>) -> Result<&'static Runtime, String> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let library = LibrarySearch::for_process(python_env).find()?;
    let version = check_library(&library)?;
    let environment = ort::init_from(&library)
        .map_err(|e| format!("ort refused the ONNX Runtime library: {e}"))?
        .with_name("torchbridge")
        .with_telemetry(false)
        .build()
        .map_err(|e| {
            format!(
                "cannot start ONNX Runtime {version} from `{}`: {e}",
                library.display()
            )
        })?;
    tracing::info!(library = %library.display(), %version, "started ONNX Runtime");
    Ok(RUNTIME.get_or_init(|| Runtime {
        environment,
        library,
        version,
    }))
}

const HOW_TO_FIX: &str = "Install it with `pip install onnxruntime` in the model's virtualenv \
     (named by `python_env` in config.toml, else VIRTUAL_ENV), or set ORT_DYLIB_PATH to a \
     libonnxruntime shared library";

/// Where the ONNX Runtime library is looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LibrarySearch {
    /// `ORT_DYLIB_PATH`: when set, the library itself, and nothing else is tried.
    pub dylib_path: Option<PathBuf>,
    /// Virtualenvs whose `onnxruntime` package may hold the library, in order, each
    /// with what named it (for messages).
    pub venvs: Vec<(&'static str, PathBuf)>,
}

impl LibrarySearch {
    /// `ORT_DYLIB_PATH`; else the model's `python_env`, `VIRTUAL_ENV`, and the build's
    /// default virtualenv, in that order.
    pub fn for_process(python_env: Option<&Path>) -> Self {
        let env_path = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let venvs = [
            (
                "`python_env` in config.toml",
                python_env.map(Path::to_path_buf),
            ),
            ("VIRTUAL_ENV", env_path("VIRTUAL_ENV")),
            (
                "the build's default virtualenv",
                BUILD_DEFAULT_VENV.map(PathBuf::from),
            ),
        ];
        LibrarySearch {
            dylib_path: env_path("ORT_DYLIB_PATH"),
            venvs: venvs
                .into_iter()
                .filter_map(|(named_by, venv)| Some((named_by, venv?)))
                .collect(),
        }
    }

    /// The library to load, or a message listing every place searched.
    pub fn find(&self) -> Result<PathBuf, String> {
        if let Some(path) = &self.dylib_path {
            return std::fs::canonicalize(path).ok().filter(|p| p.is_file()).ok_or_else(|| {
                format!(
                    "ORT_DYLIB_PATH is `{}`, which is not a file. Point it at libonnxruntime \
                     (1.{MINIMUM_MINOR} or newer), or unset it to use the `onnxruntime` Python package",
                    path.display()
                )
            });
        }
        if let Some(found) = self.venvs.iter().find_map(|(_, venv)| wheel_library(venv)) {
            return Ok(found);
        }
        let searched: Vec<String> = self
            .venvs
            .iter()
            .map(|(named_by, venv)| format!("{} ({named_by})", capi_pattern(venv).display()))
            .collect();
        let searched = if searched.is_empty() {
            "no virtualenv was named".to_string()
        } else {
            format!("searched {}", searched.join(", "))
        };
        Err(format!(
            "found no ONNX Runtime library: ORT_DYLIB_PATH is not set and no virtualenv holds the \
             `onnxruntime` package ({searched}). {HOW_TO_FIX}"
        ))
    }
}

/// The glob [`wheel_library`] searches, for messages.
fn capi_pattern(venv: &Path) -> PathBuf {
    let site_packages = if cfg!(windows) {
        "Lib/site-packages"
    } else {
        "lib/python*/site-packages"
    };
    let library = format!(
        "{}onnxruntime.*{}*",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    venv.join(site_packages)
        .join("onnxruntime/capi")
        .join(library)
}

/// The library inside the `onnxruntime` wheel installed in `venv`, if any.
fn wheel_library(venv: &Path) -> Option<PathBuf> {
    let mut site_packages = vec![venv.join("Lib").join("site-packages")];
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        site_packages.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
                .map(|e| e.path().join("site-packages")),
        );
    }
    site_packages.sort();
    site_packages
        .iter()
        .find_map(|dir| library_in(&dir.join("onnxruntime").join("capi")))
}

/// `libonnxruntime.so.1.31.1` (or `.dylib`, `.dll`) in `capi`, but not the providers' libraries.
fn library_in(capi: &Path) -> Option<PathBuf> {
    let stem = format!("{}onnxruntime.", std::env::consts::DLL_PREFIX);
    std::fs::read_dir(capi)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&stem) && name.contains(std::env::consts::DLL_SUFFIX)
        })
        .map(|e| e.path())
        .min()
}

/// Opens `path`, reads ONNX Runtime's version from it and checks it is new enough.
pub(crate) fn check_library(path: &Path) -> Result<String, String> {
    // SAFETY: loading runs the library's initialisers; this is the library about to be
    // handed to ort, whose loader would open it the same way.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        // libloading's message is "dlopen failed"; the loader's own reason is its source.
        let reason =
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        format!(
            "cannot load `{}` as ONNX Runtime: {reason}. {HOW_TO_FIX}",
            path.display()
        )
    })?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
    let get_api_base = unsafe { library.get::<GetApiBase>(b"OrtGetApiBase") }.map_err(|_| {
        format!(
            "`{}` is not ONNX Runtime: it exports no `OrtGetApiBase`. {HOW_TO_FIX}",
            path.display()
        )
    })?;
    // SAFETY: the API base is a static table; `GetVersionString` returns a static,
    // NUL-terminated string. Both are checked for null before use.
    let version = unsafe {
        let base = get_api_base();
        let text = if base.is_null() {
            std::ptr::null()
        } else {
            ((*base).GetVersionString)()
        };
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    }
    .ok_or_else(|| format!("`{}` returned no ONNX Runtime version", path.display()))?;
    check_version(&version).map_err(|problem| {
        format!(
            "`{}` is ONNX Runtime {version}: {problem}. {HOW_TO_FIX}",
            path.display()
        )
    })?;
    Ok(version)
}

/// Accepts ONNX Runtime 1.x from 1.[`MINIMUM_MINOR`] on.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    let mut numbers = version.trim().split('.').map(str::parse::<u32>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(1)), Some(Ok(minor))) if minor >= MINIMUM_MINOR => Ok(()),
        (Some(Ok(_)), Some(Ok(_))) => Err(format!(
            "this build needs ONNX Runtime 1.{MINIMUM_MINOR} or a newer 1.x (`pip install --upgrade onnxruntime`)"
        )),
        _ => Err(format!("`{version}` is not a version number")),
    }
}

#[cfg(test)]
mod tests;

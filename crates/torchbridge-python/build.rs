//! - This crate's test binaries find the shared libpython that pyo3 linked against
//!   through an rpath, so they start without LD_LIBRARY_PATH. (Binaries of other
//!   crates emit their own; see `crates/torchbridge/build.rs`.)
//! - `TORCHBRIDGE_PYTHON_BASE`: the base interpreter of that Python (`sys._base_executable`,
//!   beside the stdlib matching the linked libpython). The embedded interpreter starts
//!   as that program when no virtualenv is in play, instead of as whatever `python3`
//!   is first on PATH at run time.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        // Read by dependents as DEP_TORCHBRIDGE_PYTHON_LIBPYTHON_DIR (`links` below).
        println!("cargo:libpython_dir={dir}");
    }
    let base = config.executable().and_then(|python| {
        let output = Command::new(python)
            .args(["-c", "import sys; print(sys._base_executable)"])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8(output.stdout).ok())?
    });
    if let Some(base) = base {
        println!("cargo:rustc-env=TORCHBRIDGE_PYTHON_BASE={}", base.trim());
    }
}

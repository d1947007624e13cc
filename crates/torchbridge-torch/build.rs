//! Lets this crate's own tests find libtorch without LD_LIBRARY_PATH, and records the
//! version of the libtorch that torch-sys built against for `libtorch_version()`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    let version = libtorch_version(Path::new(&dir)).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TORCHBRIDGE_LIBTORCH_VERSION={version}");
}

/// `torch/version.py` beside a pip torch's `lib/`, or `build-version` in a libtorch zip.
fn libtorch_version(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    let version_py = root.join("version.py");
    let build_version = root.join("build-version");
    for file in [&version_py, &build_version] {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    if let Ok(text) = std::fs::read_to_string(&version_py) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        let value = line.split_once('=')?.1.trim();
        return Some(value.trim_matches(|c| c == '\'' || c == '"').to_string());
    }
    let text = std::fs::read_to_string(&build_version).ok()?;
    Some(text.trim().to_string())
}

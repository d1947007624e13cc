//! Binaries, tests and examples of this crate find libtorch and libpython at run time
//! through an rpath, so users never set LD_LIBRARY_PATH.
fn main() {
    // Printed by torch-sys (`links = "tch"`), a direct dependency for this reason.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    // Printed by torchbridge-python (`links = "torchbridge_python"`).
    if let Ok(dir) = std::env::var("DEP_TORCHBRIDGE_PYTHON_LIBPYTHON_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

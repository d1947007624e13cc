//! The extension module is loaded into a running Python, so libpython is already there;
//! libtorch is loaded by `import torch`, which `torchbridge/__init__.py` does first. The
//! rpath to torch's `lib/` is a second line of defence for an import that skips it.
fn main() {
    // Printed by torch-sys (`links = "tch"`), a direct dependency for this reason.
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}

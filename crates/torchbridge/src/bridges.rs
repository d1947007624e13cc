//! The one place that knows which bridge crates were compiled in.

use torchbridge_core::{Backend, BackendKind, Error, LoadContext, Result};

/// Loads one backend instance through `bridge`.
pub(crate) fn load_backend(ctx: &LoadContext, bridge: BackendKind) -> Result<Box<dyn Backend>> {
    match bridge {
        #[cfg(feature = "python")]
        BackendKind::Python => torchbridge_python::load(ctx),
        #[cfg(feature = "torchscript")]
        BackendKind::Torchscript => torchbridge_torch::load(ctx),
        #[cfg(feature = "onnx")]
        BackendKind::Onnx => torchbridge_onnx::load(ctx),
        #[cfg(feature = "tract")]
        BackendKind::Tract => torchbridge_native::load(ctx),
        #[cfg(feature = "candle")]
        BackendKind::Candle => torchbridge_native::load_candle(ctx),
        #[allow(unreachable_patterns)]
        other => Err(Error::Load {
            model: ctx.model.clone(),
            bridge: other.as_str(),
            message: format!(
                "this build of torchbridge does not include the {other} bridge (cargo \
                 feature `{other}`; the Python package: built with `--features native`)"
            ),
        }),
    }
}

/// The bridges this build can load.
pub fn compiled_bridges() -> Vec<BackendKind> {
    let mut bridges = Vec::new();
    if cfg!(feature = "python") {
        bridges.push(BackendKind::Python);
    }
    if cfg!(feature = "torchscript") {
        bridges.push(BackendKind::Torchscript);
    }
    if cfg!(feature = "onnx") {
        bridges.push(BackendKind::Onnx);
    }
    if cfg!(feature = "tract") {
        bridges.push(BackendKind::Tract);
    }
    if cfg!(feature = "candle") {
        bridges.push(BackendKind::Candle);
    }
    bridges
}

/// The engines' own versions, as `(name, version or the reason it is unknown)`.
// Which pushes exist depends on the features, hence no `vec![]`.
#[allow(unused_mut, clippy::vec_init_then_push)]
pub fn runtime_versions() -> Vec<(&'static str, String)> {
    let mut versions = Vec::new();
    #[cfg(feature = "python")]
    versions.push((
        "torch",
        torchbridge_python::torch_version().unwrap_or_else(|e| e.to_string()),
    ));
    #[cfg(feature = "torchscript")]
    versions.push(("libtorch", torchbridge_torch::libtorch_version()));
    #[cfg(feature = "onnx")]
    versions.push((
        "onnxruntime",
        torchbridge_onnx::runtime_version().unwrap_or_else(|e| e.to_string()),
    ));
    #[cfg(feature = "tract")]
    versions.push(("tract", torchbridge_native::tract_version().to_string()));
    #[cfg(feature = "candle")]
    versions.push(("candle", torchbridge_native::candle_version().to_string()));
    versions
}

/// Puts the `[tokenizer]` stage, when the config has one, in front of `backend`.
pub(crate) fn with_tokenizer(
    ctx: &LoadContext,
    backend: Box<dyn Backend>,
) -> Result<Box<dyn Backend>> {
    #[cfg(feature = "tokenizer")]
    return torchbridge_native::with_tokenizer(ctx, backend);
    #[cfg(not(feature = "tokenizer"))]
    match &ctx.config.tokenizer {
        None => Ok(backend),
        Some(_) => Err(Error::Load {
            model: ctx.model.clone(),
            bridge: "tokenizer",
            message: "config.toml has a `[tokenizer]` table, but this build of torchbridge \
                      does not include the tokenizer stage (cargo feature `tokenizer`; the \
                      Python package: built with `--features native`)"
                .to_string(),
        }),
    }
}

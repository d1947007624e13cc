//! One loaded ONNX model: an ONNX Runtime session and the metadata clients see.

use std::borrow::Cow;
use std::path::Path;
use std::time::Instant;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use torchbridge_core::{
    Backend, Batch, CallTiming, Device, Error, LoadContext, ModelForm, ModelMetadata, Result,
    Tensor,
};

use crate::{model, runtime, values};

pub(crate) const BRIDGE: &str = "onnx";

/// An ONNX Runtime session serving one model instance on the CPU.
pub(crate) struct OnnxBackend {
    session: Session,
    metadata: ModelMetadata,
    /// Where the last call spent its time.
    timing: Option<CallTiming>,
}

impl std::fmt::Debug for OnnxBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxBackend")
            .field("model", &self.metadata.name)
            .finish_non_exhaustive()
    }
}

impl OnnxBackend {
    pub fn load(ctx: &LoadContext) -> Result<Self> {
        let fail = |message: String| Error::Load {
            model: ctx.model.clone(),
            bridge: BRIDGE,
            message,
        };
        let ModelForm::Onnx(path) = &ctx.form else {
            return Err(fail(format!(
                "the onnx bridge loads `model.onnx`, not {}",
                ctx.form.path().display()
            )));
        };
        if let Device::Cuda(_) = ctx.config.device {
            return Err(fail(format!(
                "`device = \"{}\"` is not available: this build runs ONNX Runtime on the CPU \
                 (no CUDA execution provider); set `device = \"cpu\"`",
                ctx.config.device
            )));
        }
        let runtime = runtime::runtime(ctx.config.python_env.as_deref()).map_err(fail)?;
        if let Some(venv) = &ctx.config.python_env
            && !runtime.is_inside(venv)
        {
            tracing::warn!(
                model = %ctx.model,
                python_env = %venv.display(),
                library = %runtime.library.display(),
                "ONNX Runtime was already started from another library; one runtime serves the whole process"
            );
        }
        let session = open_session(runtime, path, ctx.config.threads).map_err(|e| {
            fail(format!(
                "ONNX Runtime {} (`{}`) cannot open `{}`: {e}",
                runtime.version,
                runtime.library.display(),
                path.display()
            ))
        })?;
        let inputs = model::read_outlets(session.inputs(), "input").map_err(fail)?;
        let outputs = model::read_outlets(session.outputs(), "output").map_err(fail)?;
        let metadata =
            model::reconcile(ctx.configured_metadata(BRIDGE), &inputs, &outputs).map_err(fail)?;
        tracing::info!(
            model = %ctx.model,
            version = ctx.version,
            instance = ctx.instance,
            path = %path.display(),
            "loaded through ONNX Runtime {}",
            runtime.version
        );
        Ok(OnnxBackend {
            session,
            metadata,
            timing: None,
        })
    }
}

/// A session from the file itself (not its bytes), so external data beside it
/// (`model.onnx.data`, as torch's exporter writes) is found. The intra-op pool does
/// not spin-wait between calls: in a server the cores it would burn belong to the
/// HTTP/gRPC workers and the other instances.
fn open_session(runtime: &runtime::Runtime, path: &Path, threads: u32) -> ort::Result<Session> {
    let mut builder = Session::builder(&runtime.environment)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_op_spinning(false)?;
    if threads > 0 {
        builder = builder.with_intra_threads(threads as usize)?;
    }
    builder.commit_from_file(path)
}

impl Backend for OnnxBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let started = Instant::now();
        let model = &self.metadata.name;
        let fail = |message: String| Error::Inference {
            model: model.clone(),
            message,
        };
        let inputs = batch
            .inputs
            .iter()
            .map(|t| Ok((Cow::Borrowed(t.name.as_str()), values::input_value(t)?)))
            .collect::<Result<Vec<(Cow<'_, str>, SessionInputValue<'_>)>, String>>()
            .map_err(fail)?;
        let converted = Instant::now();
        let outputs = self.session.run(inputs).map_err(|e| fail(e.to_string()))?;
        let computed = Instant::now();
        let tensors = self
            .metadata
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(&spec.name).ok_or_else(|| {
                    fail(format!("ONNX Runtime returned no output `{}`", spec.name))
                })?;
                values::output_tensor(spec, value).map_err(fail)
            })
            .collect::<Result<Vec<_>>>()?;
        let timing = CallTiming {
            input: converted - started,
            compute: computed - converted,
            output: computed.elapsed(),
        };
        self.timing = Some(timing);
        Ok(tensors)
    }

    /// A session owns its thread pools (with `threads` 1 it runs on the caller alone).
    fn runs_on_any_thread(&self) -> bool {
        true
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }
}

//! One loaded model instance in the embedded interpreter: load and the call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use torchbridge_core::{
    Backend, Batch, CallTiming, DataType, Error, LoadContext, ModelForm, ModelMetadata, Result,
    Tensor,
};

use crate::convert::{inputs_to_python, outputs_from_python};
use crate::errors::{call_error, load_message};
use crate::interpreter::{glue, prepare};

const BRIDGE: &str = "python";

/// A model instance: the glue's `Runner` (model, declared tensors, device) and the
/// metadata from config.toml. Holds only a `Py` handle, so it is `Send`; every use
/// attaches to the interpreter for the length of one call.
#[derive(Debug)]
pub(crate) struct PythonBackend {
    /// `None` only while dropping.
    runner: Option<Py<PyAny>>,
    metadata: ModelMetadata,
    /// Where the last call spent its time.
    timing: Option<CallTiming>,
}

impl PythonBackend {
    pub(crate) fn load(ctx: &LoadContext) -> Result<Self> {
        let fail = |message: String| Error::Load {
            model: ctx.model.clone(),
            bridge: BRIDGE,
            message,
        };
        let (form, path) = match &ctx.form {
            ModelForm::PythonHandler(path) => ("handler", path),
            ModelForm::TorchScript(path) => ("torchscript", path),
            ModelForm::Exported(path) => ("exported", path),
            other => {
                return Err(fail(format!(
                    "it loads model.py, model.pt or model.pt2, not {}",
                    other.path().display()
                )));
            }
        };
        let metadata = ctx.configured_metadata(BRIDGE);
        check_config(&metadata, form).map_err(fail)?;
        let parameters = serde_json::to_string(&ctx.config.parameters)
            .map_err(|e| fail(format!("`[parameters]` cannot be handed to Python: {e}")))?;
        let declared = |specs: &[torchbridge_core::TensorSpec]| -> Vec<(String, &str)> {
            specs
                .iter()
                .map(|s| (s.name.clone(), s.datatype.as_str()))
                .collect()
        };
        prepare(ctx.config.python_env.as_deref()).map_err(fail)?;
        let _passage =
            crate::exit::enter().ok_or_else(|| fail("the Python interpreter is exiting".into()))?;
        let runner = Python::attach(|py| {
            let glue = glue(py).map_err(|e| e.to_string())?;
            let args = (
                form,
                path,
                &ctx.version_dir,
                module_name(ctx),
                parameters,
                ctx.config.trust_pickle,
                ctx.config.device.to_string(),
                ctx.config.threads,
                declared(&metadata.inputs),
                declared(&metadata.outputs),
            );
            glue.call_method1("load", args)
                .map(Bound::unbind)
                .map_err(|e| load_message(py, path, &e))
        })
        .map_err(fail)?;
        tracing::debug!(model = %ctx.model, path = %path.display(), device = %ctx.config.device, "python model loaded");
        Ok(PythonBackend {
            runner: Some(runner),
            metadata,
            timing: None,
        })
    }
}

impl PythonBackend {
    /// Wraps a Python callable of the running interpreter (a function or an
    /// `nn.Module`) as one instance: called with the batch's input tensors in declared
    /// order, under `torch.inference_mode()`, its result read as a module's is.
    pub(crate) fn from_callable(metadata: ModelMetadata, callable: &Py<PyAny>) -> Result<Self> {
        let fail = |message: String| Error::Load {
            model: metadata.name.clone(),
            bridge: BRIDGE,
            message,
        };
        check_config(&metadata, "callable").map_err(fail)?;
        prepare(None).map_err(fail)?;
        let _passage =
            crate::exit::enter().ok_or_else(|| fail("the Python interpreter is exiting".into()))?;
        let declared = |specs: &[torchbridge_core::TensorSpec]| -> Vec<(String, &str)> {
            specs
                .iter()
                .map(|s| (s.name.clone(), s.datatype.as_str()))
                .collect()
        };
        let runner = Python::attach(|py| {
            let torch = py.import("torch")?;
            let args = (
                torch,
                callable.clone_ref(py),
                false,
                declared(&metadata.inputs),
                declared(&metadata.outputs),
                "cpu",
                0,
            );
            glue(py)?.getattr("Runner")?.call1(args).map(Bound::unbind)
        })
        .map_err(|e| fail(e.to_string()))?;
        Ok(PythonBackend {
            runner: Some(runner),
            metadata,
            timing: None,
        })
    }
}

impl Backend for PythonBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let model = &self.metadata.name;
        let runner = self.runner.as_ref().ok_or_else(|| Error::Inference {
            model: model.clone(),
            message: "the model was unloaded".into(),
        })?;
        let _passage = crate::exit::enter().ok_or_else(|| Error::Inference {
            model: model.clone(),
            message: "the Python interpreter is exiting".into(),
        })?;
        // One attach per batch; torch releases the GIL inside its ops, so other
        // instances run their Python in the meantime.
        let (outputs, timing) = Python::attach(|py| {
            let started = Instant::now();
            let inputs = inputs_to_python(py, batch.inputs)?;
            let runner = runner.bind(py);
            let called = Instant::now();
            let result = runner
                .call_method1("run", (inputs,))
                .map_err(|e| call_error(py, model, &e))?;
            let returned = Instant::now();
            let outputs =
                outputs_from_python(&result, &self.metadata.outputs).map_err(|message| {
                    Error::Inference {
                        model: model.clone(),
                        message,
                    }
                })?;
            // The glue's own split of its call: converting in, the model, converting out.
            let (glue_in, model_ns, glue_out): (u64, u64, u64) = runner
                .getattr("timing")
                .and_then(|t| t.extract())
                .unwrap_or_default();
            let timing = CallTiming {
                input: (called - started) + Duration::from_nanos(glue_in),
                compute: Duration::from_nanos(model_ns),
                output: Duration::from_nanos(glue_out) + returned.elapsed(),
            };
            Ok::<_, Error>((outputs, timing))
        })?;
        self.timing = Some(timing);
        Ok(outputs)
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }
}

impl Drop for PythonBackend {
    /// Releases the model now (and its memory, GPU memory included) rather than at the
    /// interpreter's next use; skipped when the interpreter is shutting down.
    fn drop(&mut self) {
        let Some(runner) = self.runner.take() else {
            return;
        };
        match crate::exit::enter() {
            Some(_passage) => {
                Python::try_attach(move |_py| drop(runner));
            }
            // Attaching now could end this thread mid-frame (see `exit`): leaked.
            None => std::mem::forget(runner),
        }
    }
}

/// Python models do not declare their tensors, so the config must; and only a
/// `model.py` handler can take or give BYTES.
fn check_config(metadata: &ModelMetadata, form: &str) -> Result<(), String> {
    for (key, specs) in [("input", &metadata.inputs), ("output", &metadata.outputs)] {
        if specs.is_empty() {
            return Err(format!(
                "a python model does not declare its tensors, so config.toml must: add an \
                 `[[{key}]]` table (name, datatype, dims) for each {key}, in the order the \
                 model takes or returns them"
            ));
        }
        if form != "handler"
            && form != "callable"
            && let Some(spec) = specs.iter().find(|s| s.datatype == DataType::Bytes)
        {
            return Err(format!(
                "`[[{key}]]` `{}` is BYTES: only a model.py handler takes or returns BYTES; \
                 a module gets and returns tensors",
                spec.name
            ));
        }
    }
    Ok(())
}

/// A module name no other load in this process uses, so instances and versions of a
/// model each get their own module object.
fn module_name(ctx: &LoadContext) -> String {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    let model: String = ctx
        .model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let n = LOADS.fetch_add(1, Ordering::Relaxed);
    format!(
        "torchbridge_model_{model}_v{}_i{}_{n}",
        ctx.version, ctx.instance
    )
}

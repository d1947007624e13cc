//! One loaded TorchScript module: load, device, threads, and the call.

use std::path::Path;
use std::time::Instant;

use tch::{CModule, Device, IValue};
use torchbridge_core::{
    Backend, Batch, CallTiming, Error, LoadContext, ModelForm, ModelMetadata, Result, Tensor,
};

use crate::convert::{check_declared, outputs_of, to_torch};
use crate::errors::libtorch_message;

const BRIDGE: &str = "torchscript";

/// A TorchScript module in eval mode on its device, with the config's inputs and outputs.
#[derive(Debug)]
pub(crate) struct TorchScriptBackend {
    module: CModule,
    metadata: ModelMetadata,
    device: Device,
    /// Intra-op threads this instance asks for (`threads` in the config), if any.
    threads: Option<i32>,
    /// Where the last call spent its time.
    timing: Option<CallTiming>,
}

impl TorchScriptBackend {
    pub(crate) fn load(ctx: &LoadContext) -> Result<Self> {
        let fail = |message: String| Error::Load {
            model: ctx.model.clone(),
            bridge: BRIDGE,
            message,
        };
        let path = match &ctx.form {
            ModelForm::TorchScript(path) => path,
            other => {
                return Err(fail(format!(
                    "it loads TorchScript files (model.pt), not {}",
                    other.path().display()
                )));
            }
        };
        let metadata = ctx.configured_metadata(BRIDGE);
        check_config(&metadata).map_err(fail)?;
        let device = torch_device(ctx.config.device).map_err(fail)?;
        let threads = match ctx.config.threads {
            0 => None,
            n => Some(i32::try_from(n).map_err(|_| fail(format!("`threads` = {n} is too many")))?),
        };
        let mut backend = TorchScriptBackend {
            module: load_module(path, device).map_err(fail)?,
            metadata,
            device,
            threads,
            timing: None,
        };
        backend
            .module
            .f_set_eval()
            .map_err(|e| fail(libtorch_message(&e)))?;
        backend.keep_threads();
        tracing::debug!(model = %ctx.model, path = %path.display(), %ctx.config.device, "TorchScript module loaded");
        Ok(backend)
    }

    /// Applies this instance's thread count to the calling thread.
    ///
    /// libtorch's intra-op thread count is process-global: `at::set_num_threads` stores
    /// one number for the whole process, which each OS thread copies into its own OpenMP
    /// setting the first time it runs parallel work. So two models with different
    /// `threads` would fight over it. Checking on every call (one cheap FFI read) and
    /// resetting when it differs makes each instance thread run with its own count.
    /// Inter-op threads are left alone: libtorch lets a process set them once, before any
    /// inter-op work, and throws on a second call, so they cannot follow a model config.
    fn keep_threads(&self) {
        if let Some(threads) = self.threads
            && tch::get_num_threads() != threads
        {
            tch::set_num_threads(threads);
        }
    }

    fn failed(&self, message: String) -> Error {
        Error::Inference {
            model: self.metadata.name.clone(),
            message,
        }
    }
}

impl Backend for TorchScriptBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        self.keep_threads();
        let started = Instant::now();
        // Positional, in config order; `Batch` is already in that order.
        let inputs = batch
            .inputs
            .iter()
            .map(|t| to_torch(t, self.device, &self.metadata.name).map(IValue::Tensor))
            .collect::<Result<Vec<_>>>()?;
        drop(batch);
        let converted = Instant::now();
        let output = tch::no_grad(|| self.module.forward_is(&inputs))
            .map_err(|e| self.failed(libtorch_message(&e)))?;
        drop(inputs);
        let computed = Instant::now();
        let outputs = outputs_of(output, &self.metadata.outputs).map_err(|m| self.failed(m))?;
        self.timing = Some(CallTiming {
            input: converted - started,
            compute: computed - converted,
            output: computed.elapsed(),
        });
        Ok(outputs)
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }
}

/// TorchScript files carry no input or output declarations, so the config must.
fn check_config(metadata: &ModelMetadata) -> Result<(), String> {
    for (key, specs) in [("input", &metadata.inputs), ("output", &metadata.outputs)] {
        if specs.is_empty() {
            return Err(format!(
                "a TorchScript file does not declare its tensors, so config.toml must: \
                 add an `[[{key}]]` table (name, datatype, dims) for each {key}, in the order forward() takes or returns them"
            ));
        }
        specs
            .iter()
            .try_for_each(|spec| check_declared(spec, key))?;
    }
    Ok(())
}

fn torch_device(device: torchbridge_core::Device) -> Result<Device, String> {
    match device {
        torchbridge_core::Device::Cpu => Ok(Device::Cpu),
        torchbridge_core::Device::Cuda(index) => {
            let count = tch::Cuda::device_count();
            if usize::try_from(count).is_ok_and(|count| index < count) {
                Ok(Device::Cuda(index))
            } else {
                Err(format!(
                    "device `{device}` is not available: libtorch sees {count} CUDA device(s)"
                ))
            }
        }
    }
}

fn load_module(path: &Path, device: Device) -> Result<CModule, String> {
    CModule::load_on_device(path, device)
        .map_err(|e| format!("cannot load {}: {}", path.display(), libtorch_message(&e)))
}

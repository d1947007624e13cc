use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{ModelConfig, ModelForm, ModelMetadata, Result, Tensor};

/// Checked inputs for one model call, in the model's declared input order.
#[derive(Debug, Clone)]
pub struct Batch {
    pub inputs: Vec<Tensor>,
    /// Rows in dim 0 when the model batches (1 when it does not).
    pub rows: usize,
}

/// One loaded instance of a model in one engine.
///
/// A backend runs on a thread torchbridge owns and is called with `&mut self`, so an
/// engine needs no locking of its own. `infer` blocks until the outputs are ready and
/// returns them in the order of [`ModelMetadata::outputs`].
pub trait Backend: Send {
    fn metadata(&self) -> &ModelMetadata;
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>>;
    /// The engine keeps no per-thread state (it owns its thread pools, sets nothing
    /// thread-local at load or per call), so a short call may run on the caller's
    /// thread while the instance is idle, saving two thread wake-ups. `false` keeps
    /// every call on the instance's own thread.
    fn runs_on_any_thread(&self) -> bool {
        false
    }
    /// Where the last `infer` call spent its time, for bridges that measure it.
    fn last_timing(&self) -> Option<CallTiming> {
        None
    }
    /// Ends a call in flight from another thread, for a backend that can: the pool's
    /// watchdog calls it once the instance is stuck (its call ran past every deadline of
    /// its requests). `None`: a stuck call can only be waited out.
    fn interrupter(&self) -> Option<Interrupt> {
        None
    }
    /// Why this instance can serve nothing for now although it loaded (an isolated
    /// worker process that died and could not be started again), asked after each call;
    /// when every instance of a model says so, the model reports not ready with this.
    fn broken(&self) -> Option<String> {
        None
    }
}

/// Cuts short the call in flight on one backend (see [`Backend::interrupter`]).
pub type Interrupt = Arc<dyn Fn() + Send + Sync>;

/// One backend call split into the crossing of the bridge on the way in (request bytes
/// to the engine's tensors), the engine's own work, and the crossing back out — so a
/// user sees what the bridge itself costs (Triton's compute_input / infer / output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTiming {
    pub input: Duration,
    pub compute: Duration,
    pub output: Duration,
}

/// Everything a bridge needs to load one instance.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub model: String,
    pub version: u64,
    pub config: ModelConfig,
    /// The version directory, handed to python handlers as `model_dir`.
    pub version_dir: PathBuf,
    /// The file this bridge loads, and what kind of file it is.
    pub form: ModelForm,
    /// Which instance of the pool this is (0-based).
    pub instance: usize,
}

impl LoadContext {
    /// Declared inputs and outputs from the config (bridges whose files declare them
    /// may fill in what the config leaves out).
    pub fn configured_metadata(&self, platform: &str) -> ModelMetadata {
        ModelMetadata {
            name: self.model.clone(),
            version: self.version,
            platform: platform.to_string(),
            max_batch_size: self.config.max_batch_size,
            inputs: self.config.inputs.iter().map(Into::into).collect(),
            outputs: self.config.outputs.iter().map(Into::into).collect(),
        }
    }
}

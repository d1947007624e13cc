//! torchbridge runs PyTorch models from Rust.
//!
//! ```no_run
//! use torchbridge::{Model, Tensor};
//! let model = Model::load("models/digits")?;           // the bridge comes from config.toml
//! let image = Tensor::from_slice("INPUT0", vec![1, 64], &[0.0f32; 64])?;
//! let logits = model.infer(vec![image])?;
//! # Ok::<(), torchbridge::Error>(())
//! ```
//!
//! This crate is the facade: it re-exports the core types, picks a bridge per model
//! from its config, and compiles a bridge in only when its cargo feature is on
//! (`python`, `torchscript`, `onnx`, and `native` = `tract` + `candle` + `tokenizer`), so a
//! service pays only for the engines it uses.
//! A [`Model`] is `Send + Sync`: it owns a pool of instance threads, and `infer` may be
//! called from any number of threads at once (or awaited with [`Model::infer_async`]).
//! With a `[batching]` table in its config, concurrent calls are batched together.

mod bridges;
pub mod compare;
pub mod npy;
pub mod random;
pub mod worker;

use std::path::Path;
use std::time::Instant;

pub use bridges::{compiled_bridges, runtime_versions};
pub use torchbridge_core::{
    Backend, BackendKind, Batch, BatchingConfig, Change, DataType, Device, Element, Error,
    InstancePool, Isolation, LoadContext, ModelConfig, ModelDir, ModelForm, ModelMetadata,
    ModelStats, PoolThreads, PythonError, Registry, RepositoryWatch, Result, ServedModel, Tensor,
    TensorSpec, TokenizerConfig, on_instance_thread,
};

/// Starts the model through `bridge`: its instances, behind a batching scheduler when
/// the config has a `[batching]` table; the loader a server's [`Registry`] uses.
pub fn start_model(dir: &ModelDir, bridge: BackendKind) -> Result<ServedModel> {
    Ok(
        ServedModel::new(start_pool(dir, bridge)?, dir.config.batching.as_ref())?
            .with_labels(dir.labels.clone()),
    )
}

/// Runs the `[warmup]` calls on one instance's backend, with made-up inputs of the
/// configured shapes, before the instance takes requests: every instance warms its own
/// engine (a restarted worker process too), and the calls are not counted as requests.
pub(crate) fn warm_up(
    ctx: &LoadContext,
    backend: &mut dyn Backend,
    bridge: BackendKind,
) -> Result<()> {
    let Some(warmup) = &ctx.config.warmup else {
        return Ok(());
    };
    let meta = backend.metadata().clone();
    let sizes = if meta.max_batch_size > 0 {
        warmup.batch_sizes.clone()
    } else {
        vec![1]
    };
    let mut rng = random::Rng::new(0);
    let mut run = || -> Result<()> {
        for &rows in &sizes {
            let inputs = random::inputs(
                &meta,
                rows as usize,
                i64::from(warmup.variable_dim),
                &mut rng,
            )?;
            for _ in 0..warmup.calls {
                backend.infer(meta.prepare(inputs.clone())?)?;
            }
        }
        Ok(())
    };
    run().map_err(|e| Error::Load {
        model: ctx.model.clone(),
        bridge: bridge.as_str(),
        message: format!("the warm-up ([warmup] in config.toml) failed: {e}"),
    })
}

/// Starts `config.instances` instances of the model through `bridge`, each loading
/// on its own thread (no batching: see [`start_model`]); with a `[tokenizer]` table,
/// each instance tokenizes its BYTES input before the bridge runs.
pub fn start_pool(dir: &ModelDir, bridge: BackendKind) -> Result<InstancePool> {
    let ctx = load_context(dir, bridge)?;
    let isolation = dir.config.isolation;
    let config_override = dir.config_override.clone();
    InstancePool::start(&dir.name, dir.config.instances as usize, move |instance| {
        let ctx = LoadContext {
            instance,
            ..ctx.clone()
        };
        match isolation {
            Isolation::None => {
                let mut backend =
                    bridges::with_tokenizer(&ctx, bridges::load_backend(&ctx, bridge)?)?;
                warm_up(&ctx, backend.as_mut(), bridge)?;
                Ok(backend)
            }
            // The worker process warms its own instance, on every start.
            Isolation::Process => Ok(Box::new(worker::WorkerBackend::start(
                &ctx,
                bridge,
                config_override.as_ref(),
            )?)),
        }
    })
}

/// What instance 0 of `dir` loads through `bridge` with. `threads = 0` becomes an equal
/// share of the CPUs this process may use (cgroup quota, else cores), decided before
/// any engine starts.
fn load_context(dir: &ModelDir, bridge: BackendKind) -> Result<LoadContext> {
    let mut config = dir.config.clone();
    config.threads = torchbridge_core::cpu::threads_per_instance(config.threads, config.instances);
    Ok(LoadContext {
        model: dir.name.clone(),
        version: dir.version,
        config,
        version_dir: dir.version_dir.clone(),
        form: dir.form_for(bridge)?,
        instance: 0,
    })
}

/// A loaded model: one or more backend instances of one bridge, behind a queue (a
/// batching one when configured).
#[derive(Debug)]
pub struct Model {
    dir: ModelDir,
    bridge: BackendKind,
    served: ServedModel,
}

impl Model {
    /// Loads the highest version of the model at `path` through the bridge its
    /// `config.toml` names.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let dir = ModelDir::open(path.as_ref(), None)?;
        let bridge = dir.config.backend;
        Self::from_dir(dir, bridge)
    }

    /// Loads the model through `bridge` instead, from whichever of its forms
    /// (`model.py`, `model.pt`, `model.onnx`, …) that bridge reads.
    pub fn load_with(path: impl AsRef<Path>, bridge: BackendKind) -> Result<Self> {
        Self::from_dir(ModelDir::open(path.as_ref(), None)?, bridge)
    }

    /// Loads an opened model directory (a chosen version) through `bridge`.
    pub fn from_dir(dir: ModelDir, bridge: BackendKind) -> Result<Self> {
        let served = start_model(&dir, bridge)?;
        Ok(Model {
            dir,
            bridge,
            served,
        })
    }

    pub fn metadata(&self) -> &ModelMetadata {
        self.served.metadata()
    }

    /// Counters of calls, rows, batch sizes and time spent queued and computing.
    pub fn stats(&self) -> &ModelStats {
        self.served.stats()
    }

    /// The bridge this model runs through.
    pub fn bridge(&self) -> BackendKind {
        self.bridge
    }

    pub fn dir(&self) -> &ModelDir {
        &self.dir
    }

    /// Checks `inputs` against the model's inputs and runs them; blocks this thread.
    /// Call it from threads, not from inside an async runtime (use `infer_async` there).
    pub fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let batch = self.metadata().prepare(inputs)?;
        self.served.run_blocking(batch)
    }

    /// As [`Model::infer`], but answered [`Error::Timeout`] (and never run) if no
    /// instance has started on it by `deadline`.
    pub fn infer_with_deadline(
        &self,
        inputs: Vec<Tensor>,
        deadline: Instant,
    ) -> Result<Vec<Tensor>> {
        let batch = self.metadata().prepare(inputs)?;
        self.served
            .run_blocking_with_deadline(batch, Some(deadline))
    }

    /// As [`Model::infer`], awaiting the result instead of blocking.
    pub async fn infer_async(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let batch = self.metadata().prepare(inputs)?;
        self.served.run(batch).await
    }
}

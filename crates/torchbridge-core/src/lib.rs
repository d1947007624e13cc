//! The vocabulary every torchbridge bridge and front end shares, and nothing heavier.
//!
//! A bridge (python, torchscript, onnx, …) implements [`Backend`]; the server and the
//! library facade speak only in [`Tensor`], [`ModelMetadata`] and [`Error`]. Keeping this
//! crate free of pyo3, tch, ort, axum and tonic means each engine can be compiled in or
//! out by a cargo feature without touching the rest, and that the queueing and
//! validation logic here can be unit-tested without any engine installed.
//!
//! Engines are blocking and often not thread-safe, so each instance has an OS thread
//! of its own in an [`InstancePool`], and callers talk to it through a channel with a
//! one-shot reply. A thread hand-off costs two wake-ups (~25 µs each on a small VM), more
//! than a small model's whole call, so an engine that keeps no per-thread state
//! ([`Backend::runs_on_any_thread`]) may run a lone request on the caller's thread while
//! its instance is idle (an async caller first yields once, so that on a busy runtime
//! with one worker requests still find each other and batch: `company`). A [`ServedModel`] puts a dynamic-batching queue in front of the
//! pool when the model's config asks for it; instances pull their batches from it. The
//! registry and the library facade hold that.

mod backend;
mod batching;
mod company;
mod config;
pub mod cpu;
mod datatype;
mod declared;
mod error;
mod instance;
mod labels;
mod metadata;
mod pool;
mod registry;
mod repository;
mod served;
mod stats;
mod tensor;
mod trace;
mod uploads;
mod watch;

pub use backend::{Backend, Batch, CallTiming, Interrupt, LoadContext};
pub use config::{
    BackendKind, BatchingConfig, ConfigOverride, Device, EmbeddingConfig, Isolation, ModelConfig,
    Padding, Pooling, TensorConfig, TokenOutput, TokenizerConfig, VersionPolicy, WarmupConfig,
};
pub use datatype::{DataType, Element};
pub use declared::{FileTensor, reconcile};
pub use error::{Error, PythonError, Result};
pub use labels::OutputLabels;
pub use metadata::{ModelMetadata, TensorSpec};
pub use pool::{InstancePool, PoolThreads, on_instance_thread};
pub use registry::{IndexEntry, Loader, ModelState, Registry};
pub use repository::{ModelDir, ModelForm};
pub use served::ServedModel;
pub use stats::{BatchSizeStat, BatchSizes, DurationStat, InstanceHealth, ModelStats};
pub use tensor::Tensor;
pub use trace::{CallTimes, CallTrace, RanCall};
pub use watch::{Change, RepositoryWatch};

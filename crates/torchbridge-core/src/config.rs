//! A model's `config.toml`, read once and checked before any bridge loads; the tables
//! that belong to one stage have their own files.

mod embedding;
mod load_override;
mod tokenizer;
mod versions;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

pub use embedding::{EmbeddingConfig, Pooling};
pub use load_override::ConfigOverride;
pub use tokenizer::{Padding, TokenOutput, TokenizerConfig};
pub use versions::VersionPolicy;

use crate::{DataType, Error, Result};

/// A model's `config.toml`: which bridge serves it, how it batches, and its tensors.
///
/// Unknown keys are errors, so a typo never silently falls back to a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The bridge that serves the model.
    pub backend: BackendKind,
    /// 0: the model has no batch dimension; otherwise dim 0 is the batch, up to this.
    #[serde(default)]
    pub max_batch_size: u32,
    /// Backend instances run in parallel, each on its own thread.
    #[serde(default = "default_instances")]
    pub instances: u32,
    #[serde(default)]
    pub device: Device,
    /// Intra-op threads per instance; 0 leaves the engine's default.
    #[serde(default)]
    pub threads: u32,
    /// Virtualenv whose site-packages the python bridge uses (else `VIRTUAL_ENV`).
    #[serde(default)]
    pub python_env: Option<PathBuf>,
    /// Allow the python bridge to unpickle a whole module from `model.pt` (runs code).
    #[serde(default)]
    pub trust_pickle: bool,
    /// Where each instance runs: in the server's process, or in a child of its own.
    #[serde(default)]
    pub isolation: Isolation,
    /// Which version directories serve at once (default: the highest).
    #[serde(default)]
    pub version_policy: VersionPolicy,
    #[serde(default, rename = "input")]
    pub inputs: Vec<TensorConfig>,
    #[serde(default, rename = "output")]
    pub outputs: Vec<TensorConfig>,
    /// Free-form table handed to python handlers.
    #[serde(default)]
    pub parameters: toml::Table,
    /// Present: dynamic batching is on.
    #[serde(default)]
    pub batching: Option<BatchingConfig>,
    /// Present: calls with made-up inputs run before the model reports ready.
    #[serde(default)]
    pub warmup: Option<WarmupConfig>,
    /// Present: a BYTES input of strings is tokenized in Rust before the bridge runs.
    #[serde(default)]
    pub tokenizer: Option<TokenizerConfig>,
    /// The candle bridge's pooling and normalisation (absent: mean, not normalised).
    #[serde(default)]
    pub embedding: Option<EmbeddingConfig>,
}

/// The `[warmup]` table: representative calls each instance runs once it has loaded
/// (an isolated instance's worker process on every start), so the first real requests
/// do not pay for lazy initialisation (TorchScript profiling runs, ONNX Runtime's first
/// allocations). A failing warm-up fails the load; the calls are not counted as requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupConfig {
    /// Rows of each warm-up call (for models with a batch dimension).
    #[serde(default = "default_warmup_batch_sizes")]
    pub batch_sizes: Vec<u32>,
    /// The size given to variable (-1) dims, such as a sequence length.
    #[serde(default = "default_variable_dim")]
    pub variable_dim: u32,
    /// Calls per batch size, on every instance.
    #[serde(default = "default_warmup_calls")]
    pub calls: u32,
}

impl WarmupConfig {
    /// Batch sizes that fit the model, and calls and sizes a load can afford.
    fn check(&self, max_batch_size: u32) -> Result<(), String> {
        if max_batch_size == 0 && self.batch_sizes != default_warmup_batch_sizes() {
            return Err(format!(
                "`warmup.batch_sizes = {:?}`: a model with `max_batch_size = 0` has no batch \
                 dimension; leave it out",
                self.batch_sizes
            ));
        }
        if max_batch_size > 0
            && let Some(b) = self
                .batch_sizes
                .iter()
                .find(|&&b| b == 0 || b > max_batch_size)
        {
            return Err(format!(
                "`warmup.batch_sizes` holds {b}, outside 1..={max_batch_size}"
            ));
        }
        if self.calls > MAX_WARMUP_CALLS {
            return Err(format!(
                "`warmup.calls = {}`: at most {MAX_WARMUP_CALLS} (a warm-up holds the load \
                 until it is done)",
                self.calls
            ));
        }
        if self.variable_dim > MAX_WARMUP_VARIABLE_DIM {
            return Err(format!(
                "`warmup.variable_dim = {}`: at most {MAX_WARMUP_VARIABLE_DIM}",
                self.variable_dim
            ));
        }
        Ok(())
    }
}

fn default_warmup_batch_sizes() -> Vec<u32> {
    vec![1]
}

fn default_variable_dim() -> u32 {
    8
}

fn default_warmup_calls() -> u32 {
    3
}

fn default_instances() -> u32 {
    1
}

/// One `[[input]]` or `[[output]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorConfig {
    pub name: String,
    pub datatype: DataType,
    /// Without the batch dimension when `max_batch_size > 0`; -1 means any size.
    pub dims: Vec<i64>,
    /// Outputs only: a file of class names, one per line, relative to the model's
    /// directory (Triton's `label_filename`); classification results carry them.
    #[serde(default)]
    pub labels: Option<PathBuf>,
}

/// The `[batching]` table: dynamic batching settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    #[serde(default = "default_queue_delay")]
    pub max_queue_delay_us: u64,
    #[serde(default)]
    pub preferred_batch_sizes: Vec<u32>,
    #[serde(default = "default_queue_size")]
    pub max_queue_size: u32,
    /// Refuse at once (429 / `RESOURCE_EXHAUSTED`) a request predicted, from the
    /// batches seen so far, to wait longer than this before its batch starts.
    #[serde(default)]
    pub max_queue_wait_us: Option<u64>,
}

impl Default for BatchingConfig {
    /// An empty `[batching]` table.
    fn default() -> Self {
        BatchingConfig {
            max_queue_delay_us: default_queue_delay(),
            preferred_batch_sizes: Vec::new(),
            max_queue_size: default_queue_size(),
            max_queue_wait_us: None,
        }
    }
}

/// Bounds past any machine: a typo there (`threads = 100000`) spawned threads until the
/// machine ran out of memory.
const MAX_INSTANCES: u32 = 256;
const MAX_THREADS: u32 = 1024;
/// Intra-op threads of all instances together (each bound alone allowed 262,144).
const MAX_THREADS_IN_ALL: u32 = 4096;

/// Warm-up bounds: a load waits for its warm-up, and a load's config comes from a client.
const MAX_WARMUP_CALLS: u32 = 1000;
const MAX_WARMUP_VARIABLE_DIM: u32 = 8192;

/// The longest `max_queue_delay_us` accepted: a longer wait for companions is a unit
/// mistake (milliseconds or seconds written as microseconds), not a batching policy.
const MAX_QUEUE_DELAY_US: u64 = 10_000_000;

fn default_queue_delay() -> u64 {
    500
}

fn default_queue_size() -> u32 {
    1024
}

/// Where a model's instances run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In the serving process: no crossing, but a crash in the model's code (a
    /// segfault in an extension, `os._exit`) ends the process.
    #[default]
    None,
    /// Each instance in a child process of its own (`torchbridge worker`): a crash
    /// fails the batch it was running and the instance restarts; tensors cross a
    /// socket, one copy each way.
    Process,
}

/// The bridges torchbridge knows. Whether one is compiled in is the facade's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Python,
    Torchscript,
    Onnx,
    Tract,
    Candle,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Python,
        BackendKind::Torchscript,
        BackendKind::Onnx,
        BackendKind::Tract,
        BackendKind::Candle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Python => "python",
            BackendKind::Torchscript => "torchscript",
            BackendKind::Onnx => "onnx",
            BackendKind::Tract => "tract",
            BackendKind::Candle => "candle",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                format!("unknown bridge `{s}`, expected python, torchscript, onnx, tract or candle")
            })
    }
}

/// Where a model runs: `"cpu"` or `"cuda:N"` (`"cuda"` means `"cuda:0"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`, expected \"cpu\" or \"cuda:N\"")),
        }
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl ModelConfig {
    /// Reads and checks a `config.toml`; every error names the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(path, format!("cannot read the model config: {e}")))?;
        Self::from_toml(&text).map_err(|message| Error::config(path, message))
    }

    /// Parses and checks config text; the error names the offending key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// The labels file `output` names (relative to the model directory), if it does.
    pub fn labels_file(&self, output: &str) -> Option<&Path> {
        let output = self.outputs.iter().find(|o| o.name == output)?;
        output.labels.as_deref()
    }

    fn check(&self) -> Result<(), String> {
        if self.instances == 0 {
            return Err("`instances` must be at least 1".into());
        }
        if self.instances > MAX_INSTANCES {
            return Err(format!(
                "`instances = {}`: at most {MAX_INSTANCES} (each is a thread with its own \
                 copy of the model)",
                self.instances
            ));
        }
        if self.threads > MAX_THREADS {
            return Err(format!(
                "`threads = {}`: at most {MAX_THREADS} intra-op threads an instance (0 sizes \
                 them from the CPUs the process may use)",
                self.threads
            ));
        }
        if self.threads.saturating_mul(self.instances) > MAX_THREADS_IN_ALL {
            return Err(format!(
                "`instances = {}` with `threads = {}` each: {} threads, more than \
                 {MAX_THREADS_IN_ALL} in all (0 threads shares the CPUs out among the instances)",
                self.instances,
                self.threads,
                u64::from(self.threads) * u64::from(self.instances)
            ));
        }
        self.version_policy.check()?;
        if self.batching.is_some() && self.max_batch_size == 0 {
            return Err("`[batching]` needs `max_batch_size` > 0".into());
        }
        if let Some(b) = &self.batching
            && b.max_queue_size == 0
        {
            return Err(
                "`batching.max_queue_size = 0` would refuse every request; it is how many may \
                 wait (at least 1; leave it out for 1024)"
                    .into(),
            );
        }
        if let Some(b) = &self.batching
            && b.max_queue_wait_us == Some(0)
        {
            return Err(
                "`batching.max_queue_wait_us = 0` is no wait at all: give the queueing time a \
                 request may be predicted to wait (µs), or leave it out for no such limit"
                    .into(),
            );
        }
        if let Some(b) = &self.batching
            && b.max_queue_delay_us > MAX_QUEUE_DELAY_US
        {
            return Err(format!(
                "`batching.max_queue_delay_us = {}` would hold a lone request for over {} s; \
                 it is in microseconds (500 = 0.5 ms), at most {MAX_QUEUE_DELAY_US}",
                b.max_queue_delay_us,
                MAX_QUEUE_DELAY_US / 1_000_000
            ));
        }
        if let Some(b) = &self.batching
            && let Some(p) = b
                .preferred_batch_sizes
                .iter()
                .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(format!(
                "`batching.preferred_batch_sizes` holds {p}, outside 1..={}",
                self.max_batch_size
            ));
        }
        if let Some(w) = &self.warmup {
            w.check(self.max_batch_size)?;
        }
        if let Some(t) = &self.tokenizer {
            t.check()?;
        }
        if self.embedding.is_some() && self.backend != BackendKind::Candle {
            return Err(format!(
                "`[embedding]` configures the candle bridge's pooling, but `backend = \"{}\"`; \
                 other bridges' model files pool inside the model",
                self.backend
            ));
        }
        for (key, tensors) in [("input", &self.inputs), ("output", &self.outputs)] {
            for (i, t) in tensors.iter().enumerate() {
                if tensors[..i].iter().any(|o| o.name == t.name) {
                    return Err(format!("`[[{key}]]` names `{}` twice", t.name));
                }
                if key == "input" && t.labels.is_some() {
                    return Err(format!(
                        "`[[input]]` `{}`: `labels` names the classes of an output; inputs have none",
                        t.name
                    ));
                }
                if let Some(d) = t.dims.iter().find(|&&d| d < -1) {
                    return Err(format!(
                        "`[[{key}]]` `{}`: dims may hold sizes ≥ 0 or -1 (any), not {d}",
                        t.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
backend = "torchscript"
max_batch_size = 64
instances = 2
device = "cuda:1"
threads = 4
[[input]]
name = "INPUT0"
datatype = "FP32"
dims = [64]
[[output]]
name = "OUTPUT0"
datatype = "FP32"
dims = [-1]
[parameters]
scale = 2.5
[batching]
max_queue_delay_us = 100
preferred_batch_sizes = [8, 32]
max_queue_wait_us = 20000
"#;

    #[test]
    fn full_config_parses() {
        let c = ModelConfig::from_toml(FULL).unwrap();
        assert_eq!(c.backend, BackendKind::Torchscript);
        assert_eq!((c.max_batch_size, c.instances, c.threads), (64, 2, 4));
        assert_eq!(c.device, Device::Cuda(1));
        assert_eq!(c.inputs[0].datatype, DataType::Fp32);
        assert_eq!(c.outputs[0].dims, vec![-1]);
        assert_eq!(c.parameters["scale"].as_float(), Some(2.5));
        let batching = c.batching.unwrap();
        assert_eq!(batching.max_queue_size, 1024);
        assert_eq!(batching.max_queue_wait_us, Some(20000));
    }

    #[test]
    fn defaults() {
        let c = ModelConfig::from_toml("backend = \"onnx\"").unwrap();
        assert_eq!((c.max_batch_size, c.instances, c.threads), (0, 1, 0));
        assert_eq!(c.device, Device::Cpu);
        assert!(c.inputs.is_empty() && c.batching.is_none() && !c.trust_pickle);
    }

    fn error_of(text: &str) -> String {
        ModelConfig::from_toml(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        let e = error_of("backend = \"onnx\"\ninstancs = 2");
        assert!(e.contains("unknown field `instancs`"), "{e}");
        let e = error_of("backend = \"tensorflow\"");
        assert!(e.contains("tensorflow") && e.contains("torchscript"), "{e}");
        let e = error_of("backend = \"onnx\"\nmax_batch_size = \"big\"");
        assert!(e.contains("max_batch_size"), "{e}");
        let e = error_of("backend = \"onnx\"\ndevice = \"gpu\"");
        assert!(e.contains("unknown device `gpu`"), "{e}");
        let e = error_of("max_batch_size = 4");
        assert!(e.contains("missing field `backend`"), "{e}");
        let e = error_of("backend = \"onnx\"\ninstances = 0");
        assert!(e.contains("`instances`"), "{e}");
        let e = error_of("backend = \"onnx\"\ninstances = 2000");
        assert!(e.contains("`instances = 2000`: at most 256"), "{e}");
        let e = error_of("backend = \"onnx\"\n[warmup]\ncalls = 4294967295");
        assert!(
            e.contains("`warmup.calls = 4294967295`: at most 1000"),
            "{e}"
        );
        let e = error_of("backend = \"onnx\"\nthreads = 100000");
        assert!(e.contains("`threads = 100000`: at most 1024"), "{e}");
        let e = error_of("backend = \"onnx\"\n[warmup]\nbatch_sizes = [8]");
        assert!(e.contains("has no batch dimension"), "{e}");
        let e = error_of("backend = \"onnx\"\ninstances = 5\nthreads = 1024");
        assert!(e.contains("5120 threads, more than 4096 in all"), "{e}");
        let e = error_of("backend = \"onnx\"\n[tokenizer]\nmax_length = 4294967295");
        assert!(
            e.contains("`tokenizer.max_length = 4294967295`: at most 131072"),
            "{e}"
        );
        let e = error_of("backend = \"onnx\"\nmax_batch_size = 4\n[batching]\nmax_queue_size = 0");
        assert!(e.contains("`batching.max_queue_size = 0`"), "{e}");
        let e =
            error_of("backend = \"onnx\"\nmax_batch_size = 4\n[batching]\nmax_queue_wait_us = 0");
        assert!(
            e.contains("`batching.max_queue_wait_us = 0` is no wait"),
            "{e}"
        );
        let e = error_of(
            "backend = \"onnx\"\n[[input]]\nname = \"X\"\ndatatype = \"FLOAT\"\ndims = [1]",
        );
        assert!(e.contains("unknown datatype `FLOAT`"), "{e}");
        let e = error_of("backend = \"onnx\"\n[batching]\nmax_queue_delay_us = 5");
        assert!(e.contains("max_batch_size"), "{e}");
        let e = error_of(
            "backend = \"onnx\"\nmax_batch_size = 8\n[batching]\nmax_queue_delay_us = 30000000",
        );
        assert!(
            e.contains("`batching.max_queue_delay_us = 30000000`") && e.contains("microseconds"),
            "{e}"
        );
    }

    #[test]
    fn labels_name_an_output_file_and_no_input_has_them() {
        let c = ModelConfig::from_toml(
            "backend = \"onnx\"\n[[output]]\nname = \"P\"\ndatatype = \"FP32\"\ndims = [3]\nlabels = \"classes.txt\"",
        )
        .unwrap();
        assert_eq!(c.labels_file("P"), Some(Path::new("classes.txt")));
        assert_eq!(c.labels_file("Q"), None);
        let e = ModelConfig::from_toml(
            "backend = \"onnx\"\n[[input]]\nname = \"X\"\ndatatype = \"FP32\"\ndims = [3]\nlabels = \"x.txt\"",
        )
        .unwrap_err();
        assert!(
            e.contains("`[[input]]` `X`") && e.contains("inputs have none"),
            "{e}"
        );
    }

    #[test]
    fn isolation_is_none_unless_asked() {
        let c = ModelConfig::from_toml("backend = \"python\"").unwrap();
        assert_eq!(c.isolation, Isolation::None);
        let c = ModelConfig::from_toml("backend = \"python\"\nisolation = \"process\"").unwrap();
        assert_eq!(c.isolation, Isolation::Process);
        let e = ModelConfig::from_toml("backend = \"python\"\nisolation = \"thread\"").unwrap_err();
        assert!(e.contains("isolation") && e.contains("process"), "{e}");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let e = ModelConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        std::fs::write(&path, "backend = 3").unwrap();
        let e = ModelConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("config.toml") && e.contains("backend"), "{e}");
    }
}

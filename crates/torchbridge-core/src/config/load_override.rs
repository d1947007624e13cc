//! A config given with a load request (Triton's `config` load parameter), used instead of
//! what the model's `config.toml` says until the model is next loaded without one.
//!
//! Triton's clients send it as the JSON of Triton's `ModelConfig` — typically the answer
//! of the model-config endpoint, edited (more instances, another batch size). That form
//! is merged into the model's `config.toml`: the Triton fields it holds replace theirs,
//! the rest (the bridge's own settings) stay. A text that is not a JSON object is read
//! as a whole `config.toml` instead. The text itself is kept, so an isolated worker
//! process can apply the same override to the same files.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{BackendKind, BatchingConfig, Device, ModelConfig, TensorConfig, VersionPolicy};
use crate::DataType;

/// A config override, checked for form when the load request arrives and applied to the
/// model's `config.toml` when the model opens.
#[derive(Debug, Clone)]
pub struct ConfigOverride {
    text: Arc<str>,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    /// Triton's `ModelConfig` JSON: merged field by field.
    Triton(Map<String, Value>),
    /// A whole `config.toml`.
    Toml(Box<ModelConfig>),
}

impl ConfigOverride {
    /// Reads `text`: a JSON object (Triton's `ModelConfig`), or else a whole `config.toml`.
    /// The error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let form = if text.trim_start().starts_with('{') {
            match serde_json::from_str::<Value>(text).map(|v| as_proto_json(v, "")) {
                Ok(Value::Object(fields)) => Form::Triton(fields),
                Ok(_) => unreachable!("text starting with '{{' parsed as a JSON object"),
                Err(e) => return Err(format!("is not valid JSON: {e}")),
            }
        } else {
            if let Err(e) = toml::from_str::<toml::Table>(text) {
                return Err(format!(
                    "is neither a JSON object (Triton's model config) nor TOML (a whole \
                     config.toml): {e}"
                ));
            }
            let config = ModelConfig::from_toml(text)
                .map_err(|e| format!("is a config.toml that cannot serve: {e}"))?;
            Form::Toml(Box::new(config))
        };
        Ok(ConfigOverride {
            text: text.into(),
            form,
        })
    }

    /// The text it was read from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// For a load that carries the model's files: the `config.toml` to write beside them,
    /// and the override still to apply to it. A whole `config.toml` is written as it is;
    /// Triton's JSON needs its `backend` (or `platform`) to make one, and is then merged
    /// into it as usual.
    pub fn for_files(&self) -> Result<(String, Option<ConfigOverride>), String> {
        let fields = match &self.form {
            Form::Toml(config) => {
                // The client's own model, but still the server's file system.
                reads_only_inside(config)?;
                return Ok((self.text.to_string(), None));
            }
            Form::Triton(fields) => fields,
        };
        let named = |key: &str| {
            fields
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let bridge = match (named("backend"), named("platform")) {
            (Some(b), _) => backend(b)?,
            (None, Some("onnxruntime_onnx")) => BackendKind::Onnx,
            (None, Some("pytorch_libtorch")) => BackendKind::Torchscript,
            (None, Some(p)) => return Err(format!("names platform {p:?}, which no bridge serves")),
            (None, None) => {
                return Err(
                    "names no `backend`: with the model's files, it is the whole config".into(),
                );
            }
        };
        Ok((format!("backend = \"{bridge}\"\n"), Some(self.clone())))
    }

    /// The config model `name` loads with, given what its `config.toml` says.
    pub fn apply(&self, base: &ModelConfig, name: &str) -> Result<ModelConfig, String> {
        let config = match &self.form {
            Form::Toml(config) => (**config).clone(),
            Form::Triton(fields) => merge(base.clone(), fields, name)?,
        };
        keeps_the_operators_trust(base, &config)?;
        config.check()?;
        Ok(config)
    }
}

/// Integer fields of Triton's model config. Protobuf's JSON (what tritonclient's gRPC
/// `get_model_config(as_json=True)` gives back) writes 64-bit integers as strings.
const INTEGER_FIELDS: [&str; 9] = [
    "dims",
    "max_batch_size",
    "count",
    "gpus",
    "max_queue_delay_microseconds",
    "preferred_batch_size",
    "max_queue_size",
    "num_versions",
    "versions",
];

/// Reads Triton's config JSON as protobuf's JSON parser (Triton's own) does: field names
/// in lowerCamelCase as well as snake_case, and integers as strings as well as numbers.
/// The names of `parameters` are the user's own and are left alone.
fn as_proto_json(value: Value, key: &str) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| {
                    let k = if key == "parameters" {
                        k
                    } else {
                        snake_case(&k)
                    };
                    let v = as_proto_json(v, &k);
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| as_proto_json(v, key)).collect())
        }
        Value::String(text) if INTEGER_FIELDS.contains(&key) => match text.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(text),
        },
        other => other,
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A config sent with a load comes from a client: it may not decide what the operator
/// decides — whether a pickle may run, which virtualenv's code is imported — nor make the
/// model read files outside its directory.
fn keeps_the_operators_trust(base: &ModelConfig, config: &ModelConfig) -> Result<(), String> {
    let operators = "is the operator's to set in the repository's config.toml, not a load's";
    if config.trust_pickle != base.trust_pickle {
        return Err(format!("`trust_pickle` {operators}"));
    }
    if config.python_env != base.python_env {
        return Err(format!("`python_env` {operators}"));
    }
    // A process per instance costs a whole model's memory each: a client's load must
    // not turn it on.
    if config.isolation != base.isolation {
        return Err(format!("`isolation` {operators}"));
    }
    reads_only_inside(config)
}

/// A config from a client names no file outside the model's directory (`labels` are
/// checked where they are read, for every config).
fn reads_only_inside(config: &ModelConfig) -> Result<(), String> {
    if let Some(tokenizer) = &config.tokenizer {
        let inside = tokenizer.file.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if !inside {
            return Err(format!(
                "`tokenizer.file` {:?} must be a path inside the version directory",
                tokenizer.file
            ));
        }
    }
    Ok(())
}

/// Fields that describe the model rather than configure it, or whose only value here is
/// the one torchbridge shows: accepted and left alone.
const DESCRIPTIVE: [&str; 3] = ["platform", "default_model_filename", "runtime"];

fn merge(
    mut c: ModelConfig,
    fields: &Map<String, Value>,
    name: &str,
) -> Result<ModelConfig, String> {
    for (key, value) in fields {
        let at = |message: String| format!("`{key}`: {message}");
        match key.as_str() {
            "name" => match value.as_str() {
                Some(n) if n.is_empty() || n == name => {}
                _ => return Err(at(format!("is {value}, but the model loading is `{name}`"))),
            },
            "backend" => {
                if let Some(b) = value.as_str().filter(|b| !b.is_empty()) {
                    c.backend = backend(b).map_err(at)?;
                }
            }
            "max_batch_size" => c.max_batch_size = uint(value).map_err(at)?,
            "instance_group" => instance_groups(&mut c, value).map_err(at)?,
            "dynamic_batching" => c.batching = batching(c.batching.take(), value).map_err(at)?,
            "version_policy" => c.version_policy = version_policy(value).map_err(at)?,
            "input" => {
                let given = tensors(value, false).map_err(at)?;
                // A `[tokenizer]` model shows its text input in place of the model's
                // own: given back, the config's inputs stand.
                let shown = c.tokenizer.as_ref().is_some_and(|t| {
                    matches!(given.as_slice(), [one] if one.name == t.input
                        && one.datatype == DataType::Bytes)
                });
                if !shown {
                    c.inputs = given;
                }
            }
            "output" => c.outputs = tensors(value, true).map_err(at)?,
            "parameters" => c.parameters = parameters(value, &c.parameters).map_err(at)?,
            k if DESCRIPTIVE.contains(&k) || is_empty(value) => {}
            _ => return Err(at("is not a setting torchbridge has; leave it out".into())),
        }
    }
    Ok(c)
}

/// A value that asks for nothing (Triton's clients send unset fields this way).
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

fn backend(name: &str) -> Result<BackendKind, String> {
    match name {
        "onnxruntime" => Ok(BackendKind::Onnx),
        "pytorch" | "libtorch" => Ok(BackendKind::Torchscript),
        _ => name.parse(),
    }
}

fn uint(value: &Value) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("must be a whole number ≥ 0, got {value}"))
}

fn object(value: &Value) -> Result<&Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("must be an object, got {value}"))
}

fn array(value: &Value) -> Result<&Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("must be a list, got {value}"))
}

/// `instances` is the sum of the groups' counts; the kind (and first GPU) the device.
fn instance_groups(c: &mut ModelConfig, value: &Value) -> Result<(), String> {
    let mut count: u32 = 0;
    let mut device = None;
    for group in array(value)? {
        let group = object(group)?;
        count = count
            .checked_add(group.get("count").map_or(Ok(1), uint)?)
            .ok_or("the counts add up to more instances than there can be")?;
        let kind = match group.get("kind").and_then(Value::as_str) {
            None | Some("KIND_AUTO") => None,
            Some("KIND_CPU") => Some(Device::Cpu),
            Some("KIND_GPU") => {
                let gpus = group
                    .get("gpus")
                    .map_or(Ok(&[][..]), |g| array(g).map(|a| &a[..]))?;
                if gpus.len() > 1 {
                    return Err(format!(
                        "a group on GPUs {}: torchbridge runs a model's instances on one device",
                        Value::Array(gpus.to_vec())
                    ));
                }
                let gpu = gpus.first().map_or(Ok(0), uint)?;
                Some(Device::Cuda(gpu as usize))
            }
            Some(other) => return Err(format!("kind {other:?} is not KIND_CPU or KIND_GPU")),
        };
        match (device, kind) {
            (Some(d), Some(k)) if d != k => {
                return Err(format!(
                    "groups on {d} and {k}: torchbridge runs a model's instances on one device"
                ));
            }
            (None, k) => device = k,
            _ => {}
        }
    }
    if count > 0 {
        c.instances = count;
    }
    if let Some(d) = device {
        c.device = d;
    }
    Ok(())
}

/// `null` turns batching off; an object turns it on, its fields replacing the
/// `[batching]` table's (or the defaults').
fn batching(base: Option<BatchingConfig>, value: &Value) -> Result<Option<BatchingConfig>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let fields = object(value)?;
    let mut b = base.unwrap_or_default();
    for (key, value) in fields {
        let at = |message: String| format!("`{key}` {message}");
        match key.as_str() {
            "max_queue_delay_microseconds" => {
                b.max_queue_delay_us = value.as_u64().ok_or_else(|| at(format!("is {value}")))?;
            }
            "preferred_batch_size" => {
                b.preferred_batch_sizes = array(value)
                    .map_err(at)?
                    .iter()
                    .map(uint)
                    .collect::<Result<_, _>>()
                    .map_err(at)?;
            }
            "default_queue_policy" => {
                for (field, setting) in object(value).map_err(at)? {
                    match field.as_str() {
                        // Triton's 0 means "no limit"; torchbridge's queue always has one.
                        "max_queue_size" => match uint(setting).map_err(at)? {
                            0 => {}
                            n => b.max_queue_size = n,
                        },
                        // Triton's default action, and the only one torchbridge takes.
                        "timeout_action" if setting == "REJECT" => {}
                        _ if is_empty(setting) => {}
                        _ => {
                            return Err(at(format!(
                                "sets `{field}` to {setting}, which torchbridge does not have \
                                 (a request's own `timeout` parameter bounds its wait)"
                            )));
                        }
                    }
                }
            }
            "preserve_ordering" => {}
            _ if is_empty(value) => {}
            _ => return Err(at("is not a batching setting torchbridge has".into())),
        }
    }
    Ok(Some(b))
}

fn version_policy(value: &Value) -> Result<VersionPolicy, String> {
    let fields = object(value)?;
    let (kind, body) = match fields.iter().collect::<Vec<_>>()[..] {
        [(kind, body)] => (kind.as_str(), body),
        _ => return Err("must name one of latest, all, specific".into()),
    };
    match kind {
        "latest" => {
            let n = body.get("num_versions").map_or(Ok(1), uint)?;
            Ok(VersionPolicy::Latest(n))
        }
        "all" => Ok(VersionPolicy::All),
        "specific" => {
            let versions = body
                .get("versions")
                .map_or(Ok(&[][..]), |v| array(v).map(|a| &a[..]))?;
            let versions = versions
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| format!("`specific.versions` holds {v}"))
                })
                .collect::<Result<_, _>>()?;
            Ok(VersionPolicy::Specific(versions))
        }
        other => Err(format!("`{other}` is not latest, all or specific")),
    }
}

/// Triton's `input` / `output` entries. Its flags that change how a tensor is read
/// (shape tensors, ragged batches, optional inputs, reshapes) are refused if set.
fn tensors(value: &Value, outputs: bool) -> Result<Vec<TensorConfig>, String> {
    array(value)?
        .iter()
        .map(|entry| {
            let fields = object(entry)?;
            let name = fields
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("an entry has no name: {entry}"))?;
            let at = |message: String| format!("`{name}`: {message}");
            let mut tensor = TensorConfig {
                name: name.to_string(),
                datatype: DataType::Fp32,
                dims: Vec::new(),
                labels: None,
            };
            let mut typed = false;
            for (key, value) in fields {
                match key.as_str() {
                    "name" | "format" => {}
                    "data_type" => {
                        tensor.datatype = datatype(value).map_err(at)?;
                        typed = true;
                    }
                    "dims" => {
                        tensor.dims = array(value)
                            .map_err(at)?
                            .iter()
                            .map(|d| d.as_i64().ok_or_else(|| at(format!("dims hold {d}"))))
                            .collect::<Result<_, _>>()?;
                    }
                    "label_filename" if outputs => {
                        tensor.labels = value.as_str().filter(|f| !f.is_empty()).map(PathBuf::from);
                    }
                    _ if is_empty(value) => {}
                    _ => {
                        return Err(at(format!(
                            "`{key}` is {value}; torchbridge has no such setting"
                        )));
                    }
                }
            }
            if !typed {
                return Err(at("has no data_type".into()));
            }
            Ok(tensor)
        })
        .collect()
}

/// `TYPE_FP32` → FP32; Triton's `TYPE_STRING` is the protocol's BYTES.
fn datatype(value: &Value) -> Result<DataType, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("data_type must be a string, got {value}"))?;
    match text.strip_prefix("TYPE_") {
        Some("STRING") => Ok(DataType::Bytes),
        Some(short) => short.parse(),
        None => Err(format!("data_type {text:?} is not a Triton TYPE_… name")),
    }
}

/// Triton's `{"key": {"string_value": "…"}}`; python handlers get the strings, except
/// where config.toml (`base`) has a number or boolean there and the text reads as one of
/// that type: the config routes show such values as text, and sending a shown config
/// back (edited or not) keeps their types.
fn parameters(value: &Value, base: &toml::Table) -> Result<toml::Table, String> {
    object(value)?
        .iter()
        .map(|(key, entry)| {
            let text = entry
                .get("string_value")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("`{key}` must be {{\"string_value\": \"…\"}}, got {entry}")
                })?;
            // An edited value keeps the type config.toml gave it where the text reads
            // as one (a handler doing `config["delay_ms"] / 1000` must not get "500").
            let typed = match base.get(key) {
                Some(toml::Value::Integer(_)) => text.parse().ok().map(toml::Value::Integer),
                Some(toml::Value::Float(_)) => text.parse().ok().map(toml::Value::Float),
                Some(toml::Value::Boolean(_)) => text.parse().ok().map(toml::Value::Boolean),
                // An array or table comes back as shown: kept if unchanged.
                Some(kept) if !kept.is_str() && kept.to_string() == text => Some(kept.clone()),
                _ => None,
            };
            let value = typed.unwrap_or_else(|| toml::Value::String(text.to_string()));
            Ok((key.clone(), value))
        })
        .collect()
}

#[cfg(test)]
#[path = "load_override_tests.rs"]
mod tests;

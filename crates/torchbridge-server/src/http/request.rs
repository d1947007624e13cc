//! Decoding `POST …/infer`: the JSON inference request, with each input's data either in
//! JSON (`data`) or in the binary part of the body (`parameters.binary_data_size`).
//!
//! An input's `data` is decoded as it is read when `name` and `datatype` came before it
//! (as every client we know writes them); otherwise its raw JSON text is borrowed from
//! the body and decoded once the object ends (serde_json's `json!` sorts keys, so
//! `data` comes first from clients built on it, the bench among them).

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use torchbridge_core::{DataType, ModelMetadata, OutputLabels, Tensor};

use super::binary::{BinaryData, split_body};
use super::error::ApiError;
use super::tensor_json::{DataSeed, Decoded, quote_non_finite};
use crate::{Limits, Placement, SharedMemory, classification};

/// A decoded inference request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    pub outputs: OutputSelection,
    /// The request's `parameters.timeout` (microseconds, as Triton takes it).
    pub timeout: Option<Duration>,
}

/// Which outputs to return, in which order, and whether each goes as binary data.
#[derive(Debug, Default)]
pub struct OutputSelection {
    /// `None`: every output of the model.
    pub requested: Option<Vec<RequestedOutput>>,
    /// The request's `parameters.binary_data_output`.
    pub binary_default: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: OutputParameters,
    /// Where its `shared_memory_*` parameters place it, read once when decoded.
    #[serde(skip)]
    at: Option<Placement>,
    /// How many classes it is asked for as, read once when checked against the model.
    #[serde(skip)]
    classes: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OutputParameters {
    pub binary_data: Option<bool>,
    /// How many of the output's highest values to return instead of the tensor.
    classification: Option<serde_json::Value>,
    shared_memory_region: Option<String>,
    shared_memory_byte_size: Option<u64>,
    shared_memory_offset: Option<u64>,
}

/// How one output goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Json,
    Binary,
    /// Written into a registered shared-memory region; the response names it.
    SharedMemory(Placement),
}

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: RequestParameters,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Default, Deserialize)]
struct RequestParameters {
    #[serde(default)]
    binary_data_output: bool,
    #[serde(default, deserialize_with = "timeout_us")]
    timeout: Option<u64>,
}

/// `parameters.timeout`, refused by name when it is no whole number of microseconds.
fn timeout_us<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => value.as_u64().map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "parameter `timeout` must be a whole number of microseconds ≥ 0, got {value}"
            ))
        }),
    }
}

/// Why the request's JSON could not be read, with what most likely caused it: binary
/// tensor data after JSON whose length the header does not give, or cuts short.
fn invalid_request(e: &serde_json::Error, header_length: Option<usize>) -> String {
    let hint = match (header_length, e.classify()) {
        (None, serde_json::error::Category::Syntax) if e.to_string().contains("trailing") => {
            "; a body that carries binary tensor data after its JSON needs the \
             Inference-Header-Content-Length header, the JSON's length in bytes"
                .to_string()
        }
        (Some(length), serde_json::error::Category::Eof) => format!(
            "; Inference-Header-Content-Length says the JSON is {length} bytes, which cuts \
             it short"
        ),
        _ => String::new(),
    };
    let what = e.to_string();
    // serde names the Rust type when the body is a JSON array, not an object.
    let what = if what.contains("RequestJson") {
        "the request must be a JSON object with `inputs`".to_string()
    } else {
        what
    };
    format!("invalid inference request: {what}{hint}")
}

/// Decodes a request body (already inflated), given its `Inference-Header-Content-Length`,
/// within `limits`; inputs placed in shared memory are read from `shared_memory`.
pub fn decode(
    body: Bytes,
    header_length: Option<usize>,
    limits: &Limits,
    shared_memory: &SharedMemory,
) -> Result<InferRequest, ApiError> {
    let (json, mut binary) = split_body(body, header_length)?;
    limits.check_json_depth(&json)?;
    // NaN and the infinities as Triton's clients write them, quoted for serde_json.
    let quoted = quote_non_finite(&json);
    let request: RequestJson = serde_json::from_slice(quoted.as_deref().unwrap_or(&json))
        .map_err(|e| ApiError::bad_request(invalid_request(&e, header_length)))?;
    limits.check_count("inputs", request.inputs.len())?;
    if let Some(outputs) = &request.outputs {
        limits.check_count("requested outputs", outputs.len())?;
    }
    let inputs = request
        .inputs
        .into_iter()
        .map(|input| input.into_tensor(&mut binary, limits, shared_memory))
        .collect::<Result<Vec<_>, _>>()?;
    binary.finish()?;
    let mut outputs = OutputSelection {
        // An empty list asks for nothing in particular: every output, as over gRPC.
        requested: request.outputs.filter(|o| !o.is_empty()),
        binary_default: request.parameters.binary_data_output,
    };
    outputs.read_parameters()?;
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs,
        // 0 is Triton's "no timeout".
        timeout: request
            .parameters
            .timeout
            .filter(|&us| us > 0)
            .map(Duration::from_micros),
    })
}

impl OutputSelection {
    /// Reads each requested output's shared-memory placement; fails on an output asked
    /// for twice.
    fn read_parameters(&mut self) -> Result<(), ApiError> {
        let requested = self.requested.iter_mut().flatten();
        let mut seen: Vec<&str> = Vec::new();
        for o in requested {
            if seen.contains(&o.name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "output `{}` is requested twice",
                    o.name
                )));
            }
            o.at = o.read_placement()?;
            seen.push(&o.name);
        }
        Ok(())
    }

    /// Fails on a requested output the model does not have, or one it cannot classify;
    /// reads how many classes each is asked for as.
    pub fn check(&mut self, model: &ModelMetadata) -> Result<(), ApiError> {
        for o in self.requested.iter_mut().flatten() {
            o.classes = o.class_count(model)?;
            if !model.outputs.iter().any(|spec| spec.name == o.name) {
                let names: Vec<_> = model
                    .outputs
                    .iter()
                    .map(|s| format!("`{}`", s.name))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "model `{}` has no output `{}`; its outputs are {}",
                    model.name,
                    o.name,
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Finds the shared-memory region of each output placed in one (see
    /// [`SharedMemory::bind`]).
    pub fn bind(&mut self, shared_memory: &SharedMemory) -> Result<(), ApiError> {
        for o in self.requested.iter_mut().flatten() {
            if let Some(at) = &mut o.at {
                shared_memory.bind(&o.name, at)?;
            }
        }
        Ok(())
    }

    /// The outputs to send, in order, each with how it goes back; an output asked for as
    /// classes (see [`OutputSelection::check`]) is replaced by them.
    pub fn select(
        &self,
        outputs: Vec<Tensor>,
        model: &ModelMetadata,
        labels: &OutputLabels,
    ) -> Result<Vec<(Tensor, Delivery)>, ApiError> {
        let inline = |binary| match binary {
            true => Delivery::Binary,
            false => Delivery::Json,
        };
        let Some(requested) = &self.requested else {
            return Ok(outputs
                .into_iter()
                .map(|t| (t, inline(self.binary_default)))
                .collect());
        };
        let mut outputs: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
        requested
            .iter()
            .map(|o| {
                let tensor = outputs
                    .iter_mut()
                    .find(|t| t.as_ref().is_some_and(|t| t.name == o.name))
                    .and_then(Option::take)
                    .ok_or_else(|| ApiError::bad_request(format!("no output `{}`", o.name)))?;
                let tensor = match o.classes {
                    Some(count) => classification::classify(
                        &tensor,
                        count,
                        model.max_batch_size > 0,
                        labels.get(&o.name),
                    )?,
                    None => tensor,
                };
                let delivery = match &o.at {
                    Some(placement) => Delivery::SharedMemory(placement.clone()),
                    None => inline(o.parameters.binary_data.unwrap_or(self.binary_default)),
                };
                Ok((tensor, delivery))
            })
            .collect()
    }
}

impl RequestedOutput {
    /// How many classes the request asks for, checked against `model`; `None`: the tensor.
    fn class_count(&self, model: &ModelMetadata) -> Result<Option<usize>, ApiError> {
        let Some(value) = &self.parameters.classification else {
            return Ok(None);
        };
        let count = value.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "output `{}`: {} takes a whole number of classes, not {value}",
                self.name,
                classification::PARAMETER
            ))
        })?;
        Ok(Some(classification::check(
            model,
            &self.name,
            count.into(),
        )?))
    }

    fn read_placement(&self) -> Result<Option<Placement>, ApiError> {
        let p = &self.parameters;
        Ok(Placement::from_parameters(
            &self.name,
            p.shared_memory_region.clone(),
            p.shared_memory_byte_size,
            p.shared_memory_offset,
        )?)
    }
}

/// One `inputs[i]` object, its data decoded or still to be taken from the binary part
/// or from shared memory.
struct InputJson {
    name: String,
    datatype: DataType,
    shape: Vec<i64>,
    binary_data_size: Option<u64>,
    data: Option<Decoded>,
    shared_memory: Option<Placement>,
}

#[derive(Default, Deserialize)]
struct InputParameters {
    binary_data_size: Option<u64>,
    shared_memory_region: Option<String>,
    shared_memory_byte_size: Option<u64>,
    shared_memory_offset: Option<u64>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Name,
    Datatype,
    Shape,
    Parameters,
    Data,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for InputJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(InputVisitor)
    }
}

struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = InputJson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input tensor object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputJson, A::Error> {
        let (mut name, mut datatype, mut shape) = (None::<String>, None, None::<Vec<i64>>);
        let mut parameters = InputParameters::default();
        let (mut data, mut raw) = (None, None::<&'de RawValue>);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Name => name = Some(map.next_value()?),
                Field::Datatype => datatype = Some(map.next_value()?),
                Field::Shape => shape = Some(map.next_value()?),
                Field::Parameters => parameters = map.next_value()?,
                Field::Data => match (&name, datatype) {
                    (Some(name), Some(datatype)) => {
                        let capacity = shape.as_deref().map_or(0, capacity_hint);
                        data = Some(map.next_value_seed(DataSeed {
                            name,
                            datatype,
                            capacity,
                        })?);
                    }
                    _ => raw = Some(map.next_value()?),
                },
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let datatype = datatype.ok_or_else(|| de::Error::missing_field("datatype"))?;
        let shape = shape.ok_or_else(|| de::Error::missing_field("shape"))?;
        let shared_memory = Placement::from_parameters(
            &name,
            parameters.shared_memory_region,
            parameters.shared_memory_byte_size,
            parameters.shared_memory_offset,
        )
        .map_err(de::Error::custom)?;
        if let Some(raw) = raw {
            let seed = DataSeed {
                name: &name,
                datatype,
                capacity: capacity_hint(&shape),
            };
            data = Some(seed.decode_text(raw.get()).map_err(de::Error::custom)?);
        }
        Ok(InputJson {
            name,
            datatype,
            shape,
            binary_data_size: parameters.binary_data_size,
            data,
            shared_memory,
        })
    }
}

/// Elements a shape calls for, to size the buffer; capped, since the shape is untrusted.
fn capacity_hint(shape: &[i64]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
        .unwrap_or(0)
        .min(1 << 20)
}

impl InputJson {
    fn into_tensor(
        self,
        binary: &mut BinaryData,
        limits: &Limits,
        shared_memory: &SharedMemory,
    ) -> Result<Tensor, ApiError> {
        let InputJson {
            name,
            datatype,
            shape,
            binary_data_size,
            data,
            shared_memory: placement,
        } = self;
        if let Some(at) = placement {
            if binary_data_size.is_some() || data.is_some() {
                return Err(ApiError::bad_request(format!(
                    "input `{name}` is in shared memory and also has `data` or \
                     `parameters.binary_data_size`; send it one way"
                )));
            }
            let bytes = shared_memory.read_input(&name, datatype, &shape, &at, limits)?;
            return Ok(Tensor::new(name, datatype, shape, bytes)?);
        }
        if let Some(d) = shape.iter().find(|&&d| d < 0) {
            return Err(ApiError::bad_request(format!(
                "input `{name}`: shape {shape:?} has a negative dimension ({d})"
            )));
        }
        limits.check_shape(&name, &shape)?;
        let bytes: Bytes = match (binary_data_size, data) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "input `{name}` has both `data` and `parameters.binary_data_size`"
                )));
            }
            (None, None) => {
                return Err(ApiError::bad_request(format!(
                    "input `{name}` has no `data` and no `parameters.binary_data_size`"
                )));
            }
            (Some(size), None) => binary.take(&name, size)?,
            (None, Some(decoded)) => {
                let needed = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
                if needed != Some(decoded.count as u64) {
                    return Err(ApiError::bad_request(format!(
                        "input `{name}`: shape {shape:?} needs {} elements, `data` holds {}",
                        needed.map_or("too many".into(), |n| n.to_string()),
                        decoded.count
                    )));
                }
                decoded.bytes.into()
            }
        };
        limits.check_tensor(&name, datatype, &shape, &bytes)?;
        Ok(Tensor::new(name, datatype, shape, bytes)?)
    }
}

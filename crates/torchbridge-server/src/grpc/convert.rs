//! `ModelInferRequest` → [`Tensor`]s and [`Tensor`]s → `ModelInferResponse`.
//!
//! Inputs arrive either all in `raw_input_contents` (one entry per input, in input order:
//! what tritonclient and perf_analyzer send) or all as typed `contents`, but for those
//! placed in a shared-memory region, which are read from there. Raw bytes are
//! already the tensor's little-endian layout, so each entry becomes the tensor's buffer as
//! is; typed contents are packed once. Outputs always go back as `raw_output_contents`,
//! one entry per output in output order — what tritonclient reads — and are copied only
//! when the response is encoded; an output written to shared memory has an empty entry.

use std::fmt::Display;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use torchbridge_core::{DataType, Error, ModelMetadata, OutputLabels, Result, Tensor};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferResponse};
use super::shared_memory::{output_parameters, placement};
use crate::{Limits, Placement, SharedMemory, classification};

#[cfg(test)]
mod roundtrip;
#[cfg(test)]
mod tests;

fn invalid(message: String) -> Error {
    Error::InvalidInput(message)
}

/// A request's model version: empty means the latest.
pub(crate) fn version(text: &str) -> Result<Option<u64>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        invalid(format!(
            "model version `{text}` is not a version number (leave it empty for the latest)"
        ))
    })
}

/// The request's `timeout` parameter, in microseconds as Triton's clients send it: the
/// time an instance has to start on the request before it is answered with a timeout
/// (0, as in Triton, is none).
pub(crate) fn timeout(parameter: Option<&InferParameter>) -> Result<Option<Duration>> {
    let micros = match parameter.and_then(|p| p.parameter_choice.as_ref()) {
        None => return Ok(None),
        Some(ParameterChoice::Int64Param(us)) => u64::try_from(*us).ok(),
        Some(ParameterChoice::Uint64Param(us)) => Some(*us),
        Some(_) => None,
    };
    micros
        .map(|us| Some(Duration::from_micros(us)).filter(|_| us > 0))
        .ok_or_else(|| {
            invalid("the `timeout` parameter must be a number of microseconds ≥ 0".into())
        })
}

/// The request's input tensors, in request order, each within `limits`; those placed in
/// shared memory are read from `shared_memory`.
pub(crate) fn inputs(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Bytes>,
    limits: &Limits,
    shared_memory: &SharedMemory,
) -> Result<Vec<Tensor>> {
    limits.check_count("inputs", inputs.len())?;
    let placements = inputs
        .iter()
        .map(|input| placement(&input.name, &input.parameters))
        .collect::<Result<Vec<_>>>()?;
    let in_request = placements.iter().filter(|p| p.is_none()).count();
    if !raw.is_empty() && raw.len() != in_request {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {in_request} inputs (not counting those in \
             shared memory); give one per input, in input order, or none",
            raw.len(),
        )));
    }
    let raw_given = !raw.is_empty();
    let mut raw = raw.into_iter().enumerate();
    inputs
        .into_iter()
        .zip(placements)
        .map(|(input, placement)| match placement {
            Some(at) => shared_input(input, &at, limits, shared_memory),
            None if raw_given => {
                let (i, data) = raw.next().expect("one entry per input, counted above");
                raw_input(input, i, data, limits)
            }
            None => typed_input(input, limits),
        })
        .collect()
}

fn raw_input(input: InferInputTensor, i: usize, data: Bytes, limits: &Limits) -> Result<Tensor> {
    if has_contents(&input) {
        return Err(invalid(format!(
            "input `{}` has typed contents while raw_input_contents is used; send every input one way",
            input.name
        )));
    }
    let datatype = datatype(&input)?;
    limits.check_tensor(&input.name, datatype, &input.shape, &data)?;
    Tensor::new(input.name, datatype, input.shape, data)
        .map_err(|e| invalid(format!("raw_input_contents[{i}]: {e}")))
}

fn shared_input(
    input: InferInputTensor,
    at: &Placement,
    limits: &Limits,
    shared_memory: &SharedMemory,
) -> Result<Tensor> {
    if has_contents(&input) {
        return Err(invalid(format!(
            "input `{}` is in shared memory and also has typed contents; send it one way",
            input.name
        )));
    }
    let datatype = datatype(&input)?;
    let data = shared_memory.read_input(&input.name, datatype, &input.shape, at, limits)?;
    Tensor::new(input.name, datatype, input.shape, data)
}

fn has_contents(input: &InferInputTensor) -> bool {
    input
        .contents
        .as_ref()
        .is_some_and(|c| !filled(c).is_empty())
}

fn datatype(input: &InferInputTensor) -> Result<DataType> {
    input
        .datatype
        .parse()
        .map_err(|e| invalid(format!("input `{}`: {e}", input.name)))
}

/// The typed field a datatype travels in; FP16 and BF16 have none.
fn field_for(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => return None,
    })
}

/// The typed fields that hold elements, with their lengths.
fn filled(c: &InferTensorContents) -> Vec<(&'static str, usize)> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .collect()
}

fn typed_input(input: InferInputTensor, limits: &Limits) -> Result<Tensor> {
    let datatype = datatype(&input)?;
    let name = &input.name;
    limits.check_shape(name, &input.shape)?;
    let no_field = || {
        invalid(format!(
            "input `{name}` is {datatype}, which has no typed contents field: send it in raw_input_contents"
        ))
    };
    let field = field_for(datatype).ok_or_else(no_field)?;
    let contents = input.contents.unwrap_or_default();
    if let Some((other, _)) = filled(&contents).into_iter().find(|&(f, _)| f != field) {
        return Err(invalid(format!(
            "input `{name}` is {datatype}, whose data goes in {field}, but {other} is set"
        )));
    }
    let count = input
        .shape
        .iter()
        .try_fold(1usize, |n, &d| usize::try_from(d).ok()?.checked_mul(n))
        .ok_or_else(|| {
            invalid(format!(
                "input `{name}`: shape {:?} has a negative dimension or is too large",
                input.shape
            ))
        })?;
    let given = filled(&contents).first().map_or(0, |&(_, n)| n);
    if given != count {
        return Err(invalid(format!(
            "input `{name}`: shape {:?} needs {count} elements, {field} holds {given}",
            input.shape
        )));
    }
    let c = contents;
    macro_rules! pack {
        ($values:expr, $to_bytes:expr) => {
            Bytes::from(packed(name, datatype, field, &$values, $to_bytes)?)
        };
    }
    let data = match datatype {
        DataType::Bool => pack!(c.bool_contents, |b| Some([u8::from(b)])),
        DataType::Int8 => pack!(c.int_contents, |v| i8::try_from(v)
            .ok()
            .map(i8::to_le_bytes)),
        DataType::Int16 => pack!(c.int_contents, |v| i16::try_from(v)
            .ok()
            .map(i16::to_le_bytes)),
        DataType::Int32 => pack!(c.int_contents, |v: i32| Some(v.to_le_bytes())),
        DataType::Int64 => pack!(c.int64_contents, |v: i64| Some(v.to_le_bytes())),
        DataType::Uint8 => pack!(c.uint_contents, |v| u8::try_from(v)
            .ok()
            .map(u8::to_le_bytes)),
        DataType::Uint16 => pack!(c.uint_contents, |v| u16::try_from(v)
            .ok()
            .map(u16::to_le_bytes)),
        DataType::Uint32 => pack!(c.uint_contents, |v: u32| Some(v.to_le_bytes())),
        DataType::Uint64 => pack!(c.uint64_contents, |v: u64| Some(v.to_le_bytes())),
        DataType::Fp32 => pack!(c.fp32_contents, |v: f32| Some(v.to_le_bytes())),
        DataType::Fp64 => pack!(c.fp64_contents, |v: f64| Some(v.to_le_bytes())),
        DataType::Bytes => {
            limits.check_string_lengths(name, c.bytes_contents.iter().map(Bytes::len))?;
            strings(name, &c.bytes_contents)?
        }
        DataType::Fp16 | DataType::Bf16 => return Err(no_field()),
    };
    Tensor::new(input.name, datatype, input.shape, data)
}

/// Packs typed values as little-endian bytes; `to_bytes` is `None` for a value out of range.
fn packed<S: Copy + Display, const N: usize>(
    input: &str,
    datatype: DataType,
    field: &str,
    values: &[S],
    to_bytes: impl Fn(S) -> Option<[u8; N]>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        let bytes = to_bytes(v).ok_or_else(|| {
            invalid(format!(
                "input `{input}`: {field} holds {v}, outside the {datatype} range"
            ))
        })?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// `BYTES` elements in the protocol's layout: a little-endian `u32` length, then the bytes.
fn strings(input: &str, values: &[Bytes]) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(values.iter().map(|v| 4 + v.len()).sum());
    for v in values {
        let len = u32::try_from(v.len())
            .map_err(|_| invalid(format!("input `{input}`: a BYTES element is over 4 GiB")))?;
        out.put_u32_le(len);
        out.put_slice(v);
    }
    Ok(out.freeze())
}

/// How one requested output goes back: placed in shared memory or inline, as the
/// tensor or as its top classes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OutputPlan {
    pub at: Option<Placement>,
    pub classes: Option<usize>,
}

/// Checks the requested outputs against the model's before it runs; returns how each
/// goes back.
pub(crate) fn check_requested(
    metadata: &ModelMetadata,
    requested: &[InferRequestedOutputTensor],
) -> Result<Vec<OutputPlan>> {
    for (i, r) in requested.iter().enumerate() {
        if requested[..i].iter().any(|o| o.name == r.name) {
            return Err(invalid(format!("output `{}` is requested twice", r.name)));
        }
        if !metadata.outputs.iter().any(|o| o.name == r.name) {
            let names: Vec<_> = metadata
                .outputs
                .iter()
                .map(|o| format!("`{}`", o.name))
                .collect();
            return Err(invalid(format!(
                "model `{}` has no output `{}`; its outputs are {}",
                metadata.name,
                r.name,
                names.join(", ")
            )));
        }
    }
    requested
        .iter()
        .map(|r| {
            Ok(OutputPlan {
                at: placement(&r.name, &r.parameters)?,
                classes: classes(metadata, r)?,
            })
        })
        .collect()
}

/// The `classification` parameter of a requested output (`int64_param`), checked.
fn classes(metadata: &ModelMetadata, r: &InferRequestedOutputTensor) -> Result<Option<usize>> {
    let count = match r
        .parameters
        .get(classification::PARAMETER)
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => return Ok(None),
        Some(ParameterChoice::Int64Param(n)) => i128::from(*n),
        Some(ParameterChoice::Uint64Param(n)) => i128::from(*n),
        Some(_) => {
            return Err(invalid(format!(
                "output `{}`: {} takes a whole number of classes (int64_param)",
                r.name,
                classification::PARAMETER
            )));
        }
    };
    classification::check(metadata, &r.name, count).map(Some)
}

/// The response: the requested outputs (all when none are named), in the order asked
/// for, each as a raw entry in the same order. `plans` (one per requested output, as
/// `check_requested` gives them) say how each goes back: an output asked for as classes
/// is replaced by them (named by `labels`); one placed in shared memory is written there
/// and gets an empty entry and the parameters that say where it is.
pub(crate) fn response(
    metadata: &ModelMetadata,
    labels: &OutputLabels,
    id: String,
    outputs: Vec<Tensor>,
    requested: &[InferRequestedOutputTensor],
    plans: &[OutputPlan],
    shared_memory: &SharedMemory,
) -> Result<ModelInferResponse> {
    assert_eq!(
        requested.len(),
        plans.len(),
        "one plan per requested output"
    );
    let outputs: Vec<(Tensor, Option<&Placement>)> = if requested.is_empty() {
        outputs.into_iter().map(|t| (t, None)).collect()
    } else {
        let mut picked = Vec::with_capacity(requested.len());
        for (r, plan) in requested.iter().zip(plans) {
            let Some(t) = outputs.iter().find(|t| t.name == r.name) else {
                continue;
            };
            let t = match plan.classes {
                Some(count) => classification::classify(
                    t,
                    count,
                    metadata.max_batch_size > 0,
                    labels.get(&r.name),
                )?,
                None => t.clone(),
            };
            picked.push((t, plan.at.as_ref()));
        }
        picked
    };
    let mut entries = Vec::with_capacity(outputs.len());
    let mut raw_output_contents = Vec::with_capacity(outputs.len());
    for (t, at) in outputs {
        let (parameters, data) = match at {
            Some(at) => {
                shared_memory.write(&t.name, at, &t.data)?;
                (output_parameters(at, t.data.len()), Bytes::new())
            }
            None => (Default::default(), t.data),
        };
        entries.push(InferOutputTensor {
            name: t.name,
            datatype: t.datatype.as_str().to_string(),
            shape: t.shape,
            parameters,
            ..Default::default()
        });
        raw_output_contents.push(data);
    }
    Ok(ModelInferResponse {
        model_name: metadata.name.clone(),
        model_version: metadata.version.to_string(),
        id,
        outputs: entries,
        raw_output_contents,
        ..Default::default()
    })
}

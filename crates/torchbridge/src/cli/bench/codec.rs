//! The request, encoded once per run for each protocol, and the check of a probe reply.

use bytes::Bytes;
use prost::Message;
use serde::Serialize;
use serde_json::Value;
use torchbridge::{DataType, ModelMetadata, Tensor};
use torchbridge_server::grpc::proto::model_infer_request::InferInputTensor;
use torchbridge_server::grpc::proto::{ModelInferRequest, ModelInferResponse};

/// An HTTP request body, with its `Inference-Header-Content-Length` when binary data
/// follows the JSON.
#[derive(Debug, Clone)]
pub struct HttpBody {
    pub bytes: Bytes,
    pub header_length: Option<usize>,
}

#[derive(Serialize)]
struct Input<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// A tensor's elements as JSON wants them (f32 printed as f32: the shortest form).
#[derive(Serialize)]
#[serde(untagged)]
enum Data {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    Uint(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Text(Vec<String>),
}

fn data(t: &Tensor) -> anyhow::Result<Data> {
    let ints = |v: Vec<f64>| v.into_iter().map(|x| x as i64).collect();
    Ok(match t.datatype {
        DataType::Bool => Data::Bool(t.to_bools()?),
        DataType::Int64 => Data::Int(t.to_vec::<i64>()?),
        DataType::Uint64 => Data::Uint(t.to_vec::<u64>()?),
        DataType::Fp32 => Data::F32(t.to_vec::<f32>()?),
        DataType::Fp64 => Data::F64(t.to_vec::<f64>()?),
        DataType::Fp16 | DataType::Bf16 => Data::F32(
            torchbridge::compare::to_f64(t)
                .unwrap_or_default()
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
        DataType::Bytes => Data::Text(
            t.strings()?
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        // The smaller integers are exact as f64.
        _ => Data::Int(ints(torchbridge::compare::to_f64(t).unwrap_or_default())),
    })
}

/// `{"inputs": [{…, "data": […]}]}`: every tensor as JSON numbers.
pub fn http_json(inputs: &[Tensor]) -> anyhow::Result<HttpBody> {
    let inputs = inputs
        .iter()
        .map(|t| {
            Ok(Input {
                name: &t.name,
                datatype: t.datatype.as_str(),
                shape: &t.shape,
                data: Some(data(t)?),
                parameters: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = serde_json::to_vec(&serde_json::json!({ "inputs": inputs }))?;
    Ok(HttpBody {
        bytes: body.into(),
        header_length: None,
    })
}

/// The JSON header naming each input's `binary_data_size`, then the raw tensors; the
/// outputs are asked for as binary data too (as perf_analyzer and tritonclient do).
pub fn http_binary(inputs: &[Tensor]) -> anyhow::Result<HttpBody> {
    let header: Vec<Input> = inputs
        .iter()
        .map(|t| Input {
            name: &t.name,
            datatype: t.datatype.as_str(),
            shape: &t.shape,
            data: None,
            parameters: Some(BinarySize {
                binary_data_size: t.data.len(),
            }),
        })
        .collect();
    let mut body = serde_json::to_vec(&serde_json::json!({
        "inputs": header,
        "parameters": { "binary_data_output": true },
    }))?;
    let header_length = body.len();
    for t in inputs {
        body.extend_from_slice(&t.data);
    }
    Ok(HttpBody {
        bytes: body.into(),
        header_length: Some(header_length),
    })
}

/// A `ModelInferRequest` with every tensor in `raw_input_contents` (as perf_analyzer
/// sends them).
pub fn grpc_request(model: &str, version: Option<u64>, inputs: &[Tensor]) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_string(),
        model_version: version.map(|v| v.to_string()).unwrap_or_default(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name.clone(),
                datatype: t.datatype.as_str().to_string(),
                shape: t.shape.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|t| t.data.clone()).collect(),
        ..Default::default()
    }
}

/// `request` as a gRPC body carries it (an uncompressed flag byte, the big-endian
/// length, the protobuf bytes), sent as it is by every gRPC call of a run.
pub fn grpc_frame(request: &ModelInferRequest) -> Bytes {
    let message = request.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame.into()
}

/// Checks an HTTP reply: every output of the model, with the right rows and as many
/// elements (or bytes) as its shape says.
pub fn check_http(
    body: &[u8],
    header_length: Option<usize>,
    meta: &ModelMetadata,
    rows: usize,
) -> Result<(), String> {
    let split = header_length.unwrap_or(body.len());
    let (json, binary) = body.split_at_checked(split).ok_or_else(|| {
        format!(
            "Inference-Header-Content-Length is {split} but the body holds {} bytes",
            body.len()
        )
    })?;
    // NaN and the infinities come as Triton writes them, bare; serde_json reads them quoted.
    let quoted = torchbridge_server::http::quote_non_finite(json);
    let reply: Value = serde_json::from_slice(quoted.as_deref().unwrap_or(json))
        .map_err(|e| format!("the reply is not JSON: {e}"))?;
    let outputs = reply["outputs"]
        .as_array()
        .ok_or("the reply has no `outputs` array")?;
    let mut binary_total = 0;
    for spec in &meta.outputs {
        let out = outputs
            .iter()
            .find(|o| o["name"] == spec.name.as_str())
            .ok_or_else(|| format!("the reply lacks output `{}`", spec.name))?;
        let shape: Vec<i64> = serde_json::from_value(out["shape"].clone())
            .map_err(|_| format!("output `{}` has no shape", spec.name))?;
        let count = check_shape(&spec.name, &shape, meta, rows)?;
        if let Some(size) = out["parameters"]["binary_data_size"].as_u64() {
            binary_total += size as usize;
            expect_bytes(&spec.name, spec.datatype, count, size as usize)?;
        } else {
            let elements = flat_len(&out["data"])
                .ok_or_else(|| format!("output `{}` has no data", spec.name))?;
            if elements != count {
                return Err(format!(
                    "output `{}` has shape {shape:?} but {elements} elements",
                    spec.name
                ));
            }
        }
    }
    if binary_total != binary.len() {
        return Err(format!(
            "the outputs' binary_data_size add up to {binary_total} but {} bytes follow the JSON",
            binary.len()
        ));
    }
    Ok(())
}

/// Checks a gRPC reply as [`check_http`] does.
pub fn check_grpc(
    reply: &ModelInferResponse,
    meta: &ModelMetadata,
    rows: usize,
) -> Result<(), String> {
    for spec in &meta.outputs {
        let at = reply
            .outputs
            .iter()
            .position(|o| o.name == spec.name)
            .ok_or_else(|| format!("the reply lacks output `{}`", spec.name))?;
        let count = check_shape(&spec.name, &reply.outputs[at].shape, meta, rows)?;
        match reply.raw_output_contents.get(at) {
            Some(raw) => expect_bytes(&spec.name, spec.datatype, count, raw.len())?,
            None if reply.outputs[at].contents.is_some() => {}
            None => return Err(format!("output `{}` has no data", spec.name)),
        }
    }
    Ok(())
}

fn check_shape(
    name: &str,
    shape: &[i64],
    meta: &ModelMetadata,
    rows: usize,
) -> Result<usize, String> {
    if meta.max_batch_size > 0 && shape.first() != Some(&(rows as i64)) {
        return Err(format!(
            "output `{name}` has shape {shape:?}, not {rows} rows"
        ));
    }
    if shape.iter().any(|&d| d < 0) {
        return Err(format!("output `{name}` has shape {shape:?}"));
    }
    Ok(shape.iter().map(|&d| d as usize).product())
}

fn expect_bytes(name: &str, datatype: DataType, count: usize, bytes: usize) -> Result<(), String> {
    match datatype.size() {
        Some(size) if size * count != bytes => Err(format!(
            "output `{name}` is {datatype} with {count} elements but has {bytes} bytes"
        )),
        _ => Ok(()),
    }
}

/// Elements of a (possibly nested) JSON array.
fn flat_len(v: &Value) -> Option<usize> {
    let items = v.as_array()?;
    items
        .iter()
        .map(|i| if i.is_array() { flat_len(i) } else { Some(1) })
        .sum()
}

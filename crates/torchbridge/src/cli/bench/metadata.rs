//! The model's metadata, asked of the server: KServe's model metadata, and Triton's
//! model configuration for `max_batch_size` where the server has it.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use torchbridge::{DataType, ModelMetadata, TensorSpec};
use torchbridge_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use torchbridge_server::grpc::proto::model_metadata_response::TensorMetadata;
use torchbridge_server::grpc::proto::{ModelConfigRequest, ModelMetadataRequest};

use super::args::{Protocol, Target};
use super::client::{grpc_kind, http_connect, http_send};

/// Over HTTP, unless every run is gRPC.
pub async fn fetch(target: &Target) -> anyhow::Result<ModelMetadata> {
    if target.protocols.iter().all(|&p| p == Protocol::Grpc) {
        grpc_metadata(target).await
    } else {
        http_metadata(target).await
    }
}

#[derive(Deserialize)]
struct MetadataJson {
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    platform: String,
    inputs: Vec<TensorJson>,
    outputs: Vec<TensorJson>,
}

#[derive(Deserialize)]
struct TensorJson {
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

/// `GET /v2/models/{m}` (and Triton's `…/config`, for `max_batch_size`).
async fn http_metadata(target: &Target) -> anyhow::Result<ModelMetadata> {
    let prefix = target.path();
    let (status, body) = http_get(target, &prefix).await?;
    if status != StatusCode::OK {
        bail!(
            "the server at {} answered {status} to GET {prefix}: {}",
            target.http,
            error_text(&body)
        );
    }
    let m: MetadataJson = serde_json::from_slice(&body)
        .with_context(|| format!("GET {prefix} on {} is not model metadata", target.http))?;
    let max_batch_size = match http_get(target, &format!("{prefix}/config")).await? {
        (StatusCode::OK, body) => serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|c| c["max_batch_size"].as_u64()),
        _ => None,
    };
    let tensors = |list: Vec<TensorJson>| list.into_iter().map(|t| (t.name, t.datatype, t.shape));
    metadata(
        target,
        m.versions.first(),
        m.platform,
        tensors(m.inputs),
        tensors(m.outputs),
        max_batch_size,
    )
}

/// gRPC `ModelMetadata` (and `ModelConfig`, for `max_batch_size`).
async fn grpc_metadata(target: &Target) -> anyhow::Result<ModelMetadata> {
    let mut client = GrpcInferenceServiceClient::new(target.grpc_channel().await?);
    let version = target.version.map(|v| v.to_string()).unwrap_or_default();
    let m = client
        .model_metadata(target.grpc_request(ModelMetadataRequest {
            name: target.model.clone(),
            version: version.clone(),
        }))
        .await
        .map_err(|s| grpc_error(target, "ModelMetadata", &s))?
        .into_inner();
    let max_batch_size = client
        .model_config(target.grpc_request(ModelConfigRequest {
            name: target.model.clone(),
            version,
        }))
        .await
        .ok()
        .and_then(|c| c.into_inner().config)
        .map(|c| c.max_batch_size.max(0) as u64);
    let tensors =
        |list: Vec<TensorMetadata>| list.into_iter().map(|t| (t.name, t.datatype, t.shape));
    metadata(
        target,
        m.versions.first(),
        m.platform,
        tensors(m.inputs),
        tensors(m.outputs),
        max_batch_size,
    )
}

/// The metadata as torchbridge holds it: dims without the batch dimension. A server with
/// no model configuration to say `max_batch_size` is taken to batch when every tensor
/// has a variable first dimension.
fn metadata(
    target: &Target,
    version: Option<&String>,
    platform: String,
    inputs: impl Iterator<Item = (String, String, Vec<i64>)>,
    outputs: impl Iterator<Item = (String, String, Vec<i64>)>,
    max_batch_size: Option<u64>,
) -> anyhow::Result<ModelMetadata> {
    let spec = |(name, datatype, dims): (String, String, Vec<i64>)| -> anyhow::Result<TensorSpec> {
        let datatype = datatype
            .parse::<DataType>()
            .map_err(|e| anyhow!("the server's metadata of `{name}`: {e}"))?;
        Ok(TensorSpec {
            name,
            datatype,
            dims,
        })
    };
    let inputs = inputs.map(spec).collect::<anyhow::Result<Vec<_>>>()?;
    let outputs = outputs.map(spec).collect::<anyhow::Result<Vec<_>>>()?;
    let batched = |max: Option<u64>| match max {
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        None if inputs
            .iter()
            .chain(&outputs)
            .all(|s| s.dims.first() == Some(&-1)) =>
        {
            u32::MAX
        }
        None => 0,
    };
    let max_batch_size = batched(max_batch_size);
    let strip = |mut s: TensorSpec| {
        if max_batch_size > 0 && !s.dims.is_empty() {
            s.dims.remove(0);
        }
        s
    };
    Ok(ModelMetadata {
        name: target.model.clone(),
        version: version.and_then(|v| v.parse().ok()).unwrap_or(0),
        platform,
        max_batch_size,
        inputs: inputs.into_iter().map(strip).collect(),
        outputs: outputs.into_iter().map(strip).collect(),
    })
}

async fn http_get(target: &Target, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
    let address = &target.http;
    let mut sender = http_connect(address).await?;
    let mut request = Request::get(path).body(Full::new(Bytes::new()))?;
    *request.headers_mut() = target.headers.clone();
    request
        .headers_mut()
        .insert(HOST, HeaderValue::from_str(address)?);
    let reply = http_send(&mut sender, request)
        .await
        .with_context(|| format!("GET {path} on {address}"))?;
    let status = reply.status();
    Ok((status, reply.into_body().collect().await?.to_bytes()))
}

/// The protocol's `{"error": "…"}`, or the body as text.
pub fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

pub fn grpc_error(target: &Target, rpc: &str, status: &tonic::Status) -> anyhow::Error {
    anyhow!(
        "the server at {} answered {} to {rpc} of `{}`: {}",
        target.grpc,
        grpc_kind(status),
        target.model,
        status.message()
    )
}

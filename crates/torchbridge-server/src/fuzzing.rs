//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`): the decoders
//! a client's bytes reach, fed arbitrary input. Each must return an error for bad input,
//! never panic, hang or allocate without bound; and what it accepts must be a
//! consistent tensor. Not a stable API.

use axum::body::Bytes;
use prost::Message;
use torchbridge_core::{DataType, ModelMetadata, TensorSpec};

use crate::Limits;
use crate::grpc::proto::ModelInferRequest;
use crate::http::fuzz_decode;

/// Limits small enough that a fuzzer reaches them.
fn limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        max_inflated_bytes: 1 << 20,
        max_tensors: 8,
        max_dims: 6,
        max_elements: 1 << 16,
        max_bytes_element: 1 << 12,
        max_json_depth: 16,
    }
}

fn model() -> ModelMetadata {
    let spec = |name: &str, datatype| TensorSpec {
        name: name.into(),
        datatype,
        dims: vec![-1, 2],
    };
    ModelMetadata {
        name: "m".into(),
        version: 1,
        platform: "fuzz".into(),
        max_batch_size: 0,
        inputs: vec![
            spec("INPUT0", DataType::Fp32),
            spec("TEXT", DataType::Bytes),
        ],
        outputs: vec![spec("OUTPUT0", DataType::Fp32)],
    }
}

/// An HTTP infer request. The first byte picks how the rest is read: bit 0, the body is
/// gzip (inflated under the limit first); bit 1, an `Inference-Header-Content-Length`
/// follows as the next two bytes (little-endian, so binary data follows the JSON).
pub fn http_request(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (header_length, body) = match (mode & 2 != 0, rest) {
        (true, [a, b, body @ ..]) => (Some(usize::from(u16::from_le_bytes([*a, *b]))), body),
        (true, _) => return,
        (false, body) => (None, body),
    };
    fuzz_decode(
        Bytes::copy_from_slice(body),
        header_length,
        mode & 1 != 0,
        &limits(),
        &model(),
    );
}

/// A gRPC `ModelInferRequest` message as it arrives on the wire.
pub fn grpc_request(data: &[u8]) {
    let Ok(request) = ModelInferRequest::decode(data) else {
        return;
    };
    crate::grpc::fuzz_convert(request, &limits(), &model());
}

/// A model's `config.toml`.
pub fn model_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = torchbridge_core::ModelConfig::from_toml(text);
    }
}

//! Codec tests on plain tensors: request decoding (JSON and binary) and response
//! encoding, without a model or a socket.

mod decode;
mod encode;
mod roundtrip;
mod scan;
mod scan_floats;

use torchbridge_core::{DataType, ModelMetadata, Tensor, TensorSpec};

pub(super) fn metadata() -> ModelMetadata {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        dims: vec![2],
    };
    ModelMetadata {
        name: "m".into(),
        version: 3,
        platform: "onnx".into(),
        max_batch_size: 8,
        inputs: vec![spec("X")],
        outputs: vec![spec("Y"), spec("Z")],
    }
}

pub(super) fn outputs() -> Vec<Tensor> {
    vec![
        Tensor::from_slice("Y", vec![1, 2], &[1.0f32, 2.5]).unwrap(),
        Tensor::from_slice("Z", vec![1, 2], &[-3.0f32, f32::NAN]).unwrap(),
    ]
}

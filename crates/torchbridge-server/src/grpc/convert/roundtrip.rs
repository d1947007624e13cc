//! Property: tensors survive the gRPC messages both ways — as `raw_output_contents` of a
//! response turned into the `raw_input_contents` of a request, and as typed `contents`
//! — through prost's wire encoding, for every datatype and a range of shapes.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use torchbridge_core::{DataType, ModelMetadata, Tensor};

use super::*;
use crate::grpc::proto::ModelInferRequest;
use crate::test_tensors::{Carrier, tensors};

fn metadata() -> ModelMetadata {
    ModelMetadata {
        name: "m".into(),
        version: 1,
        platform: "test".into(),
        max_batch_size: 0,
        inputs: vec![],
        outputs: vec![],
    }
}

fn over_the_wire<M: Message + Default>(message: &M) -> M {
    M::decode(Bytes::from(message.encode_to_vec())).expect("prost decodes what it encoded")
}

fn described(t: &Tensor) -> InferInputTensor {
    InferInputTensor {
        name: t.name.clone(),
        datatype: t.datatype.as_str().into(),
        shape: t.shape.clone(),
        ..Default::default()
    }
}

/// The test's own typed encoder: each element in the field its datatype travels in.
fn typed(t: &Tensor) -> InferInputTensor {
    fn each<const N: usize, T>(data: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        data.as_chunks::<N>().0.iter().map(|c| f(*c)).collect()
    }
    let d = &t.data[..];
    let mut c = InferTensorContents::default();
    match t.datatype {
        DataType::Bool => c.bool_contents = d.iter().map(|&b| b != 0).collect(),
        DataType::Int8 => c.int_contents = each(d, |b| i32::from(i8::from_le_bytes(b))),
        DataType::Int16 => c.int_contents = each(d, |b| i32::from(i16::from_le_bytes(b))),
        DataType::Int32 => c.int_contents = each(d, i32::from_le_bytes),
        DataType::Int64 => c.int64_contents = each(d, i64::from_le_bytes),
        DataType::Uint8 => c.uint_contents = each(d, |b| u32::from(u8::from_le_bytes(b))),
        DataType::Uint16 => c.uint_contents = each(d, |b| u32::from(u16::from_le_bytes(b))),
        DataType::Uint32 => c.uint_contents = each(d, u32::from_le_bytes),
        DataType::Uint64 => c.uint64_contents = each(d, u64::from_le_bytes),
        DataType::Fp32 => c.fp32_contents = each(d, f32::from_le_bytes),
        DataType::Fp64 => c.fp64_contents = each(d, f64::from_le_bytes),
        DataType::Bytes => {
            c.bytes_contents = t
                .strings()
                .unwrap()
                .into_iter()
                .map(Bytes::copy_from_slice)
                .collect();
        }
        DataType::Fp16 | DataType::Bf16 => {}
    }
    InferInputTensor {
        contents: Some(c),
        ..described(t)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn raw_contents_round_trip(outputs in tensors(Carrier::Raw)) {
        let tensors: Vec<Tensor> = outputs.into_iter().map(|(t, _)| t).collect();
        let response = over_the_wire(&response(&metadata(), &OutputLabels::default(), "id".into(), tensors.clone(), &[], &[], &SharedMemory::default()).unwrap());
        let request = over_the_wire(&ModelInferRequest {
            model_name: "m".into(),
            inputs: tensors.iter().map(described).collect(),
            raw_input_contents: response.raw_output_contents,
            ..Default::default()
        });
        let got = inputs(request.inputs, request.raw_input_contents, &Limits::default(), &SharedMemory::default()).unwrap();
        prop_assert_eq!(got, tensors);
    }

    #[test]
    fn typed_contents_round_trip(outputs in tensors(Carrier::Raw)) {
        let tensors: Vec<Tensor> = outputs.into_iter().map(|(t, _)| t).collect();
        let request = over_the_wire(&ModelInferRequest {
            model_name: "m".into(),
            inputs: tensors.iter().map(typed).collect(),
            ..Default::default()
        });
        let got = inputs(request.inputs, request.raw_input_contents, &Limits::default(), &SharedMemory::default());
        match tensors.iter().find(|t| matches!(t.datatype, DataType::Fp16 | DataType::Bf16)) {
            // Half floats have no typed field: the request is refused, naming the input.
            Some(half) => {
                let message = got.unwrap_err().to_string();
                prop_assert!(message.contains(&format!("input `{}`", half.name)), "{}", message);
                prop_assert!(message.contains("raw_input_contents"), "{}", message);
            }
            None => prop_assert_eq!(got.unwrap(), tensors),
        }
    }
}

//! Models run through the bridge give PyTorch's answers.

use bytes::{BufMut, BytesMut};
use torchbridge_core::{DataType, Tensor, TensorSpec};

use crate::fixtures::{cases, check_cases, fixtures, load};

fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        dims: dims.to_vec(),
    }
}

#[test]
fn mlp_at_batch_1_and_5_with_metadata_from_the_model() {
    let mut backend = load("mlp", "backend = \"onnx\"\nmax_batch_size = 8");
    let meta = backend.metadata();
    assert_eq!(
        (
            meta.name.as_str(),
            meta.platform.as_str(),
            meta.max_batch_size
        ),
        ("mlp", "onnx", 8)
    );
    assert_eq!(meta.inputs, vec![spec("x", DataType::Fp32, &[8])]);
    assert_eq!(meta.outputs, vec![spec("y", DataType::Fp32, &[4])]);
    let names: Vec<String> = cases("mlp").into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["batch1", "batch5"]);
    check_cases(backend.as_mut(), "mlp");
}

#[test]
fn without_batching_the_first_dimension_stays_in_the_dims() {
    let mut backend = load("mlp", "backend = \"onnx\"\nthreads = 1");
    assert_eq!(
        backend.metadata().inputs,
        vec![spec("x", DataType::Fp32, &[-1, 8])]
    );
    check_cases(backend.as_mut(), "mlp");
}

#[test]
fn an_unaligned_input_buffer_is_copied_and_gives_the_same_answer() {
    let mut backend = load("mlp", "backend = \"onnx\"\nmax_batch_size = 8");
    let case = cases("mlp").pop().unwrap();
    let x = &case.inputs[0];
    let mut buffer = BytesMut::with_capacity(x.data.len() + 1);
    buffer.put_u8(0);
    buffer.put_slice(&x.data);
    let unaligned = buffer.freeze().slice(1..);
    assert_ne!(
        unaligned.as_ptr() as usize % 4,
        0,
        "the test needs a misaligned buffer"
    );
    let x = Tensor::new("x", DataType::Fp32, x.shape.clone(), unaligned).unwrap();
    let batch = backend.metadata().prepare(vec![x]).unwrap();
    let outputs = backend.infer(batch).unwrap();
    crate::fixtures::assert_close(&outputs[0], &case.outputs[0], "unaligned");
}

#[test]
fn two_inputs_and_two_outputs_with_int64() {
    let mut backend = load("two_io", "backend = \"onnx\"\nmax_batch_size = 4");
    let meta = backend.metadata();
    let inputs = vec![
        spec("features", DataType::Fp32, &[6]),
        spec("ids", DataType::Int64, &[3]),
    ];
    assert_eq!(meta.inputs, inputs);
    let outputs = vec![
        spec("score", DataType::Fp32, &[2]),
        spec("count", DataType::Int64, &[]),
    ];
    assert_eq!(meta.outputs, outputs);
    check_cases(backend.as_mut(), "two_io");
}

#[test]
fn fp16_fp64_int32_and_bool_cross_both_ways() {
    let mut backend = load("kinds", "backend = \"onnx\"\nmax_batch_size = 2");
    let datatypes: Vec<DataType> = backend
        .metadata()
        .outputs
        .iter()
        .map(|s| s.datatype)
        .collect();
    assert_eq!(
        datatypes,
        [
            DataType::Fp16,
            DataType::Bool,
            DataType::Fp64,
            DataType::Fp64
        ]
    );
    check_cases(backend.as_mut(), "kinds");
}

#[test]
fn bool_bytes_other_than_0_and_1_count_as_true() {
    let mut backend = load("kinds", "backend = \"onnx\"\nmax_batch_size = 2");
    let mut case = cases("kinds").pop().unwrap();
    let mask = &case.inputs[3];
    let loud: Vec<u8> = mask.data.iter().map(|&b| b * 7).collect();
    case.inputs[3] = Tensor::new("mask", DataType::Bool, mask.shape.clone(), loud).unwrap();
    let batch = backend.metadata().prepare(case.inputs).unwrap();
    let outputs = backend.infer(batch).unwrap();
    crate::fixtures::assert_close(&outputs[3], &case.outputs[3], "kinds/loud bools");
}

#[test]
fn strings_are_bytes() {
    let mut backend = load("strings", "backend = \"onnx\"");
    assert_eq!(
        backend.metadata().inputs,
        vec![spec("text", DataType::Bytes, &[-1])]
    );
    check_cases(backend.as_mut(), "strings");
}

#[test]
fn weights_in_a_side_file_are_found() {
    assert!(fixtures().join("external_data/model.onnx.data").is_file());
    let mut backend = load("external_data", "backend = \"onnx\"\nmax_batch_size = 4");
    check_cases(backend.as_mut(), "external_data");
}

#[test]
fn a_model_from_the_torch_export_exporter() {
    let folder = fixtures().join("dynamo_mlp");
    if let Ok(reason) = std::fs::read_to_string(folder.join("skipped.txt")) {
        eprintln!("SKIPPED: torch.onnx.export(dynamo=True) could not run: {reason}");
        return;
    }
    assert!(
        folder.join("model.onnx.data").is_file(),
        "torch 2.13's exporter keeps weights beside the model"
    );
    let mut backend = load("dynamo_mlp", "backend = \"onnx\"\nmax_batch_size = 16");
    assert_eq!(
        backend.metadata().inputs,
        vec![spec("x", DataType::Fp32, &[8])]
    );
    check_cases(backend.as_mut(), "dynamo_mlp");
}

#[test]
fn the_backend_can_move_to_another_thread() {
    let mut backend = load("mlp", "backend = \"onnx\"\nmax_batch_size = 8");
    std::thread::spawn(move || check_cases(backend.as_mut(), "mlp"))
        .join()
        .unwrap();
}

#[test]
fn every_fixed_size_datatype_crosses_bit_for_bit() {
    let mut backend = load("identities", "backend = \"onnx\"\nmax_batch_size = 4");
    let declared: Vec<DataType> = backend
        .metadata()
        .inputs
        .iter()
        .map(|s| s.datatype)
        .collect();
    let fixed_size: Vec<DataType> = DataType::ALL
        .into_iter()
        .filter(|d| d.size().is_some())
        .collect();
    assert_eq!(declared.len(), fixed_size.len());
    assert!(
        fixed_size.iter().all(|d| declared.contains(d)),
        "{declared:?}"
    );
    for case in cases("identities") {
        let outputs = backend
            .infer(backend.metadata().prepare(case.inputs).unwrap())
            .unwrap();
        assert_eq!(outputs.len(), fixed_size.len());
        for (got, want) in outputs.iter().zip(&case.outputs) {
            assert_eq!(
                (&got.name, got.datatype, &got.shape),
                (&want.name, want.datatype, &want.shape)
            );
            assert_eq!(got.data, want.data, "{}", want.name);
        }
    }
}

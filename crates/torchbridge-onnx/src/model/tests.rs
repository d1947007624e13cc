use super::*;
use torchbridge_core::{ModelMetadata, TensorSpec};

fn onnx(name: &str, datatype: DataType, shape: &[i64]) -> OnnxTensor {
    OnnxTensor {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    }
}

fn spec(name: &str, datatype: DataType, dims: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        dims: dims.to_vec(),
    }
}

fn metadata(
    max_batch_size: u32,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
) -> ModelMetadata {
    ModelMetadata {
        name: "m".into(),
        version: 1,
        platform: "onnx".into(),
        max_batch_size,
        inputs,
        outputs,
    }
}

fn model() -> (Vec<OnnxTensor>, Vec<OnnxTensor>) {
    (
        vec![
            onnx("x", DataType::Fp32, &[-1, 8]),
            onnx("ids", DataType::Int64, &[-1, -1]),
        ],
        vec![
            onnx("y", DataType::Fp32, &[-1, 4]),
            onnx("n", DataType::Int64, &[-1]),
        ],
    )
}

fn error(meta: ModelMetadata) -> String {
    let (inputs, outputs) = model();
    reconcile(meta, &inputs, &outputs).unwrap_err()
}

#[test]
fn derived_specs_drop_the_batch_dimension_only_when_batching() {
    let (inputs, outputs) = model();
    let m = reconcile(metadata(8, vec![], vec![]), &inputs, &outputs).unwrap();
    assert_eq!(
        m.inputs,
        vec![
            spec("x", DataType::Fp32, &[8]),
            spec("ids", DataType::Int64, &[-1])
        ]
    );
    assert_eq!(
        m.outputs,
        vec![
            spec("y", DataType::Fp32, &[4]),
            spec("n", DataType::Int64, &[])
        ]
    );
    let m = reconcile(metadata(0, vec![], vec![]), &inputs, &outputs).unwrap();
    assert_eq!(m.inputs[0].dims, vec![-1, 8]);
}

#[test]
fn declared_specs_that_agree_are_kept_and_may_name_a_subset_of_outputs() {
    let (inputs, outputs) = model();
    let declared_inputs = vec![
        spec("ids", DataType::Int64, &[3]),
        spec("x", DataType::Fp32, &[-1]),
    ];
    let declared_outputs = vec![spec("n", DataType::Int64, &[])];
    let meta = metadata(4, declared_inputs, declared_outputs.clone());
    let m = reconcile(meta, &inputs, &outputs).unwrap();
    // A declared -1 narrows to the model's fixed size: another size would fail in the
    // engine; a declared size narrows the model's -1.
    let narrowed = vec![
        spec("ids", DataType::Int64, &[3]),
        spec("x", DataType::Fp32, &[8]),
    ];
    assert_eq!((m.inputs, m.outputs), (narrowed, declared_outputs));
}

#[test]
fn disagreements_are_named() {
    let inputs = || {
        vec![
            spec("x", DataType::Fp32, &[8]),
            spec("ids", DataType::Int64, &[-1]),
        ]
    };
    let e = error(metadata(
        4,
        vec![
            spec("x", DataType::Fp64, &[8]),
            spec("ids", DataType::Int64, &[-1]),
        ],
        vec![],
    ));
    assert_eq!(
        e,
        "config.toml declares input `x` as FP64, but the model's is FP32"
    );
    let e = error(metadata(
        4,
        vec![spec("INPUT0", DataType::Fp32, &[8])],
        vec![],
    ));
    assert!(e.contains("declares input `INPUT0`, which the model does not have; its inputs are `x` (FP32 [-1, 8]), `ids`"), "{e}");
    let e = error(metadata(4, vec![spec("x", DataType::Fp32, &[8])], vec![]));
    assert!(
        e.contains(
            "the model's input `ids` (INT64 [-1, -1]) is missing from config.toml's `[[input]]`"
        ),
        "{e}"
    );
    let e = error(metadata(
        4,
        vec![
            spec("x", DataType::Fp32, &[7]),
            spec("ids", DataType::Int64, &[-1]),
        ],
        vec![],
    ));
    assert!(
        e.contains("dims [7], but the model's shape without its batch dimension is [8]"),
        "{e}"
    );
    let e = error(metadata(
        4,
        vec![
            spec("x", DataType::Fp32, &[1, 8]),
            spec("ids", DataType::Int64, &[-1]),
        ],
        vec![],
    ));
    assert!(e.contains("dims [1, 8]"), "{e}");
    let e = error(metadata(4, inputs(), vec![spec("z", DataType::Fp32, &[4])]));
    assert!(
        e.contains("declares output `z`, which the model does not have; its outputs are `y`"),
        "{e}"
    );
    let e = error(metadata(4, inputs(), vec![spec("y", DataType::Fp16, &[4])]));
    assert!(
        e.contains("output `y` as FP16, but the model's is FP32"),
        "{e}"
    );
}

#[test]
fn batching_needs_a_dynamic_first_dimension() {
    let fixed = [onnx("x", DataType::Fp32, &[2, 8])];
    let e = reconcile(metadata(4, vec![], vec![]), &fixed, &[]).unwrap_err();
    assert!(
        e.contains(
            "`max_batch_size = 4` makes dim 0 the batch, but the model's input `x` has shape [2, 8]"
        ),
        "{e}"
    );
    assert!(e.contains("dynamic_axes={\"x\": {0: \"batch\"}}"), "{e}");
    let scalar = [onnx("s", DataType::Fp32, &[])];
    let e = reconcile(metadata(4, vec![], vec![]), &[], &scalar).unwrap_err();
    assert!(e.contains("output `s` has shape [] (a scalar)"), "{e}");
    let one = [onnx("x", DataType::Fp32, &[1, 8])];
    let m = reconcile(metadata(1, vec![], vec![]), &one, &[]).unwrap();
    assert_eq!(m.inputs[0].dims, vec![8]);
    reconcile(metadata(0, vec![], vec![]), &fixed, &scalar).unwrap();
}

#[test]
fn every_kserve_datatype_has_an_onnx_element_type() {
    use TensorElementType as E;
    let all = [
        E::Float32,
        E::Float64,
        E::Float16,
        E::Bfloat16,
        E::Int8,
        E::Int16,
        E::Int32,
        E::Int64,
        E::Uint8,
        E::Uint16,
        E::Uint32,
        E::Uint64,
        E::Bool,
        E::String,
    ];
    let mapped: Vec<DataType> = all.into_iter().filter_map(datatype_of).collect();
    for d in DataType::ALL {
        assert!(mapped.contains(&d), "{d} has no ONNX element type");
    }
    assert_eq!(datatype_of(E::Complex64), None);
}

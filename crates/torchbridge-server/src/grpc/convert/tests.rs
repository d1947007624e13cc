use half::{bf16, f16};
use std::collections::HashMap;

use torchbridge_core::TensorSpec;

use super::*;
use crate::shared_memory::tests::Object;

/// The conversion under the default limits (the limits have their own tests).
fn inputs(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> Result<Vec<Tensor>> {
    super::inputs(inputs, raw, &Limits::default(), &SharedMemory::default())
}

fn input(
    name: &str,
    datatype: &str,
    shape: Vec<i64>,
    contents: InferTensorContents,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        contents: Some(contents),
        ..Default::default()
    }
}

fn bare(name: &str, datatype: &str, shape: Vec<i64>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        ..Default::default()
    }
}

fn one_typed(i: InferInputTensor) -> Result<Tensor> {
    inputs(vec![i], vec![]).map(|mut t| t.remove(0))
}

fn error(result: Result<impl std::fmt::Debug>) -> String {
    let e = result.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    e.to_string()
}

/// Contents with the one field `set` fills.
fn with(set: impl FnOnce(&mut InferTensorContents)) -> InferTensorContents {
    let mut contents = InferTensorContents::default();
    set(&mut contents);
    contents
}

/// A tensor `x` of shape [3].
fn x<T: torchbridge_core::Element>(values: &[T]) -> Tensor {
    Tensor::from_slice("x", vec![3], values).unwrap()
}

fn check(datatype: &str, set: impl FnOnce(&mut InferTensorContents), want: Tensor) {
    let got = one_typed(input("x", datatype, vec![3], with(set))).unwrap();
    assert_eq!(got, want, "{datatype}");
    assert_eq!(got.data, want.data, "{datatype}");
}

#[test]
fn every_typed_datatype_becomes_its_little_endian_tensor() {
    let bools = Tensor::from_bools("x", vec![3], &[true, false, true]).unwrap();
    check("BOOL", |c| c.bool_contents = vec![true, false, true], bools);
    check(
        "INT8",
        |c| c.int_contents = vec![-128, 0, 127],
        x(&[-128i8, 0, 127]),
    );
    check(
        "INT16",
        |c| c.int_contents = vec![-32768, 1, 32767],
        x(&[-32768i16, 1, 32767]),
    );
    check(
        "INT32",
        |c| c.int_contents = vec![i32::MIN, 2, i32::MAX],
        x(&[i32::MIN, 2, i32::MAX]),
    );
    check(
        "INT64",
        |c| c.int64_contents = vec![i64::MIN, 3, i64::MAX],
        x(&[i64::MIN, 3, i64::MAX]),
    );
    check(
        "UINT8",
        |c| c.uint_contents = vec![0, 1, 255],
        x(&[0u8, 1, 255]),
    );
    check(
        "UINT16",
        |c| c.uint_contents = vec![0, 1, 65535],
        x(&[0u16, 1, 65535]),
    );
    check(
        "UINT32",
        |c| c.uint_contents = vec![0, 1, u32::MAX],
        x(&[0u32, 1, u32::MAX]),
    );
    check(
        "UINT64",
        |c| c.uint64_contents = vec![0, 1, u64::MAX],
        x(&[0u64, 1, u64::MAX]),
    );
    check(
        "FP32",
        |c| c.fp32_contents = vec![1.5, -0.0, f32::MAX],
        x(&[1.5f32, -0.0, f32::MAX]),
    );
    check(
        "FP64",
        |c| c.fp64_contents = vec![1.5, -2.25, f64::MIN],
        x(&[1.5f64, -2.25, f64::MIN]),
    );
    let strings = Tensor::from_strings("x", vec![3], &["a", "", "héllo"]).unwrap();
    let elements = vec![Bytes::from("a"), Bytes::new(), Bytes::from("héllo")];
    check("BYTES", |c| c.bytes_contents = elements, strings);
}

#[test]
fn every_raw_datatype_keeps_the_request_bytes() {
    let tensors = [
        Tensor::from_bools("x", vec![2, 2], &[true, false, false, true]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[1u8, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[1u16, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[1u32, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[1u64, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[-1i8, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[-1i16, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[-1i32, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[-1i64, 2, 3, 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[f16::from_f32(0.5); 4]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[1.5f32, 2.0, 3.0, 4.0]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[1.5f64, 2.0, 3.0, 4.0]).unwrap(),
        Tensor::from_slice("x", vec![2, 2], &[bf16::from_f32(-2.0); 4]).unwrap(),
        Tensor::from_strings("x", vec![2, 2], &["a", "bc", "", "d"]).unwrap(),
    ];
    let covered: Vec<DataType> = tensors.iter().map(|t| t.datatype).collect();
    assert_eq!(covered, DataType::ALL);
    for want in tensors {
        let raw = want.data.clone();
        let request = bare("x", want.datatype.as_str(), vec![2, 2]);
        let got = inputs(vec![request], vec![raw.clone()]).unwrap().remove(0);
        assert_eq!(got, want);
        assert_eq!(
            got.data.as_ptr(),
            raw.as_ptr(),
            "{} was copied",
            want.datatype
        );
    }
}

#[test]
fn several_raw_inputs_pair_up_in_order() {
    let a = Tensor::from_slice("A", vec![1, 2], &[1f32, 2.0]).unwrap();
    let b = Tensor::from_slice("B", vec![3], &[7i64, 8, 9]).unwrap();
    let got = inputs(
        vec![bare("A", "FP32", vec![1, 2]), bare("B", "INT64", vec![3])],
        vec![a.data.clone(), b.data.clone()],
    )
    .unwrap();
    assert_eq!(got, vec![a, b]);
}

#[test]
fn raw_and_typed_do_not_mix() {
    let raw = Bytes::from(vec![0u8; 4]);
    let typed = input("B", "INT32", vec![1], with(|c| c.int_contents = vec![1]));
    let e = error(inputs(
        vec![bare("A", "FP32", vec![1]), typed],
        vec![raw.clone()],
    ));
    assert_eq!(
        e,
        "raw_input_contents has 1 entries for 2 inputs (not counting those in shared memory); \
         give one per input, in input order, or none"
    );
    let typed = input("A", "FP32", vec![1], with(|c| c.fp32_contents = vec![1.0]));
    let e = error(inputs(vec![typed], vec![raw]));
    assert_eq!(
        e,
        "input `A` has typed contents while raw_input_contents is used; send every input one way"
    );
    // Without raw contents, an input with no typed contents has no data at all.
    let e = error(inputs(vec![bare("A", "FP32", vec![2])], vec![]));
    assert_eq!(
        e,
        "input `A`: shape [2] needs 2 elements, fp32_contents holds 0"
    );
}

#[test]
fn counts_and_sizes_must_match_the_shape() {
    let e = error(one_typed(input(
        "x",
        "FP32",
        vec![2, 3],
        with(|c| c.fp32_contents = vec![0.0; 5]),
    )));
    assert_eq!(
        e,
        "input `x`: shape [2, 3] needs 6 elements, fp32_contents holds 5"
    );
    let e = error(one_typed(input(
        "s",
        "BYTES",
        vec![2],
        with(|c| c.bytes_contents = vec![Bytes::from("a")]),
    )));
    assert_eq!(
        e,
        "input `s`: shape [2] needs 2 elements, bytes_contents holds 1"
    );
    let e = error(inputs(
        vec![bare("x", "FP32", vec![3])],
        vec![Bytes::from(vec![0u8; 8])],
    ));
    assert_eq!(
        e,
        "raw_input_contents[0]: tensor `x`: shape [3] of FP32 needs 12 bytes, got 8"
    );
    let e = error(inputs(
        vec![bare("s", "BYTES", vec![1])],
        vec![Bytes::from(vec![9u8, 0, 0, 0])],
    ));
    assert!(
        e.starts_with("raw_input_contents[0]: tensor `s`: BYTES data is not"),
        "{e}"
    );
    let e = error(one_typed(input("x", "FP32", vec![-1], with(|_| ()))));
    assert_eq!(
        e,
        "input `x`: shape [-1] has a negative dimension or is too large"
    );
}

#[test]
fn typed_values_must_fit_their_field_and_range() {
    let e = error(one_typed(input(
        "x",
        "FP32",
        vec![1],
        with(|c| c.int_contents = vec![1]),
    )));
    assert_eq!(
        e,
        "input `x` is FP32, whose data goes in fp32_contents, but int_contents is set"
    );
    let e = error(one_typed(input(
        "x",
        "INT8",
        vec![2],
        with(|c| c.int_contents = vec![1, 300]),
    )));
    assert_eq!(
        e,
        "input `x`: int_contents holds 300, outside the INT8 range"
    );
    let e = error(one_typed(input(
        "x",
        "UINT16",
        vec![1],
        with(|c| c.uint_contents = vec![70000]),
    )));
    assert_eq!(
        e,
        "input `x`: uint_contents holds 70000, outside the UINT16 range"
    );
    for half in ["FP16", "BF16"] {
        let e = error(one_typed(input("h", half, vec![1], with(|_| ()))));
        assert_eq!(
            e,
            format!(
                "input `h` is {half}, which has no typed contents field: send it in raw_input_contents"
            )
        );
    }
    let e = error(one_typed(input("x", "FLOAT", vec![1], with(|_| ()))));
    assert!(
        e.starts_with("input `x`: unknown datatype `FLOAT`, expected one of BOOL"),
        "{e}"
    );
}

#[test]
fn versions_are_numbers_or_empty() {
    assert_eq!(version("").unwrap(), None);
    assert_eq!(version("3").unwrap(), Some(3));
    assert_eq!(
        error(version("latest")),
        "model version `latest` is not a version number (leave it empty for the latest)"
    );
}

fn metadata() -> ModelMetadata {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        dims: vec![1],
    };
    ModelMetadata {
        name: "m".into(),
        version: 4,
        platform: "onnx".into(),
        max_batch_size: 8,
        inputs: vec![spec("X")],
        outputs: vec![spec("A"), spec("B")],
    }
}

fn wanted(names: &[&str]) -> Vec<InferRequestedOutputTensor> {
    names
        .iter()
        .map(|n| InferRequestedOutputTensor {
            name: n.to_string(),
            ..Default::default()
        })
        .collect()
}

#[test]
fn requested_outputs_must_exist_once() {
    check_requested(&metadata(), &wanted(&["B"])).unwrap();
    assert_eq!(
        error(check_requested(&metadata(), &wanted(&["C"]))),
        "model `m` has no output `C`; its outputs are `A`, `B`"
    );
    assert_eq!(
        error(check_requested(&metadata(), &wanted(&["A", "A"]))),
        "output `A` is requested twice"
    );
}

#[test]
fn responses_hold_the_asked_outputs_as_raw_bytes_in_order() {
    let a = Tensor::from_slice("A", vec![1, 1], &[1f32]).unwrap();
    let b = Tensor::from_slice("B", vec![1, 1], &[2f32]).unwrap();
    let all = response(
        &metadata(),
        &OutputLabels::default(),
        "req-1".into(),
        vec![a.clone(), b.clone()],
        &[],
        &[],
        &SharedMemory::default(),
    )
    .unwrap();
    assert_eq!(
        (all.model_name.as_str(), all.model_version.as_str()),
        ("m", "4")
    );
    assert_eq!(all.id, "req-1");
    let names: Vec<_> = all.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(all.outputs[1].datatype, "FP32");
    assert_eq!(all.outputs[1].shape, vec![1, 1]);
    assert_eq!(
        all.raw_output_contents,
        vec![a.data.clone(), b.data.clone()]
    );
    assert_eq!(all.raw_output_contents[0].as_ptr(), a.data.as_ptr());
    assert!(all.outputs.iter().all(|o| o.contents.is_none()));

    let some = response(
        &metadata(),
        &OutputLabels::default(),
        String::new(),
        vec![a, b.clone()],
        &wanted(&["B"]),
        &[OutputPlan::default()],
        &SharedMemory::default(),
    )
    .unwrap();
    assert_eq!(some.outputs.len(), 1);
    assert_eq!(some.outputs[0].name, "B");
    assert_eq!(some.raw_output_contents, vec![b.data]);
}

#[test]
fn the_timeout_parameter_is_in_microseconds() {
    let param = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    assert_eq!(timeout(None).unwrap(), None);
    assert_eq!(
        timeout(Some(&param(ParameterChoice::Int64Param(0)))).unwrap(),
        None,
        "0 is Triton's no timeout"
    );
    assert_eq!(
        timeout(Some(&param(ParameterChoice::Int64Param(1500)))).unwrap(),
        Some(Duration::from_micros(1500))
    );
    assert_eq!(
        timeout(Some(&param(ParameterChoice::Uint64Param(7)))).unwrap(),
        Some(Duration::from_micros(7))
    );
    for bad in [
        ParameterChoice::Int64Param(-1),
        ParameterChoice::StringParam("1s".into()),
    ] {
        let e = timeout(Some(&param(bad))).unwrap_err().to_string();
        assert!(e.contains("`timeout` parameter"), "{e}");
    }
}

fn placed_at(region: &str, byte_size: i64) -> HashMap<String, InferParameter> {
    let param = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    HashMap::from([
        (
            "shared_memory_region".to_string(),
            param(ParameterChoice::StringParam(region.into())),
        ),
        (
            "shared_memory_byte_size".to_string(),
            param(ParameterChoice::Int64Param(byte_size)),
        ),
    ])
}

#[test]
fn inputs_in_shared_memory_take_no_raw_entry() {
    let object = Object::new(&[1, 0, 0, 0, 2, 0, 0, 0]);
    let shm = SharedMemory::new(true);
    shm.register("r", &object.key, 0, 8).unwrap();
    let in_shm = InferInputTensor {
        parameters: placed_at("r", 8),
        ..bare("A", "INT32", vec![2])
    };
    let raw = Bytes::from(7i32.to_le_bytes().to_vec());
    let got = super::inputs(
        vec![in_shm.clone(), bare("B", "INT32", vec![1])],
        vec![raw],
        &Limits::default(),
        &shm,
    )
    .unwrap();
    let a = Tensor::from_slice("A", vec![2], &[1i32, 2]).unwrap();
    let b = Tensor::from_slice("B", vec![1], &[7i32]).unwrap();
    assert_eq!(got, vec![a, b]);

    let typed_too = InferInputTensor {
        contents: Some(with(|c| c.int_contents = vec![1, 2])),
        ..in_shm.clone()
    };
    let e = error(super::inputs(
        vec![typed_too],
        vec![],
        &Limits::default(),
        &shm,
    ));
    assert!(
        e.contains("is in shared memory and also has typed contents"),
        "{e}"
    );
    let mut bad = in_shm;
    bad.parameters.insert(
        "shared_memory_byte_size".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam("8".into())),
        },
    );
    let e = error(super::inputs(vec![bad], vec![], &Limits::default(), &shm));
    assert!(
        e.contains("`shared_memory_byte_size` must be a number"),
        "{e}"
    );
}

#[test]
fn outputs_in_shared_memory_are_written_there_and_described() {
    let object = Object::new(&[0; 16]);
    let shm = SharedMemory::new(true);
    shm.register("out", &object.key, 0, 16).unwrap();
    let a = Tensor::from_slice("A", vec![1, 1], &[1f32]).unwrap();
    let b = Tensor::from_slice("B", vec![1, 1], &[2f32]).unwrap();
    let requested = vec![
        InferRequestedOutputTensor {
            name: "B".into(),
            parameters: placed_at("out", 16),
        },
        InferRequestedOutputTensor {
            name: "A".into(),
            parameters: HashMap::new(),
        },
    ];
    let plans = check_requested(&metadata(), &requested).unwrap();
    let outputs = vec![a.clone(), b.clone()];
    let r = response(
        &metadata(),
        &OutputLabels::default(),
        String::new(),
        outputs,
        &requested,
        &plans,
        &shm,
    )
    .unwrap();
    assert_eq!(&object.contents()[..4], &b.data[..]);
    assert_eq!(r.raw_output_contents, vec![Bytes::new(), a.data]);
    let p = &r.outputs[0].parameters;
    assert_eq!(
        p["shared_memory_region"].parameter_choice,
        Some(ParameterChoice::StringParam("out".into()))
    );
    assert_eq!(
        p["shared_memory_byte_size"].parameter_choice,
        Some(ParameterChoice::Int64Param(4))
    );
    assert!(r.outputs[1].parameters.is_empty());
}

#[test]
fn an_output_asked_for_as_classes_comes_back_as_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), "small\nbig\n").unwrap();
    let config = torchbridge_core::TensorConfig {
        name: "B".into(),
        datatype: DataType::Fp32,
        dims: vec![2],
        labels: Some("b.txt".into()),
    };
    let labels = OutputLabels::read(dir.path(), &[config]).unwrap();
    let classified = |count| InferRequestedOutputTensor {
        name: "B".into(),
        parameters: HashMap::from([(
            "classification".to_string(),
            InferParameter {
                parameter_choice: Some(count),
            },
        )]),
    };
    let requested = vec![classified(ParameterChoice::Int64Param(1))];
    let plans = check_requested(&metadata(), &requested).unwrap();
    assert_eq!(plans[0].classes, Some(1));
    let b = Tensor::from_slice("B", vec![2, 2], &[0.25f32, 0.75, 4.0, -4.0]).unwrap();
    let r = response(
        &metadata(),
        &labels,
        String::new(),
        vec![b],
        &requested,
        &plans,
        &SharedMemory::default(),
    )
    .unwrap();
    assert_eq!(r.outputs[0].datatype, "BYTES");
    assert_eq!(r.outputs[0].shape, vec![2, 1]);
    let expected =
        Tensor::from_strings("B", vec![2, 1], &["0.750000:1:big", "4.000000:0:small"]).unwrap();
    assert_eq!(r.raw_output_contents, vec![expected.data]);

    for (bad, why) in [
        (ParameterChoice::Int64Param(0), "asks for 0 classes"),
        (
            ParameterChoice::StringParam("2".into()),
            "takes a whole number of classes",
        ),
    ] {
        let e = error(check_requested(&metadata(), &[classified(bad)]));
        assert!(e.contains("output `B`") && e.contains(why), "{e}");
    }
}

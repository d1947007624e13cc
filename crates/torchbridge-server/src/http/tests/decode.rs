//! Inference requests: JSON data of every datatype, binary data, output selection.

use axum::body::Bytes;
use half::{bf16, f16};
use serde_json::{Value, json};
use torchbridge_core::{OutputLabels, Tensor};

use super::{metadata, outputs};
use crate::http::request::{Delivery, InferRequest, decode};
use crate::shared_memory::tests::Object;
use crate::{Limits, Placement, SharedMemory};

fn request(body: Value) -> Result<InferRequest, String> {
    decode(
        Bytes::from(body.to_string()),
        None,
        &Limits::default(),
        &SharedMemory::default(),
    )
    .map_err(|e| e.message().to_string())
}

fn one_input(datatype: &str, shape: Value, data: Value) -> Result<Tensor, String> {
    let body =
        json!({"inputs": [{"name": "X", "shape": shape, "datatype": datatype, "data": data}]});
    Ok(request(body)?.inputs.remove(0))
}

/// A request body: JSON header followed by `binary`, and the header's length.
fn with_binary(header: Value, binary: &[u8]) -> (Bytes, usize) {
    let mut body = header.to_string().into_bytes();
    let n = body.len();
    body.extend_from_slice(binary);
    (Bytes::from(body), n)
}

#[test]
fn every_datatype_decodes_flat_and_nested() {
    let cases: Vec<(&str, Value, Tensor)> = vec![
        (
            "BOOL",
            json!([true, false, 1, 0]),
            Tensor::from_bools("X", vec![2, 2], &[true, false, true, false]).unwrap(),
        ),
        (
            "UINT8",
            json!([0, 1, 254, 255]),
            Tensor::from_slice("X", vec![2, 2], &[0u8, 1, 254, 255]).unwrap(),
        ),
        (
            "UINT16",
            json!([0, 1, 2, 65535]),
            Tensor::from_slice("X", vec![2, 2], &[0u16, 1, 2, 65535]).unwrap(),
        ),
        (
            "UINT32",
            json!([0, 1, 2, 4294967295u32]),
            Tensor::from_slice("X", vec![2, 2], &[0u32, 1, 2, u32::MAX]).unwrap(),
        ),
        (
            "UINT64",
            json!([0, 1, 2, u64::MAX]),
            Tensor::from_slice("X", vec![2, 2], &[0u64, 1, 2, u64::MAX]).unwrap(),
        ),
        (
            "INT8",
            json!([-128, -1, 0, 127]),
            Tensor::from_slice("X", vec![2, 2], &[-128i8, -1, 0, 127]).unwrap(),
        ),
        (
            "INT16",
            json!([-32768, -1, 0, 32767]),
            Tensor::from_slice("X", vec![2, 2], &[i16::MIN, -1, 0, i16::MAX]).unwrap(),
        ),
        (
            "INT32",
            json!([i32::MIN, -1, 3.0, i32::MAX]),
            Tensor::from_slice("X", vec![2, 2], &[i32::MIN, -1, 3, i32::MAX]).unwrap(),
        ),
        (
            "INT64",
            json!([i64::MIN, -1, 0, i64::MAX]),
            Tensor::from_slice("X", vec![2, 2], &[i64::MIN, -1, 0, i64::MAX]).unwrap(),
        ),
        (
            "FP16",
            json!([0.5, -1, 2, 65504.0]),
            Tensor::from_slice(
                "X",
                vec![2, 2],
                &[
                    f16::from_f32(0.5),
                    f16::from_f32(-1.0),
                    f16::from_f32(2.0),
                    f16::MAX,
                ],
            )
            .unwrap(),
        ),
        (
            "BF16",
            json!([0.5, -1, 2, 1e30]),
            Tensor::from_slice(
                "X",
                vec![2, 2],
                &[
                    bf16::from_f32(0.5),
                    bf16::from_f32(-1.0),
                    bf16::from_f32(2.0),
                    bf16::from_f64(1e30),
                ],
            )
            .unwrap(),
        ),
        (
            "FP32",
            json!([0.1, -1, 2, 3.4e38]),
            Tensor::from_slice("X", vec![2, 2], &[0.1f32, -1.0, 2.0, 3.4e38]).unwrap(),
        ),
        (
            "FP64",
            json!([0.1, -1, 2, 1e300]),
            Tensor::from_slice("X", vec![2, 2], &[0.1f64, -1.0, 2.0, 1e300]).unwrap(),
        ),
        (
            "BYTES",
            json!(["a", "", "héllo", "\u{0}\"q\""]),
            Tensor::from_strings("X", vec![2, 2], &["a", "", "héllo", "\u{0}\"q\""]).unwrap(),
        ),
    ];
    for (datatype, flat, want) in cases {
        let got = one_input(datatype, json!([2, 2]), flat.clone()).unwrap();
        assert_eq!(got, want, "{datatype} flat");
        let items = flat.as_array().unwrap();
        let nested = json!([[items[0], items[1]], [items[2], items[3]]]);
        let got = one_input(datatype, json!([2, 2]), nested).unwrap();
        assert_eq!(got, want, "{datatype} nested");
    }
}

#[test]
fn element_count_and_ranges_are_checked() {
    let err = one_input("FP32", json!([2, 3]), json!([1, 2, 3, 4, 5])).unwrap_err();
    assert!(
        err.contains("input `X`: shape [2, 3] needs 6 elements, `data` holds 5"),
        "{err}"
    );
    let refused = [
        (
            "UINT8",
            json!([1, 300]),
            "input `X`: 300 is out of range for UINT8",
        ),
        (
            "UINT8",
            json!([-1]),
            "input `X`: -1 is out of range for UINT8",
        ),
        (
            "INT8",
            json!([-129]),
            "input `X`: -129 is out of range for INT8",
        ),
        ("UINT64", json!([-5]), "-5 is out of range for UINT64"),
        (
            "INT32",
            json!([1.5]),
            "1.5 is not a whole number, which INT32 needs",
        ),
        ("FP16", json!([70000]), "70000 is out of range for FP16"),
        ("FP32", json!([1e39]), "out of range for FP32"),
        ("BOOL", json!([2]), "2 is out of range for BOOL"),
        (
            "FP32",
            json!(["1.0"]),
            "input `X`: FP32 data cannot hold a string",
        ),
        (
            "BYTES",
            json!([1]),
            "input `X`: BYTES data cannot hold a number",
        ),
        ("INT64", json!([true]), "INT64 data cannot hold a boolean"),
        (
            "FP32",
            json!({"a": 1}),
            "expected FP32 data (a flat or nested array) for input `X`",
        ),
        ("FLOAT", json!([1]), "unknown datatype `FLOAT`"),
    ];
    for (datatype, data, message) in refused {
        let err = one_input(datatype, json!([1]), data).unwrap_err();
        assert!(err.contains(message), "{datatype}: {err}");
    }
    let err = one_input("FP32", json!([-1]), json!([])).unwrap_err();
    assert!(err.contains("negative dimension"), "{err}");
    let err =
        request(json!({"inputs": [{"name": "X", "datatype": "FP32", "data": [1]}]})).unwrap_err();
    assert!(err.contains("missing field `shape`"), "{err}");
    let err = decode(
        Bytes::from_static(b"{\"inputs\": [}"),
        None,
        &Limits::default(),
        &SharedMemory::default(),
    )
    .unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
}

#[test]
fn data_before_its_datatype_is_decoded_after_the_object() {
    let body = json!({"inputs": [{"data": [[1, 2], [3, 4]], "shape": [2, 2], "name": "X", "datatype": "INT16"}]});
    let t = request(body).unwrap().inputs.remove(0);
    assert_eq!(t.to_vec::<i16>().unwrap(), vec![1, 2, 3, 4]);
    let body = json!({"inputs": [{"data": [300], "shape": [1], "name": "X", "datatype": "UINT8"}]});
    assert!(
        request(body)
            .unwrap_err()
            .contains("300 is out of range for UINT8")
    );
}

#[test]
fn binary_and_json_inputs_mix() {
    let floats = [1.5f32, -2.0, 3.25];
    let float_bytes: Vec<u8> = floats.iter().flat_map(|v| v.to_le_bytes()).collect();
    let strings = Tensor::from_strings("S", vec![2], &["ab", "ç"]).unwrap();
    let header = json!({
        "id": "req-7",
        "inputs": [
            {"name": "A", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
            {"name": "B", "shape": [2], "datatype": "INT64", "data": [5, 6]},
            {"name": "S", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": strings.data.len()}},
        ],
        "outputs": [{"name": "Y", "parameters": {"binary_data": true}}],
    });
    let binary = [float_bytes.as_slice(), &strings.data].concat();
    let (body, n) = with_binary(header, &binary);
    let request = decode(
        body.clone(),
        Some(n),
        &Limits::default(),
        &SharedMemory::default(),
    )
    .unwrap();
    assert_eq!(request.id.as_deref(), Some("req-7"));
    let [a, b, s] = &request.inputs[..] else {
        panic!()
    };
    assert_eq!(a.to_vec::<f32>().unwrap(), floats);
    assert_eq!(
        a.data.as_ptr(),
        body[n..].as_ptr(),
        "binary inputs are slices of the body"
    );
    assert_eq!(b.to_vec::<i64>().unwrap(), vec![5, 6]);
    assert_eq!(s, &strings);
}

#[test]
fn binary_sizes_must_add_up() {
    let input = |size: usize| json!({"inputs": [{"name": "A", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": size}}]});
    let err = |header: Value, binary: &[u8]| {
        let (body, n) = with_binary(header, binary);
        decode(body, Some(n), &Limits::default(), &SharedMemory::default())
            .unwrap_err()
            .message()
            .to_string()
    };
    assert!(
        err(input(8), &[0; 12])
            .contains("holds 12 bytes of binary data but the inputs' binary_data_size add up to 8")
    );
    assert!(err(input(8), &[0; 4]).contains("input `A`: binary_data_size is 8 but only 4"));
    assert!(err(input(4), &[0; 4]).contains("shape [2] of FP32 needs 8 bytes, got 4"));
    let both = json!({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}]});
    assert!(err(both, &[0; 4]).contains("both `data` and `parameters.binary_data_size`"));
    let neither = json!({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32"}]});
    assert!(err(neither, &[]).contains("no `data` and no `parameters.binary_data_size`"));
    let shm = json!({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32", "parameters": {"shared_memory_region": "r"}}]});
    assert!(
        err(shm, &[])
            .contains("give `shared_memory_region` and `shared_memory_byte_size` together")
    );
    let shm = json!({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32", "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}]});
    assert!(err(shm, &[]).contains("no shared-memory region `r` is registered"));
}

#[test]
fn a_json_header_of_the_wrong_length_is_named() {
    let input = json!({"inputs": [{"name": "A", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]});
    let (body, n) = with_binary(input, &[0; 4]);
    let decoded = |length| {
        decode(
            body.clone(),
            length,
            &Limits::default(),
            &SharedMemory::default(),
        )
        .unwrap_err()
        .message()
        .to_string()
    };
    let e = decoded(None);
    assert!(
        e.contains("needs the Inference-Header-Content-Length header"),
        "{e}"
    );
    let e = decoded(Some(n - 3));
    assert!(e.contains("says the JSON is"), "{e}");
    let e = request(json!([])).unwrap_err();
    assert!(
        e.contains("must be a JSON object with `inputs`") && !e.contains("RequestJson"),
        "{e}"
    );
}

#[test]
fn inputs_are_read_from_shared_memory_and_outputs_placed_there() {
    let values = [1.5f32, -2.0, 3.25, 0.0];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut object_bytes = vec![9u8; 8];
    object_bytes.extend_from_slice(&bytes);
    let object = Object::new(&object_bytes);
    let shm = SharedMemory::new(true);
    shm.register("in", &object.key, 0, object_bytes.len() as u64)
        .unwrap();
    let decode_json = |body: Value| {
        decode(
            Bytes::from(body.to_string()),
            None,
            &Limits::default(),
            &shm,
        )
        .map_err(|e| e.message().to_string())
    };
    let placed = |size: u64| json!({"shared_memory_region": "in", "shared_memory_offset": 8, "shared_memory_byte_size": size});
    let request = decode_json(json!({
        "inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP32", "parameters": placed(16)}],
        "outputs": [{"name": "Y", "parameters": {"shared_memory_region": "out", "shared_memory_byte_size": 64}}, {"name": "Z"}],
    }))
    .unwrap();
    let expected = Tensor::from_slice("X", vec![2, 2], &values).unwrap();
    assert_eq!(request.inputs, vec![expected]);
    let picked = request
        .outputs
        .select(outputs(), &metadata(), &OutputLabels::default())
        .unwrap();
    let out = Placement {
        region: "out".into(),
        offset: 0,
        byte_size: 64,
        bound: None,
    };
    assert_eq!(picked[0].1, Delivery::SharedMemory(out));
    assert_eq!(picked[1].1, Delivery::Json);

    let wrong_size = decode_json(json!({
        "inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP32", "parameters": placed(12)}],
    }))
    .unwrap_err();
    assert!(
        wrong_size.contains("FP32 shape [2, 2] needs 16 bytes, shared_memory_byte_size is 12"),
        "{wrong_size}"
    );
    let twice = decode_json(json!({
        "inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0], "parameters": placed(4)}],
    }))
    .unwrap_err();
    assert!(
        twice.contains("input `X` is in shared memory and also has `data`"),
        "{twice}"
    );
}

#[test]
fn outputs_are_selected_by_name_and_flag() {
    let mut req = request(json!({"inputs": [], "outputs": [{"name": "W"}]})).unwrap();
    let err = req.outputs.check(&metadata()).unwrap_err();
    assert!(
        err.message()
            .contains("model `m` has no output `W`; its outputs are `Y`, `Z`"),
        "{err}"
    );
    let mut req = request(json!({
        "inputs": [], "parameters": {"binary_data_output": true},
        "outputs": [{"name": "Z", "parameters": {"binary_data": false}}, {"name": "Y"}],
    }))
    .unwrap();
    req.outputs.check(&metadata()).unwrap();
    let picked = req
        .outputs
        .select(outputs(), &metadata(), &OutputLabels::default())
        .unwrap();
    let picked: Vec<_> = picked
        .iter()
        .map(|(t, d)| (t.name.as_str(), d.clone()))
        .collect();
    assert_eq!(picked, vec![("Z", Delivery::Json), ("Y", Delivery::Binary)]);
    let err =
        request(json!({"inputs": [], "outputs": [{"name": "Y"}, {"name": "Y"}]})).unwrap_err();
    assert!(err.contains("requested twice"), "{err}");
    // An empty list, as no list: every output (gRPC's empty repeated field reads so).
    let req = request(json!({"inputs": [], "outputs": []})).unwrap();
    let picked = req
        .outputs
        .select(outputs(), &metadata(), &OutputLabels::default())
        .unwrap();
    let names: Vec<_> = picked.iter().map(|(t, _)| t.name.as_str()).collect();
    assert_eq!(names, ["Y", "Z"]);
}

#[test]
fn a_timeout_of_zero_is_none() {
    let timeout = |us: u64| {
        request(json!({"inputs": [], "parameters": {"timeout": us}}))
            .unwrap()
            .timeout
    };
    assert_eq!(timeout(0), None);
    assert_eq!(timeout(250), Some(std::time::Duration::from_micros(250)));
    for bad in [json!(-5), json!("soon"), json!(1.5)] {
        let e = request(json!({"inputs": [], "parameters": {"timeout": bad}})).unwrap_err();
        assert!(
            e.contains("parameter `timeout` must be a whole number of microseconds ≥ 0"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn an_output_asked_for_as_classes_comes_back_as_them() {
    let mut req = request(json!({
        "inputs": [], "parameters": {"binary_data_output": true},
        "outputs": [{"name": "Y", "parameters": {"classification": 1}}],
    }))
    .unwrap();
    req.outputs.check(&metadata()).unwrap();
    let picked = req
        .outputs
        .select(outputs(), &metadata(), &OutputLabels::default())
        .unwrap();
    let (classes, delivery) = &picked[0];
    assert_eq!(*delivery, Delivery::Binary);
    assert_eq!(classes.shape, [1, 1]);
    assert_eq!(classes.strings().unwrap(), [b"2.500000:1"]);

    for (count, why) in [
        (json!(0), "asks for 0 classes"),
        (json!("3"), "takes a whole number of classes, not \"3\""),
        (json!(2.5), "takes a whole number of classes, not 2.5"),
    ] {
        let mut req = request(json!({
            "inputs": [], "outputs": [{"name": "Z", "parameters": {"classification": count}}],
        }))
        .unwrap();
        let err = req.outputs.check(&metadata()).unwrap_err();
        assert!(err.message().contains("output `Z`"), "{err}");
        assert!(err.message().contains(why), "{err}");
    }
}

//! Inference responses: JSON data of every datatype, binary outputs, compression.

use half::{bf16, f16};
use serde_json::{Value, json};
use torchbridge_core::Tensor;

use super::outputs;
use crate::http::compression::{Encoding, decompress};
use crate::http::request::Delivery;
use crate::http::response::{encode, into_response};

#[test]
fn json_responses_carry_every_datatype() {
    let tensors = vec![
        Tensor::from_bools("b", vec![2], &[true, false]).unwrap(),
        Tensor::from_slice("u8", vec![2], &[0u8, 255]).unwrap(),
        Tensor::from_slice("u64", vec![1], &[u64::MAX]).unwrap(),
        Tensor::from_slice("i8", vec![2], &[-128i8, 7]).unwrap(),
        Tensor::from_slice("i64", vec![1], &[i64::MIN]).unwrap(),
        Tensor::from_slice("f16", vec![2], &[f16::from_f32(0.5), f16::from_f32(-3.0)]).unwrap(),
        Tensor::from_slice("bf16", vec![1], &[bf16::from_f32(1.5)]).unwrap(),
        Tensor::from_slice(
            "f32",
            vec![5],
            &[0.1f32, 1e-7, f32::INFINITY, -f32::INFINITY, f32::NAN],
        )
        .unwrap(),
        Tensor::from_slice("f64", vec![1], &[0.1f64]).unwrap(),
        Tensor::from_strings("s", vec![2], &["a\"b", "ü"]).unwrap(),
        Tensor::from_slice("empty", vec![0, 4], &[0f32; 0]).unwrap(),
    ];
    let outputs: Vec<_> = tensors.into_iter().map(|t| (t, Delivery::Json)).collect();
    let encoded = encode("m", 3, Some("id-1"), &outputs).unwrap();
    assert_eq!(encoded.header_length, None);
    // Floats are written shortest-round-trip for their own width; NaN and the infinities
    // as Triton writes them, which serde_json reads once quoted.
    let body = String::from_utf8(encoded.body.to_vec()).unwrap();
    assert!(
        body.contains(r#""data":[0.1,1e-7,Infinity,-Infinity,NaN]"#),
        "{body}"
    );
    let quoted = crate::http::tensor_json::quote_non_finite(&encoded.body).unwrap();
    let v: Value = serde_json::from_slice(&quoted).unwrap();
    assert_eq!(
        (
            v["model_name"].as_str(),
            v["model_version"].as_str(),
            v["id"].as_str()
        ),
        (Some("m"), Some("3"), Some("id-1"))
    );
    let data: Vec<Value> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["data"].clone())
        .collect();
    assert_eq!(
        data,
        vec![
            json!([true, false]),
            json!([0, 255]),
            json!([u64::MAX]),
            json!([-128, 7]),
            json!([i64::MIN]),
            json!([0.5, -3.0]),
            json!([1.5]),
            json!([0.1, 1e-7, "Infinity", "-Infinity", "NaN"]),
            json!([0.1]),
            json!(["a\"b", "ü"]),
            json!([]),
        ]
    );
    assert_eq!(v["outputs"][5]["datatype"], "FP16");
    assert_eq!(v["outputs"][10]["shape"], json!([0, 4]));
}

#[test]
fn binary_outputs_follow_the_json_in_order() {
    let [y, z] = <[Tensor; 2]>::try_from(outputs()).unwrap();
    let picked = vec![
        (z.clone(), Delivery::Binary),
        (y.clone(), Delivery::Json),
        (y.clone(), Delivery::Binary),
    ];
    let encoded = encode("m", 1, None, &picked).unwrap();
    let n = encoded.header_length.unwrap();
    let v: Value = serde_json::from_slice(&encoded.body[..n]).unwrap();
    assert!(v.get("id").is_none());
    assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert!(v["outputs"][0].get("data").is_none());
    assert_eq!(v["outputs"][1]["data"], json!([1.0, 2.5]));
    assert_eq!(&encoded.body[n..], [&z.data[..], &y.data[..]].concat());

    let response = into_response(encoded, Some(Encoding::Gzip));
    let headers = response.headers();
    assert_eq!(
        headers["inference-header-content-length"],
        n.to_string().as_str()
    );
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-type"], "application/octet-stream");
}

#[tokio::test]
async fn compressed_responses_inflate_to_the_same_body() {
    let picked: Vec<_> = outputs()
        .into_iter()
        .map(|t| (t, Delivery::Binary))
        .collect();
    let plain = encode("m", 1, None, &picked).unwrap().body;
    for encoding in [Encoding::Gzip, Encoding::Deflate] {
        let response = into_response(encode("m", 1, None, &picked).unwrap(), Some(encoding));
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(decompress(encoding, &body, 1 << 20).unwrap(), plain);
    }
}

#[test]
fn non_utf8_bytes_cannot_go_as_json() {
    let t = Tensor::from_strings("s", vec![1], &[&[0xffu8, 0xfe][..]]).unwrap();
    let err = encode("m", 1, None, &[(t.clone(), Delivery::Json)]).unwrap_err();
    assert!(err.message().contains("not UTF-8"), "{err}");
    assert!(encode("m", 1, None, &[(t, Delivery::Binary)]).is_ok());
}

#[test]
fn outputs_in_shared_memory_are_only_described() {
    let [y, z] = <[Tensor; 2]>::try_from(outputs()).unwrap();
    let placed = Delivery::SharedMemory(crate::Placement {
        region: "out".into(),
        offset: 8,
        byte_size: 64,
        bound: None,
    });
    let encoded = encode("m", 1, None, &[(y, placed), (z.clone(), Delivery::Binary)]).unwrap();
    let n = encoded.header_length.unwrap();
    let v: Value = serde_json::from_slice(&encoded.body[..n]).unwrap();
    let described = v["outputs"][0].as_object().unwrap();
    let mut keys: Vec<_> = described.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["datatype", "name", "shape"]);
    assert_eq!(
        &encoded.body[n..],
        &z.data[..],
        "only the binary output's data follows"
    );
}

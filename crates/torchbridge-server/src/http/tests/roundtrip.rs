//! Property: every tensor the server encodes into a response decodes, as a request,
//! back to the same tensor — every datatype, a range of shapes, JSON and binary data
//! mixed in one body.

use axum::body::Bytes;
use proptest::prelude::*;

use crate::http::request::{Delivery, decode};
use crate::http::response::encode;
use crate::test_tensors::{Carrier, tensors};
use crate::{Limits, SharedMemory};

/// The response body turned into a request body: its `outputs` become `inputs` (the
/// decoder skips the fields a request does not have), the binary part stays.
fn as_request(body: &[u8], header_length: Option<usize>) -> (Bytes, Option<usize>) {
    let json_end = header_length.unwrap_or(body.len());
    let json = std::str::from_utf8(&body[..json_end]).expect("the JSON part is UTF-8");
    let json = json.replacen(",\"outputs\":[", ",\"inputs\":[", 1);
    let mut request = json.clone().into_bytes();
    request.extend_from_slice(&body[json_end..]);
    (Bytes::from(request), header_length.map(|_| json.len()))
}

fn delivery(binary: bool) -> Delivery {
    match binary {
        true => Delivery::Binary,
        false => Delivery::Json,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn responses_decode_back_to_the_same_tensors(outputs in tensors(Carrier::Json)) {
        let outputs: Vec<_> = outputs.into_iter().map(|(t, b)| (t, delivery(b))).collect();
        let encoded = encode("m", 1, None, &outputs).unwrap();
        let (body, header_length) = as_request(&encoded.body, encoded.header_length);
        let request = decode(body, header_length, &Limits::default(), &SharedMemory::default()).unwrap();
        let expected: Vec<_> = outputs.into_iter().map(|(t, _)| t).collect();
        prop_assert_eq!(request.inputs, expected);
    }

    #[test]
    fn any_bytes_round_trip_as_binary_data(outputs in tensors(Carrier::Raw)) {
        let binary: Vec<_> = outputs.into_iter().map(|(t, _)| (t, Delivery::Binary)).collect();
        let encoded = encode("m", 1, None, &binary).unwrap();
        let (body, header_length) = as_request(&encoded.body, encoded.header_length);
        let request = decode(body, header_length, &Limits::default(), &SharedMemory::default()).unwrap();
        let expected: Vec<_> = binary.into_iter().map(|(t, _)| t).collect();
        prop_assert_eq!(request.inputs, expected);
    }
}

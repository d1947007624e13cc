//! Encoding an inference response into one buffer: the JSON object, then the raw data
//! of each binary output in the order the JSON lists them. Output data is copied once,
//! into that buffer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use torchbridge_core::{DataType, Tensor};

use super::binary::HEADER_LENGTH;
use super::compression::{Encoding, compress};
use super::error::ApiError;
use super::request::Delivery;
use super::tensor_json::write_data;

/// An encoded response body; `header_length` is set when binary data follows the JSON.
#[derive(Debug)]
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes `outputs` (each with how it goes back) as the response of `model` version
/// `version` to request `id`. Outputs delivered in shared memory get only their name,
/// datatype and shape: their data is already in the client's region.
pub fn encode(
    model: &str,
    version: u64,
    id: Option<&str>,
    outputs: &[(Tensor, Delivery)],
) -> Result<Encoded, ApiError> {
    let is_binary = |o: &&(Tensor, Delivery)| o.1 == Delivery::Binary;
    let binary_bytes: usize = outputs
        .iter()
        .filter(is_binary)
        .map(|o| o.0.data.len())
        .sum();
    let json_estimate: usize = outputs
        .iter()
        .map(|(t, delivery)| {
            let data = match delivery {
                Delivery::Json => json_size(t),
                Delivery::Binary | Delivery::SharedMemory(_) => 0,
            };
            96 + t.name.len() + data
        })
        .sum();
    let mut out = Vec::with_capacity(64 + model.len() + json_estimate + binary_bytes);
    out.extend_from_slice(b"{\"model_name\":");
    string(&mut out, model);
    out.extend_from_slice(b",\"model_version\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
    out.push(b'"');
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        string(&mut out, id);
    }
    out.extend_from_slice(b",\"outputs\":[");
    for (i, (t, delivery)) in outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        string(&mut out, &t.name);
        out.extend_from_slice(b",\"datatype\":\"");
        out.extend_from_slice(t.datatype.as_str().as_bytes());
        out.extend_from_slice(b"\",\"shape\":[");
        for (j, d) in t.shape.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(itoa::Buffer::new().format(*d).as_bytes());
        }
        out.push(b']');
        match delivery {
            Delivery::Binary => {
                out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
                out.extend_from_slice(itoa::Buffer::new().format(t.data.len()).as_bytes());
                out.push(b'}');
            }
            Delivery::Json => {
                out.extend_from_slice(b",\"data\":");
                write_data(&mut out, t)?;
            }
            // Neither data nor parameters: Triton's C++ client reads `binary_data_size`
            // from any output that has parameters.
            Delivery::SharedMemory(_) => {}
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    let header_length = outputs.iter().any(|o| is_binary(&o)).then_some(out.len());
    for (t, _) in outputs.iter().filter(is_binary) {
        out.extend_from_slice(&t.data);
    }
    Ok(Encoded {
        body: out,
        header_length,
    })
}

/// About how many bytes `t` takes as JSON, to size the buffer once.
fn json_size(t: &Tensor) -> usize {
    let per_element = match t.datatype {
        DataType::Bool => 6,
        DataType::Uint8 | DataType::Int8 => 4,
        DataType::Fp16 | DataType::Bf16 => 10,
        DataType::Fp32 => 14,
        DataType::Fp64 => 24,
        DataType::Bytes => return t.data.len() + t.data.len() / 2,
        _ => 12,
    };
    t.element_count() * per_element
}

fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
}

/// The HTTP response for an encoded body, compressed when the client asked.
pub fn into_response(encoded: Encoded, compression: Option<Encoding>) -> Response {
    let content_type = match encoded.header_length {
        Some(_) => "application/octet-stream",
        None => "application/json",
    };
    let body = match compression {
        Some(encoding) => compress(encoding, &encoded.body),
        None => encoded.body,
    };
    let mut response =
        (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    if let Some(n) = encoded.header_length {
        headers.insert(HEADER_LENGTH, HeaderValue::from(n));
    }
    if let Some(encoding) = compression {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.as_str()),
        );
    }
    response
}

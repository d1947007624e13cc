//! Inputs reach Python as views of the Rust buffer, except where alignment forbids it.

use bytes::Bytes;
use torchbridge_core::{Batch, DataType, Tensor};

use crate::fixtures::fixtures;

/// Where the handler saw `X`'s memory.
fn address_seen(data: Bytes) -> usize {
    let mut model = fixtures().load("handler_address").unwrap();
    let x = Tensor::new("X", DataType::Fp32, vec![4], data).unwrap();
    let out = model
        .infer(Batch {
            inputs: vec![x],
            rows: 1,
        })
        .unwrap();
    out[0].to_vec::<i64>().unwrap()[0] as usize
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn an_aligned_input_is_not_copied() {
    let data = Bytes::from(floats(&[1.0, 2.0, 3.0, 4.0]));
    assert_eq!(data.as_ptr() as usize % 4, 0);
    assert_eq!(address_seen(data.clone()), data.as_ptr() as usize);
}

#[test]
fn a_misaligned_input_is_copied_and_still_right() {
    let mut raw = vec![0u8];
    raw.extend(floats(&[1.0, 2.0, 3.0, 4.0]));
    let data = Bytes::from(raw).slice(1..);
    assert_ne!(data.as_ptr() as usize % 4, 0);
    assert_ne!(address_seen(data.clone()), data.as_ptr() as usize);
    let mut model = fixtures().load("handler_errors").unwrap();
    let x = Tensor::new("X", DataType::Fp32, vec![2, 2], data).unwrap();
    let y = model
        .infer(Batch {
            inputs: vec![x],
            rows: 2,
        })
        .unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn an_empty_batch_dimension_and_a_bad_bool_are_handled() {
    let mut model = fixtures().load("torchscript_dict").unwrap();
    let h = Tensor::new("H", DataType::Bf16, vec![0, 2], Vec::new()).unwrap();
    let m = Tensor::from_bools("M", vec![0, 3], &[]).unwrap();
    let out = model
        .infer(Batch {
            inputs: vec![h, m],
            rows: 0,
        })
        .unwrap();
    assert_eq!(
        (out[0].shape.clone(), out[1].shape.clone()),
        (vec![0, 2], vec![0, 3])
    );
    let h = Tensor::from_slice("H", vec![1, 2], &[half::bf16::ONE; 2]).unwrap();
    let m = Tensor::new("M", DataType::Bool, vec![1, 3], vec![0u8, 1, 2]).unwrap();
    let err = model
        .infer(Batch {
            inputs: vec![h, m],
            rows: 1,
        })
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("BOOL elements must be the bytes 0 or 1"),
        "{err}"
    );
}

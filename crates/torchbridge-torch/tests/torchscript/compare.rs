//! Comparing what the bridge returned with what Python computed.

use half::{bf16, f16};
use torchbridge_core::{DataType, Tensor};

/// Relative tolerance for floats: the same libtorch computes both sides, but a matrix
/// product may sum in another order with another thread count.
const TOLERANCE: f64 = 1e-5;

/// Same names, datatypes and shapes; integers and bools equal, floats within
/// [`TOLERANCE`] of each other (relative, or absolute near zero).
pub fn assert_close(actual: &[Tensor], expected: &[Tensor]) {
    assert_eq!(actual.len(), expected.len(), "output count");
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(
            (&a.name, a.datatype, &a.shape),
            (&e.name, e.datatype, &e.shape)
        );
        if !a.datatype.is_float() {
            assert_eq!(a.data, e.data, "output `{}`", a.name);
            continue;
        }
        let (got, want) = (floats(a), floats(e));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let close = (g - w).abs() <= TOLERANCE * w.abs().max(1.0);
            assert!(
                close,
                "output `{}` element {i}: got {g}, expected {w}",
                a.name
            );
        }
    }
}

fn floats(t: &Tensor) -> Vec<f64> {
    match t.datatype {
        DataType::Fp16 => t
            .to_vec::<f16>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::Bf16 => t
            .to_vec::<bf16>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::Fp32 => t
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::Fp64 => t.to_vec::<f64>().unwrap(),
        other => panic!("{other} is not a float datatype"),
    }
}

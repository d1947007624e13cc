//! How far apart two bridges' outputs are, element by element.

use crate::{DataType, Tensor};

/// The largest differences between two tensors of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Difference {
    pub max_abs: f64,
    /// `|a - b| / |b|` where `b` is the reference (0 where both are 0).
    pub max_rel: f64,
    /// Elements outside `atol + rtol·|b|` (numpy's `allclose` rule, NaN equal to NaN);
    /// for integers and booleans, elements that differ at all.
    pub mismatched: usize,
    pub elements: usize,
}

/// The elements of a numeric or boolean tensor as `f64`.
pub fn to_f64(t: &Tensor) -> Option<Vec<f64>> {
    macro_rules! conv {
        ($t:ty) => {
            t.to_vec::<$t>()
                .ok()?
                .into_iter()
                .map(|v| v as f64)
                .collect()
        };
    }
    Some(match t.datatype {
        DataType::Bool => t
            .data
            .iter()
            .map(|&b| f64::from(u8::from(b != 0)))
            .collect(),
        DataType::Uint8 => conv!(u8),
        DataType::Uint16 => conv!(u16),
        DataType::Uint32 => conv!(u32),
        DataType::Uint64 => conv!(u64),
        DataType::Int8 => conv!(i8),
        DataType::Int16 => conv!(i16),
        DataType::Int32 => conv!(i32),
        DataType::Int64 => conv!(i64),
        DataType::Fp16 => t
            .to_vec::<half::f16>()
            .ok()?
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::Fp32 => conv!(f32),
        DataType::Fp64 => conv!(f64),
        DataType::Bf16 => t
            .to_vec::<half::bf16>()
            .ok()?
            .into_iter()
            .map(f64::from)
            .collect(),
        DataType::Bytes => return None,
    })
}

/// Compares `actual` with `reference`; `Err` when they cannot be compared at all
/// (datatype, shape), with the reason.
pub fn compare(
    actual: &Tensor,
    reference: &Tensor,
    rtol: f64,
    atol: f64,
) -> Result<Difference, String> {
    if actual.datatype != reference.datatype || actual.shape != reference.shape {
        return Err(format!(
            "`{}` is {} {:?}, the reference is {} {:?}",
            actual.name, actual.datatype, actual.shape, reference.datatype, reference.shape
        ));
    }
    let (Some(a), Some(b)) = (to_f64(actual), to_f64(reference)) else {
        // BYTES: equal or not.
        let same = actual.data == reference.data;
        return Ok(Difference {
            max_abs: if same { 0.0 } else { f64::INFINITY },
            max_rel: if same { 0.0 } else { f64::INFINITY },
            mismatched: usize::from(!same),
            elements: actual.element_count(),
        });
    };
    let mut d = Difference {
        elements: a.len(),
        ..Difference::default()
    };
    if !reference.datatype.is_float() {
        // Integers and booleans agree exactly or not at all (and an INT64 beyond 2^53
        // would round in f64): count the elements whose bytes differ.
        let width = reference.datatype.size().unwrap_or(1);
        d.mismatched = actual
            .data
            .chunks(width)
            .zip(reference.data.chunks(width))
            .filter(|(x, y)| x != y)
            .count();
    }
    for (&x, &y) in a.iter().zip(&b) {
        let abs = if x == y || (x.is_nan() && y.is_nan()) {
            0.0
        } else {
            (x - y).abs()
        };
        let rel = if abs == 0.0 { 0.0 } else { abs / y.abs() };
        d.max_abs = d
            .max_abs
            .max(if abs.is_nan() { f64::INFINITY } else { abs });
        d.max_rel = d
            .max_rel
            .max(if rel.is_nan() { f64::INFINITY } else { rel });
        // NaN agrees with NaN only (numpy's `equal_nan`): both bridges made the same NaN.
        let close = abs <= atol + rtol * y.abs() || (x.is_nan() && y.is_nan());
        if !close && reference.datatype.is_float() {
            d.mismatched += 1;
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_differences() {
        let a = Tensor::from_slice("y", vec![3], &[1.0f32, 2.0, 4.0]).unwrap();
        let b = Tensor::from_slice("y", vec![3], &[1.0f32, 2.5, 4.0]).unwrap();
        let d = compare(&a, &b, 0.0, 0.1).unwrap();
        assert_eq!((d.max_abs, d.max_rel, d.mismatched), (0.5, 0.2, 1));
        assert_eq!(compare(&a, &a, 0.0, 0.0).unwrap().mismatched, 0);
        let c = Tensor::from_slice("y", vec![3], &[1i64, 2, 4]).unwrap();
        assert!(compare(&a, &c, 0.0, 0.0).unwrap_err().contains("INT64"));
        let nan = Tensor::from_slice("y", vec![3], &[1.0f32, f32::NAN, 4.0]).unwrap();
        assert_eq!(compare(&nan, &b, 1.0, 1.0).unwrap().mismatched, 1);
        let same_nan = compare(&nan, &nan, 0.0, 0.0).unwrap();
        assert_eq!((same_nan.mismatched, same_nan.max_abs), (0, 0.0));
    }

    #[test]
    fn integers_agree_exactly_whatever_the_tolerance() {
        let big = 1i64 << 60;
        let a = Tensor::from_slice("y", vec![2], &[1_000_000i64, big]).unwrap();
        let b = Tensor::from_slice("y", vec![2], &[1_000_001i64, big + 1]).unwrap();
        assert_eq!(compare(&a, &b, 0.1, 10.0).unwrap().mismatched, 2);
        assert_eq!(compare(&a, &a, 0.0, 0.0).unwrap().mismatched, 0);
    }
}

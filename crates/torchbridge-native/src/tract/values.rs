//! Tensors across the tract boundary: one copy in (tract wants its own aligned
//! buffer), one copy out into the reply.

use torchbridge_core::{DataType, Tensor, TensorSpec};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor};

/// The torchbridge datatype of a tract element type, where there is one. tract has no
/// bfloat16, so BF16 models are refused at load (serve them through the onnx bridge).
pub(crate) fn datatype_of(datum: DatumType) -> Option<DataType> {
    Some(match datum {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        // tract's dimension type: what it makes of a count or a sum of sizes (an INT64
        // `(x > 0).sum(-1)`); plain integers once the model has run.
        DatumType::I64 | DatumType::TDim => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        _ => return None,
    })
}

fn datum_of(datatype: DataType) -> Option<DatumType> {
    Some(match datatype {
        DataType::Bool => DatumType::Bool,
        DataType::Uint8 => DatumType::U8,
        DataType::Uint16 => DatumType::U16,
        DataType::Uint32 => DatumType::U32,
        DataType::Uint64 => DatumType::U64,
        DataType::Int8 => DatumType::I8,
        DataType::Int16 => DatumType::I16,
        DataType::Int32 => DatumType::I32,
        DataType::Int64 => DatumType::I64,
        DataType::Fp16 => DatumType::F16,
        DataType::Fp32 => DatumType::F32,
        DataType::Fp64 => DatumType::F64,
        DataType::Bf16 | DataType::Bytes => return None,
    })
}

/// A tract tensor holding a copy of `t`.
pub(crate) fn to_tract(t: &Tensor) -> Result<TractTensor, String> {
    let datum = datum_of(t.datatype)
        .ok_or_else(|| format!("input `{}`: tract cannot take {}", t.name, t.datatype))?;
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let normalised;
    let bytes: &[u8] = if t.datatype == DataType::Bool {
        // Any non-zero byte is true on the wire; a Rust `bool` must be 0 or 1.
        normalised = t
            .data
            .iter()
            .map(|&b| u8::from(b != 0))
            .collect::<Vec<u8>>();
        &normalised
    } else {
        &t.data
    };
    // SAFETY: `datum` is a plain fixed-size type whose every bit pattern is valid (bool
    // bytes were normalised above), and the tensor was checked to hold exactly
    // `shape` elements of it; tract copies the bytes into its own aligned buffer.
    unsafe { TractTensor::from_raw_dt(datum, &shape, bytes) }.map_err(|e| format!("{e:#}"))
}

/// The reply tensor for `spec`, copied out of tract's output.
pub(crate) fn from_tract(spec: &TensorSpec, t: &TractTensor) -> Result<Tensor, String> {
    let t = match t.datum_type() {
        DatumType::TDim => std::borrow::Cow::Owned(
            t.cast_to::<i64>()
                .map_err(|e| {
                    format!(
                        "tract returned output `{}` as dimensions that are no numbers: {e:#}",
                        spec.name
                    )
                })?
                .into_owned(),
        ),
        _ => std::borrow::Cow::Borrowed(t),
    };
    let t = t.as_ref();
    let datatype = datatype_of(t.datum_type())
        .filter(|&d| d == spec.datatype)
        .ok_or_else(|| {
            format!(
                "tract returned output `{}` as {:?}, the model declares {}",
                spec.name,
                t.datum_type(),
                spec.datatype
            )
        })?;
    let shape = t.shape().iter().map(|&d| d as i64).collect();
    Tensor::new(
        spec.name.clone(),
        datatype,
        shape,
        bytes::Bytes::copy_from_slice(t.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_size_datatype_but_bf16_round_trips() {
        for d in DataType::ALL {
            match datum_of(d) {
                Some(datum) => assert_eq!(datatype_of(datum), Some(d)),
                None => assert!(matches!(d, DataType::Bf16 | DataType::Bytes)),
            }
        }
    }

    #[test]
    fn tensors_cross_both_ways() {
        let t = Tensor::from_slice("x", vec![2, 2], &[1i64, -2, 3, 4]).unwrap();
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Int64,
            dims: vec![2],
        };
        assert_eq!(from_tract(&spec, &to_tract(&t).unwrap()).unwrap(), t);
        let b = Tensor::new("b", DataType::Bool, vec![2], vec![0u8, 7]).unwrap();
        assert_eq!(to_tract(&b).unwrap().as_bytes(), &[0, 1]);
    }
}

//! The protocol's datatypes as tch kinds, and back.

use tch::Kind;
use torchbridge_core::DataType;

/// The tch kind that holds `datatype`, or why there is none.
///
/// tch 0.26 has no `Kind` for torch's unsigned 16/32/64-bit types (libtorch 2.13 has
/// them, with few kernels), so UINT16, UINT32 and UINT64 are refused like BYTES.
pub(crate) fn kind_of(datatype: DataType) -> Result<Kind, &'static str> {
    Ok(match datatype {
        DataType::Bool => Kind::Bool,
        DataType::Uint8 => Kind::Uint8,
        DataType::Int8 => Kind::Int8,
        DataType::Int16 => Kind::Int16,
        DataType::Int32 => Kind::Int,
        DataType::Int64 => Kind::Int64,
        DataType::Fp16 => Kind::Half,
        DataType::Fp32 => Kind::Float,
        DataType::Fp64 => Kind::Double,
        DataType::Bf16 => Kind::BFloat16,
        DataType::Uint16 | DataType::Uint32 | DataType::Uint64 => {
            return Err(
                "tch 0.26 has no unsigned 16, 32 or 64-bit tensor kind; declare a signed type",
            );
        }
        DataType::Bytes => return Err("the torchscript bridge does not take BYTES tensors"),
    })
}

/// The datatype a tch kind is reported as, if the protocol has one.
pub(crate) fn datatype_of(kind: Kind) -> Option<DataType> {
    Some(match kind {
        Kind::Bool => DataType::Bool,
        Kind::Uint8 => DataType::Uint8,
        Kind::Int8 => DataType::Int8,
        Kind::Int16 => DataType::Int16,
        Kind::Int => DataType::Int32,
        Kind::Int64 => DataType::Int64,
        Kind::Half => DataType::Fp16,
        Kind::Float => DataType::Fp32,
        Kind::Double => DataType::Fp64,
        Kind::BFloat16 => DataType::Bf16,
        _ => return None,
    })
}

/// The name a PyTorch user knows a kind by, e.g. `torch.float32`.
pub(crate) fn torch_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Uint8 => "torch.uint8",
        Kind::Int8 => "torch.int8",
        Kind::Int16 => "torch.int16",
        Kind::Int => "torch.int32",
        Kind::Int64 => "torch.int64",
        Kind::Half => "torch.float16",
        Kind::Float => "torch.float32",
        Kind::Double => "torch.float64",
        Kind::ComplexHalf => "torch.complex32",
        Kind::ComplexFloat => "torch.complex64",
        Kind::ComplexDouble => "torch.complex128",
        Kind::Bool => "torch.bool",
        Kind::QInt8 => "torch.qint8",
        Kind::QUInt8 => "torch.quint8",
        Kind::QInt32 => "torch.qint32",
        Kind::BFloat16 => "torch.bfloat16",
        Kind::Float8e5m2 => "torch.float8_e5m2",
        Kind::Float8e4m3fn => "torch.float8_e4m3fn",
        Kind::Float8e5m2fnuz => "torch.float8_e5m2fnuz",
        Kind::Float8e4m3fnuz => "torch.float8_e4m3fnuz",
    }
}

/// A kind as an error message shows it: `torch.float64 (FP64)`.
pub(crate) fn describe(kind: Kind) -> String {
    match datatype_of(kind) {
        Some(datatype) => format!("{} ({datatype})", torch_name(kind)),
        None => torch_name(kind).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_size_datatype_but_wide_unsigned_round_trips() {
        for datatype in DataType::ALL {
            match kind_of(datatype) {
                Ok(kind) => {
                    assert_eq!(datatype_of(kind), Some(datatype));
                    assert_eq!(Some(kind.elt_size_in_bytes()), datatype.size());
                }
                Err(why) => assert!(
                    matches!(
                        datatype,
                        DataType::Uint16 | DataType::Uint32 | DataType::Uint64 | DataType::Bytes
                    ),
                    "{datatype}: {why}"
                ),
            }
        }
        assert!(
            kind_of(DataType::Bytes)
                .unwrap_err()
                .contains("does not take BYTES")
        );
        assert_eq!(describe(Kind::Double), "torch.float64 (FP64)");
    }
}

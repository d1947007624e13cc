//! What an ONNX model takes and gives: read from its session, reconciled with the
//! `[[input]]`/`[[output]]` tables of config.toml where it declares them.

use ort::value::{Outlet, TensorElementType, ValueType};
use torchbridge_core::DataType;

/// One input or output as the model file declares it (shared with the tract bridge).
pub(crate) use torchbridge_core::FileTensor as OnnxTensor;
/// config.toml's tensors checked against the model's (shared with the tract bridge).
pub(crate) use torchbridge_core::reconcile;

/// The torchbridge datatype of an ONNX element type, where there is one.
pub(crate) fn datatype_of(element: TensorElementType) -> Option<DataType> {
    use TensorElementType as E;
    Some(match element {
        E::Float32 => DataType::Fp32,
        E::Float64 => DataType::Fp64,
        E::Float16 => DataType::Fp16,
        E::Bfloat16 => DataType::Bf16,
        E::Int8 => DataType::Int8,
        E::Int16 => DataType::Int16,
        E::Int32 => DataType::Int32,
        E::Int64 => DataType::Int64,
        E::Uint8 => DataType::Uint8,
        E::Uint16 => DataType::Uint16,
        E::Uint32 => DataType::Uint32,
        E::Uint64 => DataType::Uint64,
        E::Bool => DataType::Bool,
        E::String => DataType::Bytes,
        _ => return None,
    })
}

/// The session's inputs or outputs (`kind` says which, for messages).
pub(crate) fn read_outlets(outlets: &[Outlet], kind: &str) -> Result<Vec<OnnxTensor>, String> {
    outlets
        .iter()
        .map(|outlet| match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                let datatype = datatype_of(*ty).ok_or_else(|| {
                    format!(
                        "the model's {kind} `{}` holds {ty} elements, which have no KServe datatype",
                        outlet.name()
                    )
                })?;
                Ok(OnnxTensor {
                    name: outlet.name().to_string(),
                    datatype,
                    shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
                })
            }
            other => Err(format!(
                "the model's {kind} `{}` is a {other}, not a tensor; the onnx bridge serves tensors only",
                outlet.name()
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;

//! Tensors across the boundary: inputs become ONNX Runtime values that borrow the
//! request's buffer; outputs are copied once out of ONNX Runtime's memory.

use std::fmt::Debug;

use bytes::Bytes;
use half::{bf16, f16};
use ort::session::SessionInputValue;
use ort::value::{DynValue, PrimitiveTensorElementType, TensorRef};
use torchbridge_core::{DataType, Element, Tensor, TensorSpec};

/// An ONNX Runtime value over `tensor`'s bytes: borrowed where they are aligned for the
/// element type (the usual case), copied into an aligned buffer where they are not.
pub(crate) fn input_value(tensor: &Tensor) -> Result<SessionInputValue<'_>, String> {
    let value = match tensor.datatype {
        DataType::Fp32 => numbers::<f32>(tensor),
        DataType::Fp64 => numbers::<f64>(tensor),
        DataType::Fp16 => numbers::<f16>(tensor),
        DataType::Bf16 => numbers::<bf16>(tensor),
        DataType::Int8 => numbers::<i8>(tensor),
        DataType::Int16 => numbers::<i16>(tensor),
        DataType::Int32 => numbers::<i32>(tensor),
        DataType::Int64 => numbers::<i64>(tensor),
        DataType::Uint8 => numbers::<u8>(tensor),
        DataType::Uint16 => numbers::<u16>(tensor),
        DataType::Uint32 => numbers::<u32>(tensor),
        DataType::Uint64 => numbers::<u64>(tensor),
        DataType::Bool => bools(tensor),
        DataType::Bytes => strings(tensor),
    };
    value.map_err(|e| format!("cannot pass input `{}` to ONNX Runtime: {e}", tensor.name))
}

fn numbers<T>(tensor: &Tensor) -> ort::Result<SessionInputValue<'_>>
where
    T: Element + PrimitiveTensorElementType + Debug,
{
    let shape = tensor.shape.clone();
    let data = tensor.data.as_ptr().cast::<T>();
    if data.is_aligned() {
        // SAFETY: the pointer is aligned for `T`; the tensor holds exactly
        // `len / size_of::<T>()` elements (checked when it was built and again when the
        // batch was prepared); every bit pattern is a valid `T` (`Element`); the bytes
        // are immutable and outlive the returned view, which borrows `tensor`.
        let elements =
            unsafe { std::slice::from_raw_parts(data, tensor.data.len() / size_of::<T>()) };
        Ok(TensorRef::from_array_view((shape, elements))?.into())
    } else {
        let elements = tensor
            .to_vec::<T>()
            .map_err(|e| ort::Error::new(e.to_string()))?;
        Ok(ort::value::Tensor::from_array((shape, elements))?.into())
    }
}

/// `BOOL` is one byte per element; borrowed when every byte is 0 or 1 (the only valid
/// `bool`s), else normalised into a copy.
fn bools(tensor: &Tensor) -> ort::Result<SessionInputValue<'_>> {
    let shape = tensor.shape.clone();
    if tensor.data.iter().all(|&b| b <= 1) {
        // SAFETY: every byte is 0 or 1, a valid `bool`; `bool` has alignment 1; the view
        // borrows `tensor`.
        let elements = unsafe {
            std::slice::from_raw_parts(tensor.data.as_ptr().cast::<bool>(), tensor.data.len())
        };
        Ok(TensorRef::from_array_view((shape, elements))?.into())
    } else {
        let elements: Vec<bool> = tensor.data.iter().map(|&b| b != 0).collect();
        Ok(ort::value::Tensor::from_array((shape, elements))?.into())
    }
}

/// ONNX Runtime keeps strings as its own objects, so `BYTES` is always copied; the
/// elements must be UTF-8.
fn strings(tensor: &Tensor) -> ort::Result<SessionInputValue<'_>> {
    let elements = tensor
        .strings()
        .map_err(|e| ort::Error::new(e.to_string()))?;
    let elements = elements
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            String::from_utf8(s.to_vec()).map_err(|_| {
                ort::Error::new(format!(
                    "BYTES element {i} is not UTF-8, which ONNX strings must be"
                ))
            })
        })
        .collect::<ort::Result<Vec<String>>>()?;
    Ok(ort::value::Tensor::from_string_array((tensor.shape.clone(), &elements[..]))?.into())
}

/// The output `spec` names, copied out of `value` with the shape the model gave it.
pub(crate) fn output_tensor(spec: &TensorSpec, value: &DynValue) -> Result<Tensor, String> {
    let read = match spec.datatype {
        DataType::Fp32 => copy_numbers::<f32>(value),
        DataType::Fp64 => copy_numbers::<f64>(value),
        DataType::Fp16 => copy_numbers::<f16>(value),
        DataType::Bf16 => copy_numbers::<bf16>(value),
        DataType::Int8 => copy_numbers::<i8>(value),
        DataType::Int16 => copy_numbers::<i16>(value),
        DataType::Int32 => copy_numbers::<i32>(value),
        DataType::Int64 => copy_numbers::<i64>(value),
        DataType::Uint8 => copy_numbers::<u8>(value),
        DataType::Uint16 => copy_numbers::<u16>(value),
        DataType::Uint32 => copy_numbers::<u32>(value),
        DataType::Uint64 => copy_numbers::<u64>(value),
        // A `bool` is one byte, 0 or 1: the protocol's layout already.
        DataType::Bool => copy_numbers::<bool>(value),
        DataType::Bytes => copy_strings(value),
    };
    let (shape, data) = read.map_err(|e| {
        format!(
            "cannot read output `{}` as {}: {e}",
            spec.name, spec.datatype
        )
    })?;
    Tensor::new(spec.name.clone(), spec.datatype, shape, data).map_err(|e| e.to_string())
}

fn copy_numbers<T: PrimitiveTensorElementType>(value: &DynValue) -> ort::Result<(Vec<i64>, Bytes)> {
    let (shape, elements) = value.try_extract_tensor::<T>()?;
    // SAFETY: `elements` is a live slice of plain numbers (or `bool`s), viewed as its bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(elements.as_ptr().cast::<u8>(), size_of_val(elements))
    };
    Ok((shape.to_vec(), Bytes::copy_from_slice(bytes)))
}

fn copy_strings(value: &DynValue) -> ort::Result<(Vec<i64>, Bytes)> {
    let (shape, elements) = value.try_extract_strings()?;
    let shape = shape.to_vec();
    let tensor = Tensor::from_strings("", shape.clone(), &elements)
        .map_err(|e| ort::Error::new(e.to_string()))?;
    Ok((shape, tensor.data))
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    fn data_address(value: &SessionInputValue<'_>) -> usize {
        value.try_extract_tensor::<f32>().unwrap().1.as_ptr() as usize
    }

    #[test]
    fn aligned_inputs_are_borrowed_and_unaligned_ones_copied() {
        crate::runtime::runtime(None).unwrap();
        let aligned = Tensor::from_slice("x", vec![2, 2], &[1f32, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(
            data_address(&input_value(&aligned).unwrap()),
            aligned.data.as_ptr() as usize
        );

        let mut buffer = BytesMut::new();
        buffer.put_u8(0);
        buffer.put_slice(&aligned.data);
        let unaligned =
            Tensor::new("x", DataType::Fp32, vec![2, 2], buffer.freeze().slice(1..)).unwrap();
        assert!(!unaligned.data.as_ptr().cast::<f32>().is_aligned());
        let value = input_value(&unaligned).unwrap();
        assert_ne!(data_address(&value), unaligned.data.as_ptr() as usize);
        assert_eq!(
            value.try_extract_tensor::<f32>().unwrap().1,
            [1.0, 2.0, 3.0, 4.0]
        );
    }

    #[test]
    fn bytes_must_be_utf8_for_onnx_strings() {
        crate::runtime::runtime(None).unwrap();
        let text = Tensor::from_strings("text", vec![2], &[&b"ok"[..], &[0xff, 0xfe]]).unwrap();
        let e = input_value(&text).err().unwrap();
        assert!(
            e.contains("input `text`") && e.contains("BYTES element 1 is not UTF-8"),
            "{e}"
        );
    }
}

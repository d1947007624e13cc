//! Crossing between torchbridge tensors and libtorch tensors: one copy each way.

use bytes::Bytes;
use tch::{Device, IValue, Kind};
use torchbridge_core::{DataType, Error, Result, Tensor, TensorSpec};

use crate::errors::libtorch_message;
use crate::kinds::{describe, kind_of};

/// A libtorch tensor on `device` holding a copy of `tensor`'s bytes.
///
/// On the CPU, `from_data_size` is the one copy (it also makes the result aligned and
/// owned by libtorch, so the module may keep it). For CUDA the bytes are wrapped, not
/// copied, and the host-to-device transfer is the one copy. A failure of libtorch here
/// (out of device memory, say) is an inference error of `model`, not the request's.
pub(crate) fn to_torch(tensor: &Tensor, device: Device, model: &str) -> Result<tch::Tensor> {
    let invalid = |why: &str| Error::InvalidInput(format!("input `{}`: {why}", tensor.name));
    let kind = kind_of(tensor.datatype).map_err(invalid)?;
    // libtorch reads as many bytes as the shape calls for, so check the length here.
    tensor.check_bytes()?;
    if kind == Kind::Bool && tensor.data.iter().any(|&b| b > 1) {
        return Err(invalid("BOOL elements must be the bytes 0 or 1"));
    }
    let failed = |e: tch::TchError| Error::Inference {
        model: model.to_string(),
        message: format!("input `{}`: {}", tensor.name, libtorch_message(&e)),
    };
    match device {
        Device::Cpu => {
            tch::Tensor::f_from_data_size(&tensor.data, &tensor.shape, kind).map_err(failed)
        }
        _ => {
            // SAFETY: `data` holds exactly the shape's elements (checked above) and outlives
            // the borrowed view, which `f_to_device` copies from synchronously (the source
            // is pageable memory) before the view is dropped at the end of this arm.
            let view = unsafe {
                tch::Tensor::f_from_blob(
                    tensor.data.as_ptr(),
                    &tensor.shape,
                    &[],
                    kind,
                    Device::Cpu,
                )
            }
            .map_err(failed)?;
            view.f_to_device(device).map_err(failed)
        }
    }
}

/// The module's return value as the declared outputs, in declared order.
///
/// A single tensor, a tuple or list of tensors (taken in order), or a dict of str to
/// tensor (taken by output name).
pub(crate) fn outputs_of(value: IValue, specs: &[TensorSpec]) -> Result<Vec<Tensor>, String> {
    let tensors = match value {
        IValue::Tensor(t) => vec![t],
        IValue::TensorList(ts) => ts,
        IValue::Tuple(items) | IValue::GenericList(items) => {
            items.into_iter().map(tensor_of).collect::<Result<_, _>>()?
        }
        IValue::GenericDict(entries) => return outputs_by_name(entries, specs),
        other => {
            return Err(format!(
                "returned {}; expected a tensor, a tuple or list of tensors, or a dict of str to tensor",
                kind_of_value(&other)
            ));
        }
    };
    if tensors.len() != specs.len() {
        return Err(format!(
            "returned {} tensor(s), but the config declares {} output(s) ({})",
            tensors.len(),
            specs.len(),
            names(specs)
        ));
    }
    specs
        .iter()
        .zip(&tensors)
        .map(|(spec, t)| from_torch(spec, t))
        .collect()
}

fn outputs_by_name(
    entries: Vec<(IValue, IValue)>,
    specs: &[TensorSpec],
) -> Result<Vec<Tensor>, String> {
    let mut keyed = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match key {
            IValue::String(key) => keyed.push((key, value)),
            other => {
                return Err(format!(
                    "returned a dict keyed by {}, not str",
                    kind_of_value(&other)
                ));
            }
        }
    }
    specs
        .iter()
        .map(|spec| {
            let (_, value) = keyed
                .iter()
                .find(|(key, _)| *key == spec.name)
                .ok_or_else(|| {
                    let keys: Vec<_> = keyed.iter().map(|(k, _)| format!("`{k}`")).collect();
                    format!(
                        "returned a dict with no key `{}` (its keys: {})",
                        spec.name,
                        keys.join(", ")
                    )
                })?;
            match value {
                IValue::Tensor(t) => from_torch(spec, t),
                other => Err(format!(
                    "output `{}` is {}, not a tensor",
                    spec.name,
                    kind_of_value(other)
                )),
            }
        })
        .collect()
}

fn tensor_of(value: IValue) -> Result<tch::Tensor, String> {
    match value {
        IValue::Tensor(t) => Ok(t),
        other => Err(format!(
            "returned a sequence holding {}, not only tensors",
            kind_of_value(&other)
        )),
    }
}

/// One output, checked against its declared datatype and copied once into CPU memory.
fn from_torch(spec: &TensorSpec, tensor: &tch::Tensor) -> Result<Tensor, String> {
    let name = &spec.name;
    if !tensor.defined() {
        return Err(format!("output `{name}` is an undefined tensor"));
    }
    if tensor.is_sparse() || tensor.is_mkldnn() {
        return Err(format!(
            "output `{name}` is not a dense (strided) tensor; return `.to_dense()`"
        ));
    }
    let kind = tensor.f_kind().map_err(|_| {
        format!(
            "output `{name}` has a dtype tch 0.26 does not know; return {}",
            spec.datatype
        )
    })?;
    let expected = kind_of(spec.datatype).map_err(|why| format!("output `{name}`: {why}"))?;
    if kind != expected {
        return Err(format!(
            "output `{name}` is declared {} but the model returned {}",
            spec.datatype,
            describe(kind)
        ));
    }
    let failed = |e: tch::TchError| format!("output `{name}`: {}", libtorch_message(&e));
    // Both are no-ops (a shallow alias) for a contiguous CPU tensor.
    let tensor = tensor.f_to_device(Device::Cpu).map_err(failed)?;
    let tensor = tensor.f_contiguous().map_err(failed)?;
    let shape = tensor.size();
    let byte_count = tensor.numel() * kind.elt_size_in_bytes();
    let data = if byte_count == 0 {
        Bytes::new()
    } else {
        // SAFETY: a defined, dense, contiguous CPU tensor of `kind` holds `numel` elements
        // of `elt_size_in_bytes` from `data_ptr` on; `tensor` lives to the end of the copy.
        let bytes =
            unsafe { std::slice::from_raw_parts(tensor.data_ptr().cast::<u8>(), byte_count) };
        Bytes::copy_from_slice(bytes)
    };
    Tensor::new(name.clone(), spec.datatype, shape, data).map_err(|e| e.to_string())
}

fn kind_of_value(value: &IValue) -> &'static str {
    match value {
        IValue::None => "None",
        IValue::Tensor(_) => "a tensor",
        IValue::Double(_) => "a float",
        IValue::Int(_) => "an int",
        IValue::Bool(_) => "a bool",
        IValue::Tuple(_) => "a tuple",
        IValue::IntList(_)
        | IValue::DoubleList(_)
        | IValue::BoolList(_)
        | IValue::StringList(_) => "a list of scalars",
        IValue::String(_) => "a str",
        IValue::TensorList(_) | IValue::GenericList(_) => "a list",
        IValue::GenericDict(_) => "a dict",
        IValue::Object(_) => "an object",
        IValue::Device(_) => "a device",
        _ => "a value of another type",
    }
}

fn names(specs: &[TensorSpec]) -> String {
    let names: Vec<_> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
    names.join(", ")
}

/// Whether the declared datatype can cross this bridge at all, for load-time checks.
pub(crate) fn check_declared(spec: &TensorSpec, key: &str) -> Result<(), String> {
    match spec.datatype {
        DataType::Bytes => Err(format!(
            "`[[{key}]]` `{}` is BYTES: the torchscript bridge does not take BYTES inputs or outputs",
            spec.name
        )),
        other => kind_of(other)
            .map(drop)
            .map_err(|why| format!("`[[{key}]]` `{}` is {other}: {why}", spec.name)),
    }
}

//! Reconciling what a model file declares (ONNX inputs and outputs) with the
//! `[[input]]`/`[[output]]` tables of config.toml — shared by the bridges that read
//! `model.onnx` (onnx, tract), so both accept and refuse the same configs.

use crate::{DataType, ModelMetadata, TensorSpec};

/// One input or output as the model file declares it: the full shape, batch dimension
/// included, with -1 for symbolic or unknown sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

/// The metadata clients see: config.toml's inputs and outputs where it declares them,
/// checked against the model's, else the model's own.
///
/// Every model input must be declared (ONNX Runtime needs them all); the outputs
/// declared may be a subset, and only those are returned.
pub fn reconcile(
    mut metadata: ModelMetadata,
    inputs: &[FileTensor],
    outputs: &[FileTensor],
) -> Result<ModelMetadata, String> {
    let batch = metadata.max_batch_size;
    for (kind, declared, actual) in [
        ("input", &mut metadata.inputs, inputs),
        ("output", &mut metadata.outputs, outputs),
    ] {
        if declared.is_empty() {
            *declared = actual
                .iter()
                .map(|t| derive(kind, t, batch))
                .collect::<Result<_, _>>()?;
            continue;
        }
        for spec in declared.iter_mut() {
            let model = actual.iter().find(|t| t.name == spec.name).ok_or_else(|| {
                format!(
                    "config.toml declares {kind} `{}`, which the model does not have; its {kind}s are {}",
                    spec.name,
                    describe(actual)
                )
            })?;
            check_declared(kind, spec, model, batch)?;
        }
        if kind == "input"
            && let Some(missing) = actual
                .iter()
                .find(|t| !declared.iter().any(|s| s.name == t.name))
        {
            return Err(format!(
                "the model's input `{}` ({}) is missing from config.toml's `[[input]]`; declare it or leave `[[input]]` out",
                missing.name,
                describe_one(missing)
            ));
        }
    }
    Ok(metadata)
}

/// The client-facing spec of a model tensor: its batch dimension dropped when the model
/// batches.
fn derive(kind: &str, tensor: &FileTensor, max_batch_size: u32) -> Result<TensorSpec, String> {
    let dims = if max_batch_size > 0 {
        check_batch_dim(kind, tensor, max_batch_size)?;
        tensor.shape[1..].to_vec()
    } else {
        tensor.shape.clone()
    };
    Ok(TensorSpec {
        name: tensor.name.clone(),
        datatype: tensor.datatype,
        dims,
    })
}

/// A batching model needs a first dimension of any size (or exactly 1 when it batches 1).
fn check_batch_dim(kind: &str, tensor: &FileTensor, max_batch_size: u32) -> Result<(), String> {
    match tensor.shape.first() {
        Some(-1) => Ok(()),
        Some(1) if max_batch_size == 1 => Ok(()),
        first => Err(format!(
            "`max_batch_size = {max_batch_size}` makes dim 0 the batch, but the model's {kind} `{}` has shape {:?}{}; \
             export it with a dynamic first axis (`dynamic_axes={{\"{0}\": {{0: \"batch\"}}}}`) or set `max_batch_size = 0`",
            tensor.name,
            tensor.shape,
            if first.is_none() { " (a scalar)" } else { "" },
        )),
    }
}

/// Checks a declared tensor against the model's, and narrows the declared `-1`s to the
/// model's fixed sizes: a request of another size would only fail inside the engine, as
/// a server error rather than the client's.
fn check_declared(
    kind: &str,
    spec: &mut TensorSpec,
    model: &FileTensor,
    max_batch_size: u32,
) -> Result<(), String> {
    if spec.datatype != model.datatype {
        return Err(format!(
            "config.toml declares {kind} `{}` as {}, but the model's is {}",
            spec.name, spec.datatype, model.datatype
        ));
    }
    let model_dims = if max_batch_size > 0 {
        check_batch_dim(kind, model, max_batch_size)?;
        &model.shape[1..]
    } else {
        &model.shape[..]
    };
    let agree = spec.dims.len() == model_dims.len()
        && spec
            .dims
            .iter()
            .zip(model_dims)
            .all(|(&a, &b)| a == -1 || b == -1 || a == b);
    if !agree {
        let batch_note = if max_batch_size > 0 {
            " without its batch dimension"
        } else {
            ""
        };
        return Err(format!(
            "config.toml declares {kind} `{}` with dims {:?}, but the model's shape{batch_note} is {model_dims:?}",
            spec.name, spec.dims
        ));
    }
    for (declared, &fixed) in spec.dims.iter_mut().zip(model_dims) {
        if *declared == -1 {
            *declared = fixed;
        }
    }
    Ok(())
}

fn describe_one(t: &FileTensor) -> String {
    format!("{} {:?}", t.datatype, t.shape)
}

fn describe(tensors: &[FileTensor]) -> String {
    let all: Vec<String> = tensors
        .iter()
        .map(|t| format!("`{}` ({})", t.name, describe_one(t)))
        .collect();
    all.join(", ")
}

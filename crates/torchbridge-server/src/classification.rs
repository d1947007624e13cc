//! Triton's classification extension: an output requested with `classification = k`
//! comes back as the `k` highest of its values, per row, each written `value:index` or
//! `value:index:label` in a BYTES tensor of shape `[rows, k]` (`[k]` for a model without a
//! batch dimension). Both transports parse the request parameter their own way and share
//! this: the check before the model runs and the ranking after.

use std::cmp::Ordering;
use std::fmt::Write;

use torchbridge_core::{DataType, Element, Error, ModelMetadata, Result, Tensor};

/// The request parameter's name, in HTTP and gRPC alike.
pub const PARAMETER: &str = "classification";

/// Checks, before the model runs, that `output` of `model` can be ranked (its datatype is
/// a number) and that `count` asks for at least one class.
pub fn check(model: &ModelMetadata, output: &str, count: i128) -> Result<usize> {
    let invalid = |why: String| {
        Error::InvalidInput(format!(
            "output `{output}`: {PARAMETER} {why} (model `{}`)",
            model.name
        ))
    };
    if count < 1 {
        return Err(invalid(format!(
            "asks for {count} classes; ask for at least 1"
        )));
    }
    let spec = model.outputs.iter().find(|s| s.name == output);
    if let Some(spec) = spec
        && matches!(spec.datatype, DataType::Bool | DataType::Bytes)
    {
        return Err(invalid(format!(
            "needs numbers to rank, and the output is {}",
            spec.datatype
        )));
    }
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// The `count` highest values of each row of `tensor` (each row is everything past dim 0
/// when the model is `batched`, else the whole tensor), highest first, ties in index
/// order; an index with a non-empty entry in `labels` gets it appended.
pub fn classify(
    tensor: &Tensor,
    count: usize,
    batched: bool,
    labels: Option<&[String]>,
) -> Result<Tensor> {
    let texts = match tensor.datatype {
        DataType::Uint8 => texts::<u8>(tensor, batched, count, labels),
        DataType::Uint16 => texts::<u16>(tensor, batched, count, labels),
        DataType::Uint32 => texts::<u32>(tensor, batched, count, labels),
        DataType::Uint64 => texts::<u64>(tensor, batched, count, labels),
        DataType::Int8 => texts::<i8>(tensor, batched, count, labels),
        DataType::Int16 => texts::<i16>(tensor, batched, count, labels),
        DataType::Int32 => texts::<i32>(tensor, batched, count, labels),
        DataType::Int64 => texts::<i64>(tensor, batched, count, labels),
        DataType::Fp16 => texts::<half::f16>(tensor, batched, count, labels),
        DataType::Bf16 => texts::<half::bf16>(tensor, batched, count, labels),
        DataType::Fp32 => texts::<f32>(tensor, batched, count, labels),
        DataType::Fp64 => texts::<f64>(tensor, batched, count, labels),
        DataType::Bool | DataType::Bytes => Err(Error::InvalidInput(format!(
            "output `{}`: {PARAMETER} needs numbers to rank, and the output is {}",
            tensor.name, tensor.datatype
        ))),
    }?;
    Tensor::from_strings(tensor.name.clone(), texts.shape, &texts.values)
}

struct Texts {
    shape: Vec<i64>,
    values: Vec<String>,
}

fn texts<T: Score>(
    tensor: &Tensor,
    batched: bool,
    count: usize,
    labels: Option<&[String]>,
) -> Result<Texts> {
    let values = tensor.to_vec::<T>()?;
    let rows = match (batched, tensor.shape.first()) {
        (false, _) => 1,
        (true, Some(&rows)) => usize::try_from(rows).unwrap_or(0),
        (true, None) => {
            return Err(Error::InvalidInput(format!(
                "output `{}`: {PARAMETER} needs a batch dimension, and the output is a scalar",
                tensor.name
            )));
        }
    };
    let per_row = values.len().checked_div(rows).unwrap_or(0);
    let kept = count.min(per_row);
    let mut texts = Vec::with_capacity(rows * kept);
    let mut order: Vec<usize> = Vec::with_capacity(per_row);
    for row in values.chunks(per_row.max(1)).take(rows) {
        order.clear();
        order.extend(0..row.len());
        order.sort_by(|&a, &b| descending(&row[a], &row[b]));
        for &index in &order[..kept] {
            let mut text = String::new();
            row[index].write(&mut text);
            write!(text, ":{index}").expect("writing to a String cannot fail");
            if let Some(label) = labels.and_then(|l| l.get(index)).filter(|l| !l.is_empty()) {
                text.push(':');
                text.push_str(label);
            }
            texts.push(text);
        }
    }
    let shape = match batched {
        true => vec![rows as i64, kept as i64],
        false => vec![kept as i64],
    };
    Ok(Texts {
        shape,
        values: texts,
    })
}

/// Highest first; NaN after every number. `sort_by` is stable, so ties keep index order.
fn descending<T: PartialOrd>(a: &T, b: &T) -> Ordering {
    let nan = |x: &T| x.partial_cmp(x).is_none();
    match (nan(a), nan(b)) {
        (false, false) => b.partial_cmp(a).unwrap_or(Ordering::Equal),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

/// A value as the classification text shows it: integers as they are, floating point
/// with six decimals (what Triton writes, so answers compare equal).
trait Score: Element + PartialOrd {
    fn write(self, out: &mut String);
}

macro_rules! integer_score {
    ($($t:ty),*) => {$(
        impl Score for $t {
            fn write(self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(self));
            }
        }
    )*};
}
integer_score!(u8, u16, u32, u64, i8, i16, i32, i64);

macro_rules! float_score {
    ($($t:ty),*) => {$(
        impl Score for $t {
            fn write(self, out: &mut String) {
                write!(out, "{:.6}", f64::from(self)).expect("writing to a String cannot fail");
            }
        }
    )*};
}
float_score!(half::f16, half::bf16, f32, f64);

#[cfg(test)]
mod tests;

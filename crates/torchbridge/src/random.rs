//! Inputs made up from a model's metadata, for `infer --random`, `check` and `bench`.

use crate::{DataType, Error, ModelMetadata, Result, Tensor};

/// The most elements one made-up tensor may hold (512 MB of FP32): a batch size or
/// variable dim past it is a mistake that would take the machine's memory.
const MAX_ELEMENTS: usize = 1 << 27;

/// A small deterministic generator (SplitMix64): the same seed gives the same inputs
/// on every machine, so a disagreement between bridges can be reproduced.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One tensor per input with `rows` rows (ignored for models without a batch
/// dimension); variable dims (-1) become `variable_dim`.
pub fn inputs(
    meta: &ModelMetadata,
    rows: usize,
    variable_dim: i64,
    rng: &mut Rng,
) -> Result<Vec<Tensor>> {
    meta.inputs
        .iter()
        .map(|spec| {
            let mut shape: Vec<i64> = spec
                .dims
                .iter()
                .map(|&d| if d < 0 { variable_dim } else { d })
                .collect();
            if meta.max_batch_size > 0 {
                shape.insert(0, rows as i64);
            }
            tensor(&spec.name, spec.datatype, shape, rng)
        })
        .collect()
}

/// Floats in [-1, 1), integers in [0, 10) (valid as token ids or class indices),
/// booleans, and short ASCII strings.
pub fn tensor(name: &str, datatype: DataType, shape: Vec<i64>, rng: &mut Rng) -> Result<Tensor> {
    let n = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(0) as usize))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "a made-up input `{name}` of shape {shape:?} would hold more than \
                 {MAX_ELEMENTS} elements: ask for fewer rows (or a smaller size for variable \
                 dims)"
            ))
        })?;
    let float = |rng: &mut Rng| rng.unit() * 2.0 - 1.0;
    let int = |rng: &mut Rng| (rng.next_u64() % 10) as i64;
    macro_rules! fill {
        ($f:expr) => {{
            let values: Vec<_> = (0..n).map(|_| $f).collect();
            Tensor::from_slice(name, shape, &values)
        }};
    }
    match datatype {
        DataType::Bool => Tensor::from_bools(
            name,
            shape,
            &(0..n).map(|_| rng.next_u64() & 1 == 1).collect::<Vec<_>>(),
        ),
        DataType::Uint8 => fill!(int(rng) as u8),
        DataType::Uint16 => fill!(int(rng) as u16),
        DataType::Uint32 => fill!(int(rng) as u32),
        DataType::Uint64 => fill!(int(rng) as u64),
        DataType::Int8 => fill!(int(rng) as i8),
        DataType::Int16 => fill!(int(rng) as i16),
        DataType::Int32 => fill!(int(rng) as i32),
        DataType::Int64 => fill!(int(rng)),
        DataType::Fp16 => fill!(half::f16::from_f64(float(rng))),
        DataType::Fp32 => fill!(float(rng) as f32),
        DataType::Fp64 => fill!(float(rng)),
        DataType::Bf16 => fill!(half::bf16::from_f64(float(rng))),
        DataType::Bytes => {
            let words: Vec<String> = (0..n)
                .map(|_| format!("text {}", rng.next_u64() % 1000))
                .collect();
            Tensor::from_strings(name, shape, &words)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_tensor_past_the_bound_is_refused_before_any_allocation() {
        let mut rng = Rng::new(0);
        let e = tensor("X", DataType::Fp32, vec![4_294_967_295, 4], &mut rng).unwrap_err();
        assert!(e.to_string().contains("made-up input `X`"), "{e}");
        let e = tensor("X", DataType::Fp32, vec![i64::MAX, i64::MAX], &mut rng).unwrap_err();
        assert!(
            e.to_string().contains("more than 134217728 elements"),
            "{e}"
        );
        assert_eq!(
            tensor("X", DataType::Fp32, vec![2, 3], &mut rng)
                .unwrap()
                .element_count(),
            6
        );
    }
}

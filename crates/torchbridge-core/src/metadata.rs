use crate::tensor::element_count;
use crate::{Batch, DataType, Error, Result, Tensor, TensorConfig};

/// One input or output as a model declares it. `dims` excludes the batch dimension
/// when the model batches; -1 is any size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub dims: Vec<i64>,
}

impl From<&TensorConfig> for TensorSpec {
    fn from(c: &TensorConfig) -> Self {
        TensorSpec {
            name: c.name.clone(),
            datatype: c.datatype,
            dims: c.dims.clone(),
        }
    }
}

/// What a loaded model takes and gives, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMetadata {
    pub name: String,
    pub version: u64,
    /// The bridge serving it, e.g. `"onnx"`.
    pub platform: String,
    /// 0: no batch dimension.
    pub max_batch_size: u32,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ModelMetadata {
    /// The full shape of a tensor as the protocol reports it: `-1` in front for the batch.
    pub fn full_shape(&self, spec: &TensorSpec) -> Vec<i64> {
        let batch = (self.max_batch_size > 0).then_some(-1);
        batch.into_iter().chain(spec.dims.iter().copied()).collect()
    }

    /// Checks a request's tensors against the inputs and puts them in declared order.
    pub fn prepare(&self, mut tensors: Vec<Tensor>) -> Result<Batch> {
        for (i, t) in tensors.iter().enumerate() {
            if tensors[..i].iter().any(|o| o.name == t.name) {
                return Err(self.invalid(format!("input `{}` is given twice", t.name)));
            }
            if !self.inputs.iter().any(|s| s.name == t.name) {
                return Err(self.invalid(format!(
                    "unknown input `{}`; the model's inputs are {}",
                    t.name,
                    names(&self.inputs)
                )));
            }
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        let mut rows = None;
        for spec in &self.inputs {
            let at = tensors
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| {
                    self.invalid(format!(
                        "input `{}` is missing; the model needs {}",
                        spec.name,
                        names(&self.inputs)
                    ))
                })?;
            let mut tensor = tensors.swap_remove(at);
            let r = self.check_input(spec, &tensor)?;
            tensor.normalize_bools();
            if let (Some(a), Some(b)) = (rows, r)
                && a != b
            {
                return Err(self.invalid(format!(
                    "inputs disagree on the batch size: {a} rows before `{}`, which has {b}",
                    spec.name
                )));
            }
            rows = rows.or(r);
            ordered.push(tensor);
        }
        Ok(Batch {
            inputs: ordered,
            rows: rows.unwrap_or(1),
        })
    }

    /// Checks one tensor; returns its batch size when the model batches.
    fn check_input(&self, spec: &TensorSpec, t: &Tensor) -> Result<Option<usize>> {
        if t.datatype != spec.datatype {
            return Err(self.invalid(format!(
                "input `{}` must be {}, got {}",
                spec.name, spec.datatype, t.datatype
            )));
        }
        let expected = self.full_shape(spec);
        let fits = t.shape.len() == expected.len()
            && t.shape
                .iter()
                .zip(&expected)
                .all(|(&d, &e)| d >= 0 && (e == -1 || d == e));
        if !fits || element_count(&t.shape).is_none() {
            return Err(self.invalid(format!(
                "input `{}` must have shape {expected:?}, got {:?}",
                spec.name, t.shape
            )));
        }
        t.check_bytes().map_err(|e| self.invalid(e.to_string()))?;
        if self.max_batch_size == 0 {
            return Ok(None);
        }
        let rows = t.shape[0] as usize;
        if rows == 0 || rows > self.max_batch_size as usize {
            return Err(self.invalid(format!(
                "input `{}` has {rows} rows; the batch size must be 1..={}",
                spec.name, self.max_batch_size
            )));
        }
        Ok(Some(rows))
    }

    /// Checks what a bridge returned against the declared outputs, in order.
    pub fn check_outputs(&self, outputs: &[Tensor], rows: usize) -> Result<()> {
        let fail = |message: String| Error::Inference {
            model: self.name.clone(),
            message,
        };
        if outputs.len() != self.outputs.len() {
            return Err(fail(format!(
                "returned {} outputs, the model declares {} ({})",
                outputs.len(),
                self.outputs.len(),
                names(&self.outputs)
            )));
        }
        for (spec, t) in self.outputs.iter().zip(outputs) {
            if t.name != spec.name || t.datatype != spec.datatype {
                return Err(fail(format!(
                    "output `{}` should be {}, got `{}` as {}",
                    spec.name, spec.datatype, t.name, t.datatype
                )));
            }
            let mut expected = self.full_shape(spec);
            if self.max_batch_size > 0 {
                expected[0] = rows as i64;
            }
            let fits = t.shape.len() == expected.len()
                && t.shape
                    .iter()
                    .zip(&expected)
                    .all(|(&d, &e)| e == -1 || d == e);
            if !fits {
                return Err(fail(format!(
                    "output `{}` should have shape {expected:?}, got {:?}",
                    spec.name, t.shape
                )));
            }
            t.check_bytes().map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    fn invalid(&self, message: String) -> Error {
        Error::InvalidInput(format!("model `{}`: {message}", self.name))
    }
}

fn names(specs: &[TensorSpec]) -> String {
    let names: Vec<_> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ModelMetadata {
        let spec = |name: &str, datatype, dims: Vec<i64>| TensorSpec {
            name: name.into(),
            datatype,
            dims,
        };
        ModelMetadata {
            name: "m".into(),
            version: 1,
            platform: "onnx".into(),
            max_batch_size: 4,
            inputs: vec![
                spec("A", DataType::Fp32, vec![2]),
                spec("B", DataType::Int64, vec![-1]),
            ],
            outputs: vec![spec("Y", DataType::Fp32, vec![2])],
        }
    }

    fn a(rows: i64) -> Tensor {
        Tensor::from_slice("A", vec![rows, 2], &vec![0f32; rows as usize * 2]).unwrap()
    }

    fn b(rows: i64, len: i64) -> Tensor {
        Tensor::from_slice("B", vec![rows, len], &vec![0i64; (rows * len) as usize]).unwrap()
    }

    fn error(tensors: Vec<Tensor>) -> String {
        meta().prepare(tensors).unwrap_err().to_string()
    }

    #[test]
    fn reorders_to_declared_order_and_counts_rows() {
        let batch = meta().prepare(vec![b(3, 5), a(3)]).unwrap();
        assert_eq!(batch.rows, 3);
        assert_eq!(batch.inputs[0].name, "A");
        assert_eq!(batch.inputs[1].shape, vec![3, 5]);
    }

    #[test]
    fn rejects_what_does_not_match() {
        assert!(error(vec![a(1)]).contains("input `B` is missing"));
        assert!(error(vec![a(1), b(1, 1), a(1)]).contains("given twice"));
        let mut c = a(1);
        c.name = "C".into();
        assert!(
            error(vec![c, b(1, 1)]).contains("unknown input `C`; the model's inputs are `A`, `B`")
        );
        assert!(error(vec![a(2), b(3, 1)]).contains("disagree on the batch size"));
        assert!(error(vec![a(5), b(5, 1)]).contains("5 rows; the batch size must be 1..=4"));
        let wrong = Tensor::from_slice("A", vec![1, 3], &[0f32; 3]).unwrap();
        assert!(error(vec![wrong, b(1, 1)]).contains("must have shape [-1, 2], got [1, 3]"));
        let wrong = Tensor::from_slice("A", vec![1, 2], &[0f64; 2]).unwrap();
        assert!(error(vec![wrong, b(1, 1)]).contains("must be FP32, got FP64"));
    }

    #[test]
    fn outputs_are_checked() {
        let m = meta();
        let y = Tensor::from_slice("Y", vec![3, 2], &[0f32; 6]).unwrap();
        m.check_outputs(std::slice::from_ref(&y), 3).unwrap();
        let e = m.check_outputs(&[y], 2).unwrap_err().to_string();
        assert!(e.contains("should have shape [2, 2], got [3, 2]"), "{e}");
        let z = Tensor::from_slice("Z", vec![3, 2], &[0f32; 6]).unwrap();
        assert!(
            m.check_outputs(&[z], 3)
                .unwrap_err()
                .to_string()
                .contains("got `Z`")
        );
    }
}

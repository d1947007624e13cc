//! The class names of a model's outputs, read once when the model directory is opened
//! (`labels = "…"` on an `[[output]]`), for answers that name classes instead of indices.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::{Error, Result, TensorConfig};

/// Output name → its class names, line `i` of the file naming class `i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputLabels(BTreeMap<String, Arc<[String]>>);

impl OutputLabels {
    /// Reads the labels file of every output that names one, relative to `model_root`.
    pub fn read(model_root: &Path, outputs: &[TensorConfig]) -> Result<Self> {
        let mut labels = BTreeMap::new();
        for output in outputs {
            let Some(file) = &output.labels else {
                continue;
            };
            let path = model_root.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::config(
                    &path,
                    format!("cannot read the labels of output `{}`: {e}", output.name),
                )
            })?;
            let names: Arc<[String]> = text.lines().map(str::to_string).collect();
            labels.insert(output.name.clone(), names);
        }
        Ok(OutputLabels(labels))
    }

    /// The class names of `output`, when its config names a labels file.
    pub fn get(&self, output: &str) -> Option<&[String]> {
        self.0.get(output).map(|names| &names[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    fn output(name: &str, labels: Option<&str>) -> TensorConfig {
        TensorConfig {
            name: name.into(),
            datatype: DataType::Fp32,
            dims: vec![3],
            labels: labels.map(Into::into),
        }
    }

    #[test]
    fn each_line_names_the_class_of_its_index() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("classes.txt"), "cat\r\ndog\n\nbird\n").unwrap();
        let outputs = [output("probs", Some("classes.txt")), output("raw", None)];
        let labels = OutputLabels::read(dir.path(), &outputs).unwrap();
        assert_eq!(labels.get("probs").unwrap(), ["cat", "dog", "", "bird"]);
        assert_eq!(labels.get("raw"), None);
    }

    #[test]
    fn a_missing_file_names_the_file_and_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let e = OutputLabels::read(dir.path(), &[output("probs", Some("nope.txt"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.txt") && e.contains("`probs`"), "{e}");
    }
}

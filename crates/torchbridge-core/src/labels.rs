//! The class names of a model's outputs, read once when the model directory is opened
//! (`labels = "…"` on an `[[output]]`), for answers that name classes instead of indices.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};
use std::sync::Arc;

use crate::{Error, Result, TensorConfig};

/// Output name → its class names, line `i` of the file naming class `i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputLabels(BTreeMap<String, Arc<[String]>>);

impl OutputLabels {
    /// Reads the labels file of every output that names one, relative to `model_root`.
    /// The file must lie inside the model directory (a config may come from a client's
    /// load request) and be a regular file of at most [`MAX_LABELS_BYTES`].
    pub fn read(model_root: &Path, outputs: &[TensorConfig]) -> Result<Self> {
        let mut labels = BTreeMap::new();
        for output in outputs {
            let Some(file) = &output.labels else {
                continue;
            };
            let path = model_root.join(file);
            let refuse = |at: &Path, why: String| {
                Error::config(at, format!("labels of output `{}`: {why}", output.name))
            };
            if !Path::new(file)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            {
                // Named by the model directory: the path would be outside it.
                return Err(refuse(
                    model_root,
                    format!(
                        "{file:?} must be a path inside the model directory (no `..`, not \
                         absolute)"
                    ),
                ));
            }
            let text = read_bounded(&path)
                .map_err(|e| refuse(&path, format!("cannot read the labels file: {e}")))?;
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

/// The largest labels file read: a million classes of 16 bytes each.
pub const MAX_LABELS_BYTES: u64 = 16 << 20;

/// A regular file's text, refused past [`MAX_LABELS_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_LABELS_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_LABELS_BYTES {
        return Err(std::io::Error::other(format!(
            "over {MAX_LABELS_BYTES} bytes"
        )));
    }
    Ok(text)
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

    #[test]
    fn a_labels_file_outside_the_model_directory_or_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for (file, why) in [
            ("/etc/passwd", "must be a path inside the model directory"),
            ("../secret.txt", "must be a path inside the model directory"),
            ("sub/../../x", "must be a path inside the model directory"),
            ("sub", "not a regular file"),
        ] {
            let e = OutputLabels::read(dir.path(), &[output("probs", Some(file))])
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains("`probs`"), "{file}: {e}");
        }
        let big = std::fs::File::create(dir.path().join("big.txt")).unwrap();
        big.set_len(MAX_LABELS_BYTES + 1).unwrap();
        let e = OutputLabels::read(dir.path(), &[output("probs", Some("big.txt"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("over 16777216 bytes"), "{e}");
    }
}

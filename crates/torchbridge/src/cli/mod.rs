//! One module per verb, plus what they share: reading `--input NAME=FILE.npy`.

#[cfg(feature = "server")]
pub mod bench;
pub mod check;
pub mod infer;
pub mod logger;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "server")]
mod stop;
#[cfg(feature = "server")]
mod trace_args;

use std::path::PathBuf;

use anyhow::{Context, bail};
use torchbridge::{ModelMetadata, Tensor};

/// `NAME=FILE.npy`, as given on the command line.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub name: String,
    pub path: PathBuf,
}

impl std::str::FromStr for InputFile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not NAME=FILE.npy"))?;
        Ok(InputFile {
            name: name.to_string(),
            path: path.into(),
        })
    }
}

/// Reads every `--input`, each as the datatype the model declares for it.
pub fn read_inputs(files: &[InputFile], meta: &ModelMetadata) -> anyhow::Result<Vec<Tensor>> {
    files
        .iter()
        .map(|f| {
            let Some(spec) = meta.inputs.iter().find(|s| s.name == f.name) else {
                let names: Vec<_> = meta.inputs.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "--input {}: the model has no input `{}` (inputs: {})",
                    f.name,
                    f.name,
                    names.join(", ")
                );
            };
            torchbridge::npy::read(&f.path, &f.name, Some(spec.datatype))
                .with_context(|| format!("--input {}", f.name))
        })
        .collect()
}

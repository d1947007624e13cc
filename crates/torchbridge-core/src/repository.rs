use std::path::{Path, PathBuf};

use crate::{BackendKind, ConfigOverride, Error, ModelConfig, OutputLabels, Result};

/// One model directory of a repository: `config.toml` plus version directories `1/`, `2/`, …
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub name: String,
    pub root: PathBuf,
    pub config: ModelConfig,
    pub version: u64,
    pub version_dir: PathBuf,
    /// The class names of the outputs whose config names a labels file.
    pub labels: OutputLabels,
    /// The config given with the load request, which `config` is made with (an
    /// isolated worker applies it again to the same files).
    pub config_override: Option<ConfigOverride>,
}

/// A model file in a version directory, as a bridge loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelForm {
    /// `model.py` with `class Model` (python bridge).
    PythonHandler(PathBuf),
    /// `model.pt`: TorchScript, or a pickled module where the config trusts pickles.
    TorchScript(PathBuf),
    /// `model.pt2` written by `torch.export.save` (python bridge).
    Exported(PathBuf),
    /// `model.onnx` (onnx and tract bridges).
    Onnx(PathBuf),
    /// A directory of published files (`config.json`, weights, `tokenizer.json`).
    Directory(PathBuf),
}

impl ModelForm {
    pub fn path(&self) -> &Path {
        match self {
            ModelForm::PythonHandler(p)
            | ModelForm::TorchScript(p)
            | ModelForm::Exported(p)
            | ModelForm::Onnx(p)
            | ModelForm::Directory(p) => p,
        }
    }
}

impl ModelDir {
    /// Opens the model at `root`, at `version` or else its highest version.
    pub fn open(root: &Path, version: Option<u64>) -> Result<Self> {
        Self::open_with(root, version, None)
    }

    /// As [`ModelDir::open`], with the config `config_override` makes of `config.toml`.
    pub fn open_with(
        root: &Path,
        version: Option<u64>,
        config_override: Option<&ConfigOverride>,
    ) -> Result<Self> {
        // Absolute (symlinks kept): a python model's code may change the working
        // directory, which must not move the model directories of later loads.
        let absolute = std::path::absolute(root);
        let root = absolute.as_deref().unwrap_or(root);
        let config_path = root.join("config.toml");
        if !root.is_dir() {
            return Err(Error::config(root, "no such model directory"));
        }
        // The directory's own name, as the repository lists it (a symlink's, not its
        // target's); a path without one (`.`) names the directory it resolves to.
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .or_else(|| {
                let resolved = root.canonicalize().ok()?;
                Some(resolved.file_name()?.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "model".to_string());
        let mut config = ModelConfig::from_file(&config_path)?;
        if let Some(o) = config_override {
            config = o.apply(&config, &name).map_err(|message| {
                Error::InvalidInput(format!(
                    "model `{name}`: the config given with the load request {message}"
                ))
            })?;
        }
        let labels = OutputLabels::read(root, &config.outputs)?;
        let versions = Self::versions(root)?;
        let version = match version {
            Some(v) if versions.contains(&v) => v,
            Some(v) => {
                return Err(Error::config(
                    root,
                    format!("has no version {v}; versions present: {versions:?}"),
                ));
            }
            None => *versions.last().ok_or_else(|| {
                Error::config(
                    root,
                    "holds no version directory (expected `1/` holding the model file)",
                )
            })?,
        };
        Ok(ModelDir {
            name,
            root: root.to_path_buf(),
            config,
            version,
            version_dir: root.join(version.to_string()),
            labels,
            config_override: config_override.cloned(),
        })
    }

    /// Every version of the model at `root` that its config's `version_policy` serves,
    /// ascending (the config made by `config_override` where one is given).
    pub fn open_served(root: &Path, config_override: Option<&ConfigOverride>) -> Result<Vec<Self>> {
        let highest = Self::open_with(root, None, config_override)?;
        let versions = highest
            .config
            .version_policy
            .select(&Self::versions(root)?)
            .map_err(|message| Error::config(root, message))?;
        Ok(versions
            .into_iter()
            .map(|version| ModelDir {
                version,
                version_dir: root.join(version.to_string()),
                ..highest.clone()
            })
            .collect())
    }

    /// The numeric version directories, ascending. A number written otherwise than
    /// plainly (`01/`) is an error naming it: it would be served as another directory.
    pub fn versions(root: &Path) -> Result<Vec<u64>> {
        let entries = std::fs::read_dir(root)
            .map_err(|e| Error::config(root, format!("cannot list: {e}")))?;
        let mut versions = Vec::new();
        let mut others = Vec::new();
        for entry in entries.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                let name = name.to_string_lossy().into_owned();
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    // Too large a number: ignored, it would leave a lower version serving
                    // as if it were the newest.
                    return Err(Error::config(
                        entry.path(),
                        format!(
                            "version {name} is over the largest version number, {}",
                            u64::MAX
                        ),
                    ));
                }
                if !name.starts_with('.') {
                    others.push(name);
                }
                continue;
            };
            if name.to_str() != Some(version.to_string().as_str()) {
                return Err(Error::config(
                    entry.path(),
                    format!(
                        "a version directory is named by its number alone: rename it `{version}`"
                    ),
                ));
            }
            versions.push(version);
        }
        versions.sort_unstable();
        if versions.is_empty() && !others.is_empty() {
            others.sort_unstable();
            return Err(Error::config(
                root,
                format!(
                    "holds no version directory: {} named by a number, such as `1/`, \
                     holding the model file ({} not)",
                    if others.len() == 1 {
                        "one is"
                    } else {
                        "each is"
                    },
                    others
                        .iter()
                        .map(|o| format!("`{o}/`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(versions)
    }

    /// The files the python bridge loads, in its order of preference: the first present.
    pub const PYTHON_FILES: [&'static str; 3] = ["model.py", "model.pt2", "model.pt"];

    /// The file `bridge` would load from this version, in the bridge's order of preference.
    pub fn form_for(&self, bridge: BackendKind) -> Result<ModelForm> {
        let dir = &self.version_dir;
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let found = match bridge {
            BackendKind::Python => file(Self::PYTHON_FILES[0])
                .map(ModelForm::PythonHandler)
                .or_else(|| file(Self::PYTHON_FILES[1]).map(ModelForm::Exported))
                .or_else(|| file(Self::PYTHON_FILES[2]).map(ModelForm::TorchScript)),
            BackendKind::Torchscript => file("model.pt").map(ModelForm::TorchScript),
            BackendKind::Onnx | BackendKind::Tract => file("model.onnx").map(ModelForm::Onnx),
            BackendKind::Candle => file("config.json").map(|_| ModelForm::Directory(dir.clone())),
        };
        found.ok_or_else(|| {
            let wanted = match bridge {
                BackendKind::Python => "model.py, model.pt2 or model.pt",
                BackendKind::Torchscript => "model.pt",
                BackendKind::Candle => "config.json, beside model.safetensors or pytorch_model.bin",
                _ => "model.onnx",
            };
            Error::config(
                dir,
                format!("holds no model file for the {bridge} bridge (expected {wanted})"),
            )
        })
    }

    /// The bridges that find a model file in this version (python, torchscript, onnx,
    /// tract, candle order), whether or not this build compiled them in.
    pub fn available_bridges(&self) -> Vec<BackendKind> {
        BackendKind::ALL
            .into_iter()
            .filter(|&b| self.form_for(b).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("digits");
        for v in ["1", "2", "10"] {
            std::fs::create_dir_all(m.join(v)).unwrap();
        }
        std::fs::write(m.join("config.toml"), "backend = \"onnx\"").unwrap();
        std::fs::write(m.join("10/model.onnx"), b"").unwrap();
        std::fs::write(m.join("10/model.py"), b"").unwrap();
        std::fs::write(m.join("2/model.pt"), b"").unwrap();
        dir
    }

    #[test]
    fn highest_version_wins_and_forms_are_found() {
        let dir = repo();
        let m = ModelDir::open(&dir.path().join("digits"), None).unwrap();
        assert_eq!((m.name.as_str(), m.version), ("digits", 10));
        assert_eq!(
            m.available_bridges(),
            vec![BackendKind::Python, BackendKind::Onnx, BackendKind::Tract]
        );
        let err = m
            .form_for(BackendKind::Torchscript)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no model file for the torchscript bridge (expected model.pt)"),
            "{err}"
        );
        std::fs::write(dir.path().join("digits/10/config.json"), b"{}").unwrap();
        let m = ModelDir::open(&dir.path().join("digits"), None).unwrap();
        assert_eq!(
            m.available_bridges().last(),
            Some(&BackendKind::Candle),
            "a published encoder's config.json"
        );
        let m = ModelDir::open(&dir.path().join("digits"), Some(2)).unwrap();
        let err = m.form_for(BackendKind::Candle).unwrap_err().to_string();
        assert!(err.contains("expected config.json"), "{err}");
        assert!(matches!(
            m.form_for(BackendKind::Python).unwrap(),
            ModelForm::TorchScript(_)
        ));
        let err = ModelDir::open(&dir.path().join("digits"), Some(3))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no version 3; versions present: [1, 2, 10]"),
            "{err}"
        );
    }

    #[test]
    fn missing_things_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelDir::open(&dir.path().join("nope"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope: no such model directory"), "{err}");
        std::fs::write(dir.path().join("config.toml"), "backend = \"onnx\"").unwrap();
        let err = ModelDir::open(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("holds no version directory"), "{err}");
        std::fs::create_dir(dir.path().join("v1")).unwrap();
        let err = ModelDir::open(dir.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("one is named by a number, such as `1/`") && err.contains("(`v1/` not)"),
            "{err}"
        );
        // A number too large for a version is no name to pass over (beside `1/`, it left
        // 1 serving as the newest).
        let huge = dir.path().join("99999999999999999999");
        std::fs::create_dir(&huge).unwrap();
        std::fs::create_dir(dir.path().join("1")).unwrap();
        let err = ModelDir::open(dir.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("version 99999999999999999999 is over the largest version number"),
            "{err}"
        );
        std::fs::remove_dir(&huge).unwrap();
        std::fs::remove_dir(dir.path().join("1")).unwrap();
        std::fs::create_dir(dir.path().join("01")).unwrap();
        let err = ModelDir::open(dir.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("01: a version directory is named by its number alone: rename it `1`"),
            "{err}"
        );
    }

    #[test]
    fn a_model_is_named_as_its_directory_is_listed() {
        let dir = repo();
        let current = dir.path().join("current");
        std::os::unix::fs::symlink(dir.path().join("digits"), &current).unwrap();
        assert_eq!(ModelDir::open(&current, None).unwrap().name, "current");
        let inside = dir.path().join("digits/10/..");
        assert_eq!(ModelDir::open(&inside, None).unwrap().name, "digits");
    }
}

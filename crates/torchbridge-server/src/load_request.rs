//! A repository load request's parameters, read the same way from HTTP and gRPC: the
//! `config` that overrides the model's config.toml, and the model's files (Triton's
//! `file:<path>` parameters), which need `config` and `--allow-model-upload`.

use torchbridge_core::{ConfigOverride, Error, Registry, Result};

/// What a load request asks for, checked.
#[derive(Debug, Default)]
pub(crate) struct LoadRequest {
    pub config: Option<ConfigOverride>,
    /// Paths inside the model directory (`1/model.onnx`) and their contents.
    pub files: Vec<(String, Vec<u8>)>,
}

/// One load parameter's value, as the transport carried it.
pub(crate) enum LoadParameter {
    Text(String),
    Bytes(Vec<u8>),
    Other(String),
}

impl LoadRequest {
    /// Reads the parameters of a load of `model`; `allow_upload` is the server's
    /// `allow_model_upload`. An error names the model.
    pub(crate) fn read(
        model: &str,
        parameters: impl IntoIterator<Item = (String, LoadParameter)>,
        allow_upload: bool,
    ) -> Result<Self> {
        Self::read_parameters(parameters, allow_upload).map_err(|e| match e {
            Error::InvalidInput(message) => {
                Error::InvalidInput(format!("load of model `{model}`: {message}"))
            }
            other => other,
        })
    }

    fn read_parameters(
        parameters: impl IntoIterator<Item = (String, LoadParameter)>,
        allow_upload: bool,
    ) -> Result<Self> {
        let mut request = LoadRequest::default();
        for (key, value) in parameters {
            if let Some(path) = key.strip_prefix("file:") {
                if !allow_upload {
                    return Err(Error::InvalidInput(format!(
                        "load parameter `{key}`: loading a model from files sent with the \
                         request is off; start the server with --allow-model-upload (a python \
                         model's files are code the server runs)"
                    )));
                }
                let content = match value {
                    LoadParameter::Bytes(b) => b,
                    LoadParameter::Text(t) => base64_decode(&key, &t)?,
                    LoadParameter::Other(v) => {
                        return Err(Error::InvalidInput(format!(
                            "load parameter `{key}` must hold the file's bytes, got {v}"
                        )));
                    }
                };
                request.files.push((path.to_string(), content));
                continue;
            }
            match (key.as_str(), value) {
                ("config", LoadParameter::Text(text)) => {
                    let parsed = ConfigOverride::parse(&text)
                        .map_err(|e| Error::InvalidInput(format!("the `config` parameter {e}")))?;
                    request.config = Some(parsed);
                }
                ("config", _) => {
                    return Err(Error::InvalidInput(
                        "the `config` parameter must be a string (the model config as JSON)".into(),
                    ));
                }
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "load parameter `{key}` is not supported (there are `config` and \
                         `file:<path>`)"
                    )));
                }
            }
        }
        if !request.files.is_empty() && request.config.is_none() {
            return Err(Error::InvalidInput(
                "a load that carries the model's files needs the `config` parameter too: it is \
                 the model's whole config"
                    .into(),
            ));
        }
        Ok(request)
    }

    /// Loads model `name` as asked, blocking until it is ready or failed.
    pub(crate) fn load(self, registry: &Registry, name: &str) -> Result<()> {
        match (self.config, self.files.is_empty()) {
            (Some(config), false) => registry.load_files(name, config, &self.files),
            (config, _) => registry.load_with(name, config),
        }
    }
}

fn base64_decode(key: &str, text: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Error::InvalidInput(format!("load parameter `{key}` is not base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(parameters: Vec<(&str, LoadParameter)>, allow: bool) -> Result<LoadRequest> {
        LoadRequest::read(
            "net",
            parameters.into_iter().map(|(k, v)| (k.to_string(), v)),
            allow,
        )
    }

    fn text(s: &str) -> LoadParameter {
        LoadParameter::Text(s.into())
    }

    #[test]
    fn files_come_base64_or_as_bytes_and_need_a_config_and_the_flag() {
        let r = read(
            vec![
                ("config", text("backend = \"onnx\"")),
                ("file:1/model.onnx", text("b25ueA==")),
                ("file:1/extra.bin", LoadParameter::Bytes(vec![1, 2])),
            ],
            true,
        )
        .unwrap();
        assert_eq!(r.files[0], ("1/model.onnx".to_string(), b"onnx".to_vec()));
        assert_eq!(r.files[1].1, [1, 2]);
        assert!(r.config.is_some());

        for (parameters, allow, says) in [
            (
                vec![("file:1/model.onnx", text("b25ueA=="))],
                true,
                "needs the `config` parameter",
            ),
            (
                vec![("file:1/model.onnx", text("b25ueA=="))],
                false,
                "--allow-model-upload",
            ),
            (
                vec![("file:1/model.onnx", text("not base64!"))],
                true,
                "is not base64",
            ),
            (
                vec![("file:1/m", LoadParameter::Other("true".into()))],
                true,
                "must hold the file's bytes",
            ),
            (
                vec![("config", LoadParameter::Other("1".into()))],
                true,
                "must be a string",
            ),
            (
                vec![("unload_dependents", text("x"))],
                true,
                "`unload_dependents` is not supported",
            ),
        ] {
            let e = read(parameters, allow).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.starts_with("load of model `net`: "),
                "{e}"
            );
        }
    }
}

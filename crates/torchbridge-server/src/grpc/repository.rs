//! The model repository: index, load, unload. Loading and unloading block (a model loads,
//! or its workers finish their queue), so both run off the async threads.

use torchbridge_core::{ConfigOverride, Error, Result};

use super::proto::model_repository_parameter::ParameterChoice;
use super::proto::repository_index_response::ModelIndex;
use super::proto::{
    RepositoryIndexRequest, RepositoryIndexResponse, RepositoryModelLoadRequest,
    RepositoryModelLoadResponse, RepositoryModelUnloadRequest, RepositoryModelUnloadResponse,
};
use crate::AppState;

/// Every model of the repository, or only the ready ones.
pub(super) async fn index(
    state: &AppState,
    request: RepositoryIndexRequest,
) -> Result<RepositoryIndexResponse> {
    let registry = state.registry.clone();
    let entries = super::blocking("", move || Ok(registry.index())).await?;
    let models = entries
        .into_iter()
        .filter(|e| !request.ready || e.state == "READY")
        .map(|e| ModelIndex {
            name: e.name,
            version: e.version.map(|v| v.to_string()).unwrap_or_default(),
            state: e.state.into(),
            reason: e.reason,
        })
        .collect();
    Ok(RepositoryIndexResponse { models })
}

/// Loads or reloads a model from its directory, with the `config` parameter's config where
/// one is given; the old version serves until then.
pub(super) async fn load(
    state: &AppState,
    request: RepositoryModelLoadRequest,
) -> Result<RepositoryModelLoadResponse> {
    let mut config_override = None;
    for (key, value) in request.parameters {
        let choice = value.parameter_choice;
        config_override = match (key.as_str(), choice) {
            ("config", Some(ParameterChoice::StringParam(text))) => Some(
                ConfigOverride::parse(&text)
                    .map_err(|e| Error::InvalidInput(format!("the `config` parameter {e}")))?,
            ),
            ("config", other) => {
                return Err(Error::InvalidInput(format!(
                    "the `config` parameter must be a string (the model config as JSON), got \
                     {other:?}"
                )));
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "load parameter `{key}` is not supported: torchbridge loads a model's files \
                     from its directory in the repository (`config` may override its config)"
                )));
            }
        };
    }
    let registry = state.registry.clone();
    let name = request.model_name;
    super::blocking(&name.clone(), move || {
        registry.load_with(&name, config_override)
    })
    .await?;
    Ok(RepositoryModelLoadResponse {})
}

/// Unloads a model: new requests are refused, queued ones finish.
pub(super) async fn unload(
    state: &AppState,
    request: RepositoryModelUnloadRequest,
) -> Result<RepositoryModelUnloadResponse> {
    let registry = state.registry.clone();
    let name = request.model_name;
    super::blocking(&name.clone(), move || registry.unload(&name)).await?;
    Ok(RepositoryModelUnloadResponse {})
}

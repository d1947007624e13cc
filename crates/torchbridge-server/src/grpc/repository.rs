//! The model repository: index, load, unload. Loading and unloading block (a model loads,
//! or its workers finish their queue), so both run off the async threads.

use torchbridge_core::Result;

use super::proto::model_repository_parameter::ParameterChoice;
use super::proto::repository_index_response::ModelIndex;
use super::proto::{
    RepositoryIndexRequest, RepositoryIndexResponse, RepositoryModelLoadRequest,
    RepositoryModelLoadResponse, RepositoryModelUnloadRequest, RepositoryModelUnloadResponse,
};
use crate::AppState;
use crate::load_request::{LoadParameter, LoadRequest};

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

/// Loads or reloads a model from its directory — or from the files the request carries —
/// with the `config` parameter's config where one is given; the old version serves until
/// then.
pub(super) async fn load(
    state: &AppState,
    request: RepositoryModelLoadRequest,
) -> Result<RepositoryModelLoadResponse> {
    let parameters = request.parameters.into_iter().map(|(key, value)| {
        let value = match value.parameter_choice {
            Some(ParameterChoice::StringParam(text)) => LoadParameter::Text(text),
            Some(ParameterChoice::BytesParam(bytes)) => LoadParameter::Bytes(bytes),
            Some(ParameterChoice::BoolParam(b)) => LoadParameter::Other(format!("bool_param {b}")),
            Some(ParameterChoice::Int64Param(n)) => {
                LoadParameter::Other(format!("int64_param {n}"))
            }
            None => LoadParameter::Other("no value".into()),
        };
        (key, value)
    });
    let load = LoadRequest::read(
        &request.model_name,
        parameters,
        state.settings.allow_model_upload,
    )?;
    let registry = state.registry.clone();
    let name = request.model_name;
    super::blocking(&name.clone(), move || load.load(&registry, &name)).await?;
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

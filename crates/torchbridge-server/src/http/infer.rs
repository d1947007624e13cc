//! `POST /v2/models/{model}[/versions/{version}]/infer`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::binary::header_length;
use super::compression::Encoding;
use super::error::ApiError;
use super::extract::{Body, ModelRef};
use super::request::Delivery;
use super::{request, response};
use crate::AppState;
use crate::request_metrics::{Outcome, Protocol};

pub async fn infer(
    State(state): State<AppState>,
    model: ModelRef,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let pool = state.registry.get(&model.name, model.version)?;
    let mut request = request::decode(
        body,
        header_length(&headers)?,
        &state.settings.limits,
        &state.shared_memory,
    )?;
    request.outputs.check(pool.metadata())?;
    let version = pool.metadata().version;
    drop(pool);

    let in_flight = state
        .metrics
        .in_flight(&model.name, Some(version), Protocol::Http);
    // The server's time limit applies inside: a model that does not answer in time is
    // a 504 from there.
    let result = state
        .infer_within(&model.name, model.version, request.inputs, request.timeout)
        .await
        .map_err(ApiError::from);
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(e) if e.status().is_client_error() => Outcome::Invalid,
        Err(_) => Outcome::Failure,
    };
    in_flight.answered(request.id.as_deref().unwrap_or_default(), outcome);

    let (pool, outputs) = result?;
    let outputs = request
        .outputs
        .select(outputs, pool.metadata(), pool.labels())?;
    for (tensor, delivery) in &outputs {
        if let Delivery::SharedMemory(at) = delivery {
            state.shared_memory.write(&tensor.name, at, &tensor.data)?;
        }
    }
    let encoded = response::encode(
        &model.name,
        pool.metadata().version,
        request.id.as_deref(),
        &outputs,
    )?;
    Ok(response::into_response(
        encoded,
        Encoding::accepted(&headers),
    ))
}

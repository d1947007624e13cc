//! `POST /v2/models/{model}[/versions/{version}]/infer`.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::binary::header_length;
use super::compression::Encoding;
use super::error::ApiError;
use super::extract::{Body, ModelRef};
use super::request::Delivery;
use super::{request, response};
use crate::AppState;
use crate::request_metrics::{Outcome, Protocol};

/// Request JSON up to this size is parsed where it arrives; larger on the blocking pool.
const DECODE_INLINE_MAX: usize = 256 << 10;

pub async fn infer(
    State(state): State<AppState>,
    model: ModelRef,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let (request, version) = match admit(&state, &model, &headers, body).await {
        Ok(admitted) => admitted,
        Err(e) => {
            // Refused before it reached the model: counted all the same, as gRPC counts
            // it (an unknown model's client-chosen name without a name).
            let known = state.registry.get(&model.name, model.version).ok();
            let (name, version) = match &known {
                Some(served) => (model.name.as_str(), Some(served.metadata().version)),
                None if e.status() == StatusCode::NOT_FOUND => ("", None),
                None => (model.name.as_str(), model.version),
            };
            let outcome = Outcome::of_status(e.status());
            let elapsed = arrived.elapsed();
            state
                .metrics
                .inference(name, version, "", outcome, Protocol::Http, elapsed);
            return Err(e);
        }
    };

    let in_flight = state
        .metrics
        .in_flight(&model.name, Some(version), Protocol::Http);
    // The server's time limit applies inside: a model that does not answer in time is
    // a 504 from there.
    let result = state
        .infer_within(&model.name, model.version, request.inputs, request.timeout)
        .await
        .map_err(ApiError::from)
        .and_then(|(pool, outputs)| {
            // Counted as the client sees it: an output that cannot be delivered (a
            // shared-memory region too small) fails the request.
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
            Ok(encoded)
        });
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::of_status(e.status()),
    };
    in_flight.answered(request.id.as_deref().unwrap_or_default(), outcome);
    let encoded = result.map_err(|e| e.for_request(&model.name, request.id.as_deref()))?;
    Ok(response::into_response(
        encoded,
        Encoding::accepted(&headers),
    ))
}

/// The request decoded and checked against the model it names, with that model's version.
async fn admit(
    state: &AppState,
    model: &ModelRef,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<(request::InferRequest, u64), ApiError> {
    let pool = state.registry.get(&model.name, model.version)?;
    let json_bytes = header_length(headers)?;
    let mut request = if json_bytes.unwrap_or(body.len()) <= DECODE_INLINE_MAX {
        request::decode(
            body,
            json_bytes,
            &state.settings.limits,
            &state.shared_memory,
        )?
    } else {
        // Parsing megabytes of JSON takes milliseconds to seconds: on the async
        // threads it would hold up every other connection meanwhile.
        let decoding = state.clone();
        tokio::task::spawn_blocking(move || {
            let (limits, shared_memory) = (&decoding.settings.limits, &decoding.shared_memory);
            request::decode(body, json_bytes, limits, shared_memory)
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    request.outputs.check(pool.metadata())?;
    request.outputs.bind(&state.shared_memory)?;
    Ok((request, pool.metadata().version))
}

//! `ModelInfer` and `ModelStreamInfer`: one request path, answered alone or on a stream.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use torchbridge_core::Result;

use super::proto::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use super::{convert, error};
use crate::AppState;
use crate::request_metrics::{Outcome, Protocol};

/// Requests one stream may have running at once; past it the stream is not read, so
/// HTTP/2 flow control holds the client back.
const STREAM_IN_FLIGHT: usize = 256;

/// Runs one request (under the server's time limit, which `AppState::infer_within`
/// applies to the model's answer); logs and counts its outcome.
pub(super) async fn infer(
    state: &AppState,
    rpc: &'static str,
    request: ModelInferRequest,
) -> Result<ModelInferResponse, Status> {
    let started = Instant::now();
    let model = request.model_name.clone();
    let version = request.model_version.clone();
    let id = request.id.clone();
    let result = run(state, request)
        .await
        .map_err(|e| error::failed(rpc, &model, &e));
    // Outcomes as the HTTP side names them. Client-chosen names of unknown models would
    // make unbounded label sets, so those are counted without a name (and versions only
    // as numbers).
    let (outcome, version, model) = match &result {
        Ok(r) => (Outcome::Success, r.model_version.as_str(), model.as_str()),
        Err(s) if s.code() == Code::NotFound => (Outcome::Invalid, "", ""),
        Err(s) if s.code() == Code::InvalidArgument => {
            (Outcome::Invalid, version.as_str(), model.as_str())
        }
        Err(_) => (Outcome::Failure, version.as_str(), model.as_str()),
    };
    // A request that named no version counts under the one it was meant for, as on
    // HTTP: the latest served (none when the model is not served at all).
    let version = match version.parse().ok() {
        None if !model.is_empty() => state
            .registry
            .get(model, None)
            .ok()
            .map(|m| m.metadata().version),
        parsed => parsed,
    };
    let elapsed = started.elapsed();
    state
        .metrics
        .inference(model, version, &id, outcome, Protocol::Grpc, elapsed);
    result
}

async fn run(state: &AppState, request: ModelInferRequest) -> Result<ModelInferResponse> {
    let ModelInferRequest {
        model_name,
        model_version,
        id,
        inputs,
        outputs,
        raw_input_contents,
        parameters,
    } = request;
    let version = convert::version(&model_version)?;
    let timeout = convert::timeout(parameters.get("timeout"))?;
    let limits = &state.settings.limits;
    let shared_memory = &state.shared_memory;
    let mut plans = Vec::new();
    if !outputs.is_empty() {
        limits.check_count("requested outputs", outputs.len())?;
        let pool = state.registry.get(&model_name, version)?;
        plans = convert::check_requested(pool.metadata(), &outputs)?;
    }
    let tensors = convert::inputs(inputs, raw_input_contents, limits, shared_memory)?;
    let (pool, results) = state
        .infer_within(&model_name, version, tensors, timeout)
        .await?;
    convert::response(
        pool.metadata(),
        pool.labels(),
        id,
        results,
        &outputs,
        &plans,
        shared_memory,
    )
}

/// Answers the requests of a stream in the order they came, as Triton does for a model
/// that is not decoupled (tritonclient's stream callback sends no `id` unless asked, so
/// order is how its clients match replies). Up to `STREAM_IN_FLIGHT` requests run at
/// once, started in arrival order, so they still batch together; a reply that is ready
/// waits only for those before it. A failed request is answered on the stream with its
/// error; the stream goes on.
pub(super) fn stream(
    state: AppState,
    requests: Streaming<ModelInferRequest>,
) -> ReceiverStream<Result<ModelStreamInferResponse, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
    tokio::spawn(serve_stream(state, requests, tx));
    ReceiverStream::new(rx)
}

type Replies = mpsc::Sender<Result<ModelStreamInferResponse, Status>>;

async fn serve_stream(state: AppState, mut requests: Streaming<ModelInferRequest>, tx: Replies) {
    // Dropping it (the client left) drops the requests not yet answered: the pool skips
    // those still queued.
    let mut running = FuturesOrdered::new();
    let mut stopping = state.stopping();
    let mut reading = true;
    // Why reading stopped early: told to the client once what was read is answered.
    let mut broken = None;
    while reading || !running.is_empty() {
        tokio::select! {
            () = tx.closed() => return,
            Some(reply) = running.next(), if !running.is_empty() => {
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
            // The server is stopping: answer what was read, then end the stream.
            () = stopped(&mut stopping), if reading => reading = false,
            next = requests.message(), if reading && running.len() < STREAM_IN_FLIGHT => {
                match next {
                    Ok(Some(request)) => {
                        let state = state.clone();
                        running.push_back(async move { stream_reply(&state, request).await });
                    }
                    // The client is done sending: answer what is running, then end.
                    Ok(None) => reading = false,
                    // A message that cannot be read (too large, not protobuf): the requests
                    // before it are still answered, then the stream ends with its status.
                    Err(status) => {
                        tracing::info!(rpc = "ModelStreamInfer", "stream ended: {status}");
                        reading = false;
                        broken = Some(unreadable(status, &state));
                    }
                }
            }
        }
    }
    if let Some(status) = broken {
        let _ = tx.send(Err(status)).await;
    }
}

/// Why a stream message could not be read, in the words unary calls use for the limit.
fn unreadable(status: Status, state: &AppState) -> Status {
    match status.code() {
        Code::OutOfRange => Status::resource_exhausted(format!(
            "a stream message is over the limit of {} bytes (--max-body-bytes); the stream \
             ends after the replies to the requests before it ({})",
            state.settings.limits.max_body_bytes,
            status.message()
        )),
        _ => Status::new(
            status.code(),
            format!(
                "a stream message could not be read; the stream ends after the replies to \
                 the requests before it ({})",
                status.message()
            ),
        ),
    }
}

/// Resolves once the server is stopping (the guard `wait_for` holds is not `Send`).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|&stop| stop).await;
}

async fn stream_reply(state: &AppState, request: ModelInferRequest) -> ModelStreamInferResponse {
    let echo = ModelInferResponse {
        model_name: request.model_name.clone(),
        model_version: request.model_version.clone(),
        id: request.id.clone(),
        ..Default::default()
    };
    match infer(state, "ModelStreamInfer", request).await {
        Ok(response) => ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(response),
        },
        Err(status) => ModelStreamInferResponse {
            error_message: status.message().to_string(),
            infer_response: Some(echo),
        },
    }
}

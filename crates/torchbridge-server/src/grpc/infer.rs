//! `ModelInfer` and `ModelStreamInfer`: one request path, answered alone or on a stream.

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use torchbridge_core::Result;

use super::proto::infer_parameter::ParameterChoice;
use super::proto::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelStreamInferResponse,
};
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
    let mut counted = Counted {
        state,
        model: request.model_name.clone(),
        version: request.model_version.clone(),
        id: request.id.clone(),
        started: Instant::now(),
        outcome: None,
    };
    let result = run(state, request)
        .await
        .map_err(|e| error::failed(rpc, &counted.model, &counted.id, &e));
    // Outcomes as the HTTP side names them.
    counted.outcome = Some(match &result {
        Ok(r) => {
            counted.version.clone_from(&r.model_version);
            Outcome::Success
        }
        Err(s) if s.code() == Code::NotFound => {
            counted.model.clear(); // an unknown model: counted without its name
            Outcome::Invalid
        }
        Err(s) if s.code() == Code::InvalidArgument => Outcome::Invalid,
        Err(s) if s.code() == Code::ResourceExhausted => Outcome::Rejected,
        Err(s) if s.code() == Code::Unavailable => Outcome::Unavailable,
        Err(s) if s.code() == Code::DeadlineExceeded => Outcome::Timeout,
        Err(_) => Outcome::Failure,
    });
    result
}

/// One request's count, made when it is dropped: with its outcome once it has one, or
/// as `abandoned` if the client gave up first (a deadline, a cancel: the request's
/// future is dropped mid-await).
struct Counted<'a> {
    state: &'a AppState,
    model: String,
    version: String,
    id: String,
    started: Instant,
    outcome: Option<Outcome>,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        // Client-chosen names of unknown models would make unbounded label sets: a
        // model counts by name only when served, its version only as a number.
        let served = || self.state.registry.get(&self.model, None).ok();
        let outcome = self.outcome.unwrap_or(Outcome::Abandoned);
        let unknown = self.model.is_empty() || (self.outcome.is_none() && served().is_none());
        let (model, version) = if unknown {
            ("", None)
        } else {
            // A request that named no version counts under the one it was meant for,
            // as on HTTP: the latest served (none when the model is not served at all).
            let version = self.version.parse().ok();
            let version = version.or_else(|| served().map(|m| m.metadata().version));
            (self.model.as_str(), version)
        };
        let elapsed = self.started.elapsed();
        self.state
            .metrics
            .inference(model, version, &self.id, outcome, Protocol::Grpc, elapsed);
    }
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
        for (plan, r) in plans.iter_mut().zip(&outputs) {
            if let Some(at) = &mut plan.at {
                shared_memory.bind(&r.name, at)?;
            }
        }
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
/// error; the stream goes on. When the server stops, the stream ends UNAVAILABLE once
/// what was read is answered.
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
            // The server is stopping: answer what was read, then end the stream with
            // UNAVAILABLE, so the client knows that what it sends next is not read.
            () = stopped(&mut stopping), if reading => {
                reading = false;
                broken = Some(Status::unavailable(
                    "the server is shutting down: the stream ends after the replies to the \
                     requests read so far; later ones were not read",
                ));
            }
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
    // Over the limit as sent, or (gzip) once inflated.
    let too_big = status.code() == Code::OutOfRange
        || status.message().contains("Error decompressing: size limit");
    match too_big {
        true => Status::resource_exhausted(format!(
            "a stream message is over the limit of {} bytes (--max-body-bytes); the stream \
             ends after the replies to the requests before it ({})",
            state.settings.limits.max_body_bytes,
            status.message()
        )),
        false => Status::new(
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

/// The reply to one request of a stream. Each carries Triton's `triton_final_response:
/// true` (every model here answers a request once), which clients of decoupled models
/// wait for before they take a request as done.
async fn stream_reply(state: &AppState, request: ModelInferRequest) -> ModelStreamInferResponse {
    let echo = ModelInferResponse {
        model_name: request.model_name.clone(),
        model_version: request.model_version.clone(),
        id: request.id.clone(),
        ..Default::default()
    };
    let (error_message, mut response) = match infer(state, "ModelStreamInfer", request).await {
        Ok(response) => (String::new(), response),
        Err(status) => (status.message().to_string(), echo),
    };
    response.parameters.insert(
        "triton_final_response".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::BoolParam(true)),
        },
    );
    ModelStreamInferResponse {
        error_message,
        infer_response: Some(response),
    }
}

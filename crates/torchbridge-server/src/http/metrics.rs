//! Request metrics and the one log line of each failed request.
//!
//! The library records through [`crate::request_metrics`]; the binary installs the
//! exporter.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Failure};
use crate::AppState;
use crate::request_metrics::RequestMetrics;

/// Route middleware: counts and times each request by matched route, method and status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    record(&state.metrics, route, &method, &response, started);
    response
}

fn record(
    metrics: &RequestMetrics,
    route: &str,
    method: &Method,
    response: &Response,
    started: Instant,
) {
    let status = response.status();
    metrics.http_request(route, method, status.as_u16(), started.elapsed());
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let failure = response.extensions().get::<Failure>();
    let reason = failure.map_or("", |f| &f.reason);
    // An inference request's model and the client's `id`, so a failure can be matched
    // to the request that met it.
    let model = failure.and_then(|f| f.model.as_deref());
    let id = failure.and_then(|f| f.request_id.as_deref());
    let status = status.as_u16();
    if route.ends_with("/ready") {
        // "Not ready" is the answer to a readiness probe, asked every few seconds while
        // a model loads: not a failure to log as one.
        tracing::debug!(%method, route, status, "not ready: {reason}");
    } else if status == 500 {
        tracing::error!(%method, route, status, model, id, "request failed: {reason}");
    } else {
        // The client's mistake, a model not ready, a full queue, a timeout: answers,
        // not server faults, at info as on gRPC (a client retrying a wrong request
        // would otherwise fill the log at the default level).
        tracing::info!(%method, route, status, model, id, "request refused: {reason}");
    }
}

/// Any path no route matches: 404 with the protocol's error body.
pub async fn not_found(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    let started = Instant::now();
    let response = ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
    .into_response();
    record(&state.metrics, "unmatched", &method, &response, started);
    response
}

/// A known path asked with the wrong method: 405 with the protocol's error body,
/// counted and logged as every other refusal (the route layer does not see it).
pub async fn method_not_allowed(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
) -> Response {
    let started = Instant::now();
    let response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
    .into_response();
    record(&state.metrics, "unmatched", &method, &response, started);
    response
}

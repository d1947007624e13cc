//! Request metrics and the one log line of each failed request.
//!
//! The library only calls the `metrics` macros; the binary installs the exporter.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Failure};

/// Route middleware: counts and times each request by matched route, method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    record(&route, &method, &response, started);
    response
}

fn record(route: &str, method: &Method, response: &Response, started: Instant) {
    let status = response.status();
    let labels = [
        ("route", route.to_string()),
        ("method", method.to_string()),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("torchbridge_http_requests_total", &labels).increment(1);
    metrics::histogram!("torchbridge_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let reason = response.extensions().get::<Failure>().map_or("", |f| &f.0);
    let status = status.as_u16();
    if status >= 500 {
        tracing::error!(%method, route, status, "request failed: {reason}");
    } else {
        tracing::warn!(%method, route, status, "request refused: {reason}");
    }
}

/// Any path no route matches: 404 with the protocol's error body.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    let started = Instant::now();
    let response = ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
    .into_response();
    record("unmatched", &method, &response, started);
    response
}

/// A known path asked with the wrong method: 405 with the protocol's error body.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
    .into_response()
}

//! The metrics port: `GET /metrics` in Prometheus's text format, served by the same
//! connection code as the HTTP port, so a client that opens connections and never
//! finishes a request is closed after the client timeout. (The exporter's own listener
//! has no timeouts: idle connections held descriptors until the server had none left,
//! and its accept loop then spun, logging without pause.)

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::http_connections::serve_http;

/// How often histograms are drained into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Serves `handle`'s metrics on `listener` until `stop` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    client_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let upkeep = handle.clone();
    let upkeep = tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let render = move || {
        let text = handle.render();
        async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "metrics are at GET /metrics\n").into_response()
        });
    let served = serve_http(listener, app, client_timeout, stop).await;
    upkeep.abort();
    served
}

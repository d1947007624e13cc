//! HTTP connections, served by hyper with a clock. `axum::serve` gives hyper no timer, so
//! its header-read timeout never runs: a client that opens a connection and never
//! finishes a request's headers (slowloris), or never sends one, holds it and a file
//! descriptor for good, and enough of them starve the server of descriptors. Here each
//! connection must deliver every request's headers within the client timeout, counted
//! from when the server starts waiting for them (so an idle keep-alive connection is
//! closed after it too); the body's own deadline is the `Body` extractor's.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

/// Serves `app` on the connections `listener` accepts until `stop` resolves; then stops
/// accepting, lets every connection finish the request it is on, and returns.
pub(crate) async fn serve_http<L>(
    mut listener: L,
    app: Router,
    client_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: axum::serve::Listener,
{
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (io, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let service = app
            .clone()
            .map_request(|request: Request<Incoming>| request.map(axum::body::Body::new));
        let connection =
            http1.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::AppState;

/// Serves HTTP on `http` and gRPC on `grpc` until `shutdown` resolves; then both stop
/// accepting, finish every request already admitted, and return.
pub async fn serve(
    state: AppState,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&stop| stop).await;
    };
    // Small requests and replies: send each at once rather than wait for Nagle's timer.
    let http = axum::serve::ListenerExt::tap_io(http, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let http_server = axum::serve(http, crate::http::app(state.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let grpc_server = tonic::transport::Server::builder()
        .add_service(crate::grpc::service(state))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopped(stop_rx),
        );
    let (h, g) = tokio::join!(http_server, grpc_server);
    h?;
    g.map_err(std::io::Error::other)
}

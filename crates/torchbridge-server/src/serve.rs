use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::AppState;
use crate::grpc::GuardLayer;
use crate::http_connections::serve_http;
use crate::tls::TlsListener;

/// Concurrent gRPC calls one connection may hold (`SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_GRPC_STREAMS_PER_CONNECTION: u32 = 1024;

/// Serves HTTP on `http` and gRPC on `grpc` until `shutdown` resolves; then both stop
/// accepting, finish every request already admitted, and return. With
/// `state.settings.tls` both listeners speak TLS; with `state.settings.auth` both
/// require a bearer token. With `state.settings.idle_poll` the CPUs are kept awake for
/// that long after each request ([`IdlePoll`](crate::IdlePoll)) while serving; without
/// it, a warning is logged on a virtual machine whose idle CPUs halt without polling.
/// Request traces still kept in memory are written once both have stopped.
pub async fn serve(
    state: AppState,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop_rx = state.stopping();
    let stopper = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.stop();
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&stop| stop).await;
    };
    let settings = state.settings.clone();
    let state = match settings.idle_poll.is_zero() {
        true => {
            if let Some(warning) = crate::halt_poll::warning() {
                tracing::warn!("{warning}");
            }
            state
        }
        false => state.with_idle_poll(Arc::new(crate::IdlePoll::start(settings.idle_poll)?)),
    };
    let tracer = state.tracer.clone();
    let app = crate::http::app(state.clone());
    let client_timeout = settings.client_timeout;
    let http_server = async {
        let stop = stopped(stop_rx.clone());
        match &settings.tls {
            Some(tls) => serve_http(TlsListener::new(http, tls)?, app, client_timeout, stop).await,
            None => {
                // Small requests and replies: send each at once rather than wait for
                // Nagle's timer.
                let http = axum::serve::ListenerExt::tap_io(http, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                serve_http(http, app, client_timeout, stop).await
            }
        }
    };
    let mut grpc_builder = tonic::transport::Server::builder();
    if let Some(tls) = &settings.tls {
        grpc_builder = grpc_builder
            .tls_config(tls.grpc())
            .map_err(std::io::Error::other)?;
    }
    let grpc_server = grpc_builder
        // Peers that stop answering pings are dropped (a long-lived channel idles legitimately).
        .http2_keepalive_interval(Some(client_timeout))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // HTTP/2 sets no bound by default: one connection could hold any number of
        // streams open (about 10 KB each). Clients open more connections past this.
        .max_concurrent_streams(Some(MAX_GRPC_STREAMS_PER_CONNECTION))
        .layer(GuardLayer::new(
            settings.auth.clone(),
            settings.limits.max_body_bytes,
        ))
        .add_service(crate::grpc::health::service(state.clone()))
        .add_service(crate::grpc::service(state))
        .serve_with_incoming_shutdown(
            crate::grpc::incoming::incoming(grpc, client_timeout),
            stopped(stop_rx.clone()),
        );
    let (h, g) = tokio::join!(http_server, grpc_server);
    // Every admitted request has been answered: the traces kept are complete.
    tracer.flush();
    h?;
    g.map_err(std::io::Error::other)
}

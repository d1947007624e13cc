//! `torchbridge serve`: every model of a repository over KServe v2 HTTP and gRPC.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use torchbridge::{Registry, start_model};
use torchbridge_server::{AppState, ServerSettings};

/// Serve every model of a repository over HTTP and gRPC (KServe v2 / Open Inference Protocol).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model repository: one directory per model, each with config.toml and versions.
    #[arg(long, env = "TORCHBRIDGE_MODEL_REPOSITORY")]
    model_repository: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "TORCHBRIDGE_HOST", default_value = "0.0.0.0")]
    host: IpAddr,
    /// HTTP/REST port.
    #[arg(long, env = "TORCHBRIDGE_HTTP_PORT", default_value_t = 8000)]
    http_port: u16,
    /// gRPC port.
    #[arg(long, env = "TORCHBRIDGE_GRPC_PORT", default_value_t = 8001)]
    grpc_port: u16,
    /// Prometheus metrics port (`GET /metrics`).
    #[arg(long, env = "TORCHBRIDGE_METRICS_PORT", default_value_t = 8002)]
    metrics_port: u16,
    /// Largest request body, in bytes, after decompression.
    #[arg(long, env = "TORCHBRIDGE_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// Default time a request may take, in milliseconds.
    #[arg(long, env = "TORCHBRIDGE_REQUEST_TIMEOUT_MS", default_value_t = 60_000)]
    request_timeout_ms: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(args, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = |port| SocketAddr::new(args.host, port);
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr(args.metrics_port))
        .install()
        .with_context(|| format!("cannot serve metrics on {}", addr(args.metrics_port)))?;
    let registry = Arc::new(Registry::new(
        &args.model_repository,
        Arc::new(|dir: &torchbridge::ModelDir| start_model(dir, dir.config.backend)),
    ));
    let names = registry.scan()?;
    let settings = ServerSettings {
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        runtime_versions: tokio::task::spawn_blocking(torchbridge::runtime_versions).await?,
    };
    let http = tokio::net::TcpListener::bind(addr(args.http_port))
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", addr(args.http_port)))?;
    let grpc = tokio::net::TcpListener::bind(addr(args.grpc_port))
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", addr(args.grpc_port)))?;
    tracing::info!(http = %http.local_addr()?, grpc = %grpc.local_addr()?, models = names.len(), "listening");
    println!(
        "torchbridge: HTTP on {}, gRPC on {}, metrics on {}; loading {} model(s) from {}",
        http.local_addr()?,
        grpc.local_addr()?,
        addr(args.metrics_port),
        names.len(),
        args.model_repository.display()
    );

    let state = AppState::new(registry.clone(), settings);
    let server = tokio::spawn(torchbridge_server::serve(state, http, grpc, shutdown));
    // Live at once; ready when every model has loaded or failed (failures are in the index).
    tokio::task::spawn_blocking(move || {
        for name in names {
            if let Err(e) = registry.load(&name) {
                eprintln!("torchbridge: model `{name}` failed to load: {e}");
            }
        }
    })
    .await
    .context("model loading panicked")?;
    tracing::info!("models loaded");
    server
        .await
        .context("the server task panicked")?
        .context("the server failed")?;
    println!("torchbridge: stopped");
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c: admission stops, in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

//! `torchbridge serve`: every model of a repository over KServe v2 HTTP and gRPC.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::Matcher;
use torchbridge::{Change, Registry, RepositoryWatch, start_model};
use torchbridge_server::{AppState, Auth, Limits, PemFile, ServerSettings, TlsSettings};

use super::logger::Logger;
use super::stop::{StopTimes, follow_signals};
use super::trace_args::TraceArgs;

/// Serve every model of a repository over HTTP and gRPC (KServe v2 / Open Inference Protocol).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model repository: one directory per model, each with config.toml and versions.
    #[arg(long, env = "TORCHBRIDGE_MODEL_REPOSITORY")]
    model_repository: PathBuf,
    /// Address to listen on: an IP address (0.0.0.0 every interface, 127.0.0.1 this
    /// machine only), or `localhost`.
    #[arg(long, env = "TORCHBRIDGE_HOST", default_value = "0.0.0.0", value_parser = host)]
    host: IpAddr,
    /// HTTP/REST port.
    #[arg(long, env = "TORCHBRIDGE_HTTP_PORT", default_value_t = 8000, value_parser = port)]
    http_port: u16,
    /// gRPC port.
    #[arg(long, env = "TORCHBRIDGE_GRPC_PORT", default_value_t = 8001, value_parser = port)]
    grpc_port: u16,
    /// Prometheus metrics port (`GET /metrics`). It is never authenticated and never
    /// TLS: keep it on a private network (--metrics-host).
    #[arg(long, env = "TORCHBRIDGE_METRICS_PORT", default_value_t = 8002, value_parser = port)]
    metrics_port: u16,
    /// Address the metrics port listens on [default: --host], e.g. 127.0.0.1 to keep
    /// metrics on this machine while inference listens on every interface.
    #[arg(long, env = "TORCHBRIDGE_METRICS_HOST", value_parser = host)]
    metrics_host: Option<IpAddr>,
    /// Default time a request may take, in milliseconds (at least 1).
    #[arg(long, env = "TORCHBRIDGE_REQUEST_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
    /// Seconds an HTTP client may take to send a request's headers (or, on a keep-alive
    /// connection, to start its next request) and then its body: a connection that
    /// stalls longer is closed (headers) or answered 408 (body), so stalled clients
    /// cannot pile up and hold every file descriptor.
    #[arg(long, env = "TORCHBRIDGE_CLIENT_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENT_TIMEOUT_SECS))]
    client_timeout_secs: u64,
    /// Keep the CPUs awake for this many microseconds after each inference request, so
    /// that the next one does not wait for a sleeping CPU to wake (tens of µs on a VM).
    /// Lowest-priority spinning threads, one per CPU: they cost CPU time, not latency.
    /// 0: off.
    #[arg(long, env = "TORCHBRIDGE_IDLE_POLL_US", default_value_t = 0)]
    idle_poll_us: u64,
    /// Let clients register system shared-memory regions (Triton's
    /// `systemsharedmemory` extension) and pass tensors through them. Any client that
    /// reaches the server may then read and write the shared-memory objects of the
    /// server's user: only for clients on the same host that you trust.
    #[arg(long, env = "TORCHBRIDGE_ALLOW_CLIENT_SHM", value_parser = clap::builder::BoolishValueParser::new())]
    allow_client_shm: bool,
    /// Let a repository load request carry the model's files (Triton's `file:` load
    /// parameters, tritonclient's `load_model(name, config=..., files=...)`), written to a
    /// directory of the server's own. Any client that reaches the server (with a token,
    /// when tokens are required) may then run code in it: a python model is code.
    #[arg(long, env = "TORCHBRIDGE_ALLOW_MODEL_UPLOAD", value_parser = clap::builder::BoolishValueParser::new())]
    allow_model_upload: bool,
    /// Whether clients may load and unload models through the repository API (Triton's
    /// modes): `explicit` lets any client that reaches the server (with a token, when
    /// tokens are required) load, reload with another config, and unload; `none` refuses
    /// those calls (403 / PERMISSION_DENIED), and the models are those loaded at
    /// startup (and by --poll-repository-secs).
    #[arg(
        long,
        env = "TORCHBRIDGE_MODEL_CONTROL_MODE",
        value_enum,
        default_value = "explicit"
    )]
    model_control_mode: ModelControlMode,
    /// Look at the repository every this many seconds and follow it: load a model
    /// directory that appears, reload one whose files change (its loaded versions serve
    /// on if that fails), remove one that disappears. 0: off.
    #[arg(long, env = "TORCHBRIDGE_POLL_REPOSITORY_SECS", default_value_t = 0)]
    poll_repository_secs: u64,
    /// Whether the server is ready (`/v2/health/ready`, gRPC ServerReady and health
    /// Check) only while every model it loaded is available, as in Triton: `true`; with
    /// `false`, once no model is still loading, whatever failed (the index and each
    /// model's ready endpoint report the failures).
    #[arg(long, env = "TORCHBRIDGE_STRICT_READINESS", default_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    strict_readiness: bool,
    /// On SIGTERM (or ctrl-c, SIGHUP): report not ready at once, but go on serving for
    /// this many seconds before closing the listeners, so that a load balancer stops
    /// sending first (Kubernetes takes a terminating pod out of its endpoints while the
    /// signal is delivered, not before). A second signal exits at once.
    #[arg(long, env = "TORCHBRIDGE_SHUTDOWN_DELAY_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(..=MAX_CLIENT_TIMEOUT_SECS))]
    shutdown_delay_secs: u64,
    /// Once the listeners are closed, how many seconds the requests in flight may take to
    /// finish (Triton's flag); past it the process exits without them, with status 1. A
    /// second signal exits at once, with status 1 if requests were still in flight.
    #[arg(long, env = "TORCHBRIDGE_EXIT_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(..=MAX_CLIENT_TIMEOUT_SECS))]
    exit_timeout_secs: u64,
    /// How many models load at once at startup.
    #[arg(long, env = "TORCHBRIDGE_MODEL_LOAD_THREADS", default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    model_load_threads: usize,
    /// Load only this model at startup (repeat for several); the others stay unloaded
    /// until the repository API loads them (Triton's explicit model control).
    #[arg(long = "load-model", value_name = "NAME")]
    load_models: Vec<String>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    trace: TraceArgs,
}

/// Who loads and unloads models once the server runs (`--model-control-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModelControlMode {
    /// Clients, through the repository API.
    Explicit,
    /// Nobody: the repository API's load and unload are refused.
    None,
}

/// Authentication and TLS, both off unless asked for.
#[derive(Debug, clap::Args)]
struct SecurityArgs {
    /// Require a bearer token on HTTP and gRPC: a file of accepted tokens, one a line
    /// (blank and `#` lines skipped). Clients send `authorization: Bearer <token>`.
    #[arg(long, env = "TORCHBRIDGE_AUTH_TOKEN_FILE", value_name = "PATH")]
    auth_token_file: Option<PathBuf>,
    /// Require a bearer token, taken from this environment variable (one token a line).
    #[arg(long, env = "TORCHBRIDGE_AUTH_TOKEN_ENV", value_name = "VAR")]
    auth_token_env: Option<String>,
    /// Leave the health checks (/v2/health/live, /v2/health/ready; gRPC ServerLive,
    /// ServerReady, grpc.health.v1.Health/Check) open when tokens are required.
    #[arg(long, env = "TORCHBRIDGE_AUTH_ALLOW_HEALTH", value_parser = clap::builder::BoolishValueParser::new())]
    auth_allow_health: bool,
    /// Serve HTTP and gRPC over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(
        long,
        env = "TORCHBRIDGE_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "TORCHBRIDGE_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Require every client to present a certificate signed by this PEM CA (mutual TLS).
    #[arg(
        long,
        env = "TORCHBRIDGE_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
}

/// What one request may hold; past a limit the request is refused with 400 (413 for
/// sizes) naming the limit and its flag.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Largest request body as sent, in bytes (gRPC: largest message, also once inflated).
    #[arg(long, env = "TORCHBRIDGE_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Largest HTTP request body once inflated from gzip/deflate, in bytes.
    #[arg(long, env = "TORCHBRIDGE_MAX_INFLATED_BYTES", default_value_t = Limits::default().max_inflated_bytes)]
    max_inflated_bytes: usize,
    /// Most inputs, and most requested outputs, in one request.
    #[arg(long, env = "TORCHBRIDGE_MAX_TENSORS", default_value_t = Limits::default().max_tensors)]
    max_tensors: usize,
    /// Most dimensions in one tensor's shape.
    #[arg(long, env = "TORCHBRIDGE_MAX_TENSOR_DIMS", default_value_t = Limits::default().max_dims)]
    max_tensor_dims: usize,
    /// Most elements in one tensor.
    #[arg(long, env = "TORCHBRIDGE_MAX_TENSOR_ELEMENTS", default_value_t = Limits::default().max_elements)]
    max_tensor_elements: usize,
    /// Longest single BYTES element, in bytes.
    #[arg(long, env = "TORCHBRIDGE_MAX_BYTES_ELEMENT", default_value_t = Limits::default().max_bytes_element)]
    max_bytes_element: usize,
    /// Deepest nesting of arrays and objects in a JSON request (at most 120).
    #[arg(long, env = "TORCHBRIDGE_MAX_JSON_DEPTH", default_value_t = Limits::default().max_json_depth)]
    max_json_depth: usize,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        let limits = Limits {
            max_body_bytes: self.max_body_bytes,
            max_inflated_bytes: self.max_inflated_bytes,
            max_tensors: self.max_tensors,
            max_dims: self.max_tensor_dims,
            max_elements: self.max_tensor_elements,
            max_bytes_element: self.max_bytes_element,
            max_json_depth: self.max_json_depth,
        };
        limits.validate().map_err(anyhow::Error::msg)?;
        Ok(limits)
    }
}

impl SecurityArgs {
    /// The accepted tokens, from the file and/or the variable; `None` when neither is set.
    fn auth(&self) -> anyhow::Result<Option<Arc<Auth>>> {
        let mut tokens = Vec::new();
        let mut sources = Vec::new();
        if let Some(path) = &self.auth_token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--auth-token-file {}: cannot read it", path.display()))?;
            tokens.extend(Auth::parse_tokens(&text));
            sources.push(format!("--auth-token-file {}", path.display()));
        }
        if let Some(var) = &self.auth_token_env {
            let text = std::env::var(var).with_context(|| {
                format!("--auth-token-env {var}: the environment variable `{var}` is not set")
            })?;
            tokens.extend(Auth::parse_tokens(&text));
            sources.push(format!("--auth-token-env {var}"));
        }
        if sources.is_empty() {
            anyhow::ensure!(
                !self.auth_allow_health,
                "--auth-allow-health needs --auth-token-file or --auth-token-env"
            );
            return Ok(None);
        }
        let auth = Auth::new(tokens, self.auth_allow_health, &sources.join(" and "))?;
        Ok(Some(Arc::new(auth)))
    }

    fn tls(&self) -> anyhow::Result<Option<Arc<TlsSettings>>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let file = |name, path| PemFile { name, path };
        let tls = TlsSettings::from_files(
            file("--tls-cert", cert),
            file("--tls-key", key),
            self.tls_client_ca
                .as_deref()
                .map(|p| file("--tls-client-ca", p)),
        )?;
        Ok(Some(Arc::new(tls)))
    }
}

/// Serves until SIGTERM or ctrl-c (see [`super::stop`]); clients may change what
/// `logger` logs.
pub fn run(args: ServeArgs, logger: Arc<Logger>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let ended = runtime.block_on(serve(args, logger))?;
    // Not waiting for blocking tasks: a model load abandoned at stop may run for minutes.
    runtime.shutdown_background();
    Ok(match ended {
        Ended::Drained => ExitCode::SUCCESS,
        // As Triton's: a supervisor (or a person reading `$?`) learns that requests were
        // cut off.
        Ended::Abandoned => ExitCode::FAILURE,
    })
}

/// How a stop ended.
enum Ended {
    /// Every request in flight was answered (model loads may have been abandoned).
    Drained,
    /// Past the exit timeout or at a second signal, with requests possibly in flight.
    Abandoned,
}

/// From 50 µs (a small model's whole request) to 10 s, about three to a decade.
const SECONDS_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Rows in a backend call: powers of two to 1024.
const ROWS_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

async fn serve(args: ServeArgs, logger: Arc<Logger>) -> anyhow::Result<Ended> {
    let addr = |port| SocketAddr::new(args.host, port);
    let ports = [
        ("--http-port", args.http_port),
        ("--grpc-port", args.grpc_port),
        ("--metrics-port", args.metrics_port),
    ];
    for (i, (flag, port)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port && *port != 0) {
            anyhow::bail!("{other} and {flag} are both {port}: each needs a port of its own");
        }
    }
    let limits = args.limits.limits()?;
    let auth = args.security.auth()?;
    let tls = args.security.tls()?;
    let trace = args.trace.settings()?;
    // Histograms with buckets (not the exporter's default summaries), so that Prometheus
    // can take quantiles over time and across replicas (`histogram_quantile`).
    let (seconds, rows) = (
        Matcher::Suffix("_seconds".into()),
        Matcher::Full("torchbridge_batch_size".into()),
    );
    let metrics_at = SocketAddr::new(args.metrics_host.unwrap_or(args.host), args.metrics_port);
    let metrics_listener = tokio::net::TcpListener::bind(metrics_at)
        .await
        .with_context(|| format!("cannot serve metrics on {metrics_at}"))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(seconds, &SECONDS_BUCKETS)?
        .set_buckets_for_metric(rows, &ROWS_BUCKETS)?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    torchbridge_server::describe_metrics();
    // Served until the process ends (it answers while requests drain at a stop).
    tokio::spawn(torchbridge_server::serve_metrics(
        metrics_listener,
        metrics,
        Duration::from_secs(args.client_timeout_secs),
        std::future::pending(),
    ));
    let registry = Arc::new(Registry::new(
        &args.model_repository,
        Arc::new(|dir: &torchbridge::ModelDir| start_model(dir, dir.config.backend)),
    ));
    anyhow::ensure!(
        !args.model_repository.join("config.toml").exists(),
        "--model-repository {}: this is a model directory (it holds config.toml); give the \
         directory above it, which holds one directory per model",
        args.model_repository.display()
    );
    for (stray, why) in registry.strays()? {
        tracing::warn!("`{stray}/` in the model repository {why}: not served");
    }
    anyhow::ensure!(
        args.load_models.is_empty() || args.poll_repository_secs == 0,
        "--load-model cannot be used with --poll-repository-secs {} (polling loads every \
         model of the repository); give one or the other",
        args.poll_repository_secs
    );
    anyhow::ensure!(
        args.load_models.is_empty() || args.model_control_mode == ModelControlMode::Explicit,
        "--load-model needs --model-control-mode explicit: with `none` the models it leaves \
         out could never load"
    );
    let names = startup_models(registry.scan()?, &args.load_models)?;
    // Not ready while any of them is still loading.
    registry.mark_loading(&names);
    // Taken before the first load, so a change made while models load is seen.
    let watch = (args.poll_repository_secs > 0).then(|| RepositoryWatch::new(&registry));
    let over_tls = if tls.is_some() { " over TLS" } else { "" };
    let guarded = match (&auth, &tls) {
        (Some(_), Some(t)) if t.verifies_clients() => {
            "; bearer tokens and client certificates required"
        }
        (Some(_), _) => "; bearer tokens required",
        (None, Some(t)) if t.verifies_clients() => "; client certificates required",
        (None, _) => "",
    };
    let settings = ServerSettings {
        limits,
        auth,
        tls,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        client_timeout: Duration::from_secs(args.client_timeout_secs),
        idle_poll: Duration::from_micros(args.idle_poll_us),
        allow_client_shm: args.allow_client_shm,
        allow_model_upload: args.allow_model_upload,
        model_control: args.model_control_mode == ModelControlMode::Explicit,
        strict_readiness: args.strict_readiness,
        log: Some(logger.clone()),
        trace,
        runtime_versions: tokio::task::spawn_blocking(torchbridge::runtime_versions).await?,
    };
    let http = tokio::net::TcpListener::bind(addr(args.http_port))
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", addr(args.http_port)))?;
    let grpc = tokio::net::TcpListener::bind(addr(args.grpc_port))
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", addr(args.grpc_port)))?;
    tracing::info!(http = %http.local_addr()?, grpc = %grpc.local_addr()?, models = names.len(), "listening");
    logger.status(&format!(
        "HTTP on {}, gRPC on {}{over_tls}, metrics on {}{guarded}; loading {} model(s) from {}",
        http.local_addr()?,
        grpc.local_addr()?,
        metrics_addr,
        names.len(),
        args.model_repository.display()
    ));

    let state = AppState::new(registry.clone(), settings);
    let times = StopTimes {
        delay: Duration::from_secs(args.shutdown_delay_secs),
        exit_timeout: Duration::from_secs(args.exit_timeout_secs),
    };
    let (close, give_up) = follow_signals(state.clone(), times, logger.clone())
        .context("cannot watch for SIGTERM, SIGINT and SIGHUP")?;
    let mut server = tokio::spawn(torchbridge_server::serve(state.clone(), http, grpc, close));
    tokio::pin!(give_up);
    // Live at once; ready once every model has loaded (or, with --strict-readiness false,
    // loaded or failed; failures are in the index).
    let (loading, threads, count) = (registry.clone(), args.model_load_threads, names.len());
    let loads = tokio::task::spawn_blocking(move || {
        // Each failure is in the log already (the registry's error, with its cause).
        loading.load_each(&names, threads).len()
    });
    tokio::select! {
        loaded = loads => {
            let failed = loaded.context("model loading panicked")?;
            if failed > 0 {
                let readiness = match args.strict_readiness {
                    true => "; the server reports not ready until they load \
                             (--strict-readiness false: ready with the others)",
                    false => "",
                };
                logger.problem(&format!(
                    "{failed} model(s) failed to load (the errors are in the log, and the \
                     repository index gives each model's reason){readiness}"
                ));
            } else {
                logger.status(&format!("{count} model(s) loaded: ready"));
            }
            state.started();
            tracing::info!("models loaded");
        }
        // Told to stop while models load: a load cannot be interrupted, and waiting for
        // it (a slow model's minutes) would outlast a supervisor's grace period.
        ended = &mut server => {
            ended
                .context("the server task panicked")?
                .context("the server failed")?;
            logger.status("stopped while models were still loading (their loads were abandoned)");
            return Ok(Ended::Drained);
        }
        // Requests in flight past the exit timeout, or a second signal, while models
        // still load (the server's own end then waits for nothing).
        () = &mut give_up => {
            if let Ok(Ok(Ok(()))) = tokio::time::timeout(DRAINED_GRACE, &mut server).await {
                logger.status("stopped while models were still loading (their loads were abandoned)");
                return Ok(Ended::Drained);
            }
            logger.problem("stopped while models were still loading, without waiting for the requests in flight");
            return Ok(Ended::Abandoned);
        }
    }
    if let Some(watch) = watch {
        let every = Duration::from_secs(args.poll_repository_secs);
        tokio::spawn(follow_repository(registry, watch, every, logger.clone()));
    }
    tokio::select! {
        ended = &mut server => {
            ended
                .context("the server task panicked")?
                .context("the server failed")?;
            logger.status("stopped");
            Ok(Ended::Drained)
        }
        () = &mut give_up => {
            // A second signal closes the listeners too: with nothing in flight the server
            // ends a moment later, and nothing was cut off.
            if let Ok(Ok(Ok(()))) = tokio::time::timeout(DRAINED_GRACE, &mut server).await {
                logger.status("stopped");
                return Ok(Ended::Drained);
            }
            logger.problem("stopped without waiting for the requests in flight");
            Ok(Ended::Abandoned)
        }
    }
}

/// How long, past the exit timeout or a second signal, the server's own end is awaited
/// before the stop counts as cutting requests off.
const DRAINED_GRACE: Duration = Duration::from_millis(250);

/// `--host`: an IP address, or `localhost` (the loopback address, IPv4).
fn host(text: &str) -> Result<IpAddr, String> {
    if text.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not an IP address: give one such as 0.0.0.0 (every interface), \
             127.0.0.1 (this machine only), or `localhost`"
        )
    })
}

/// A port number. Kubernetes puts `TORCHBRIDGE_HTTP_PORT=tcp://10.0.0.1:8000` into every
/// pod of a namespace with a Service named `torchbridge-http` (a "service link"), which
/// would otherwise stop the server with a bare "invalid value".
fn port(text: &str) -> Result<u16, String> {
    text.parse().map_err(|e| match text.starts_with("tcp://") {
        true => format!(
            "`{text}` is no port number: it looks like a Kubernetes service link (a Service \
             named torchbridge-http, -grpc or -metrics sets TORCHBRIDGE_<NAME>_PORT in every \
             pod of its namespace); pass the port as a flag, or set enableServiceLinks: false \
             in the pod spec"
        ),
        false => format!("`{text}` is no port number (0 to 65535): {e}"),
    })
}

/// `--client-timeout-secs` at most: a year (a deadline past `Instant`'s range panicked
/// on every connection).
const MAX_CLIENT_TIMEOUT_SECS: u64 = 365 * 24 * 3600;

/// The models to load at startup: every one found, or those `--load-model` names (each
/// must be in the repository).
fn startup_models(found: Vec<String>, named: &[String]) -> anyhow::Result<Vec<String>> {
    if named.is_empty() {
        return Ok(found);
    }
    for name in named {
        anyhow::ensure!(
            found.contains(name),
            "--load-model {name}: the repository has no model `{name}` (a directory holding \
             config.toml); it has {found:?}"
        );
    }
    let mut names: Vec<String> = Vec::with_capacity(named.len());
    for name in named {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// Polls the repository every `every` and reports what changed; runs until the process
/// ends (a poll is blocking file system work and model loads, off the async threads).
async fn follow_repository(
    registry: Arc<Registry>,
    mut watch: RepositoryWatch,
    every: Duration,
    logger: Arc<Logger>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let polling = registry.clone();
        let polled = tokio::task::spawn_blocking(move || (watch.poll(&polling), watch)).await;
        let Ok((changes, returned)) = polled else {
            logger.problem("polling the model repository panicked; it is no longer followed");
            return;
        };
        watch = returned;
        for change in changes {
            match change {
                Change::Loaded(name) => {
                    logger.status(&format!("model `{name}` appeared and loaded"))
                }
                Change::Reloaded(name, Ok(())) => {
                    logger.status(&format!("model `{name}` changed and reloaded"));
                }
                // The registry has logged the error itself (once: a traceback is long).
                Change::Reloaded(name, Err(_)) => logger.problem(&format!(
                    "model `{name}` changed, and its reload failed (the error is in the log; \
                     the repository index gives it as the reason); {}",
                    match registry.versions(&name).is_empty() {
                        true => "it does not serve",
                        false => "what was loaded serves on",
                    }
                )),
                Change::Unreadable(why) => logger.problem(&format!(
                    "cannot read the model repository ({why}); the models loaded serve on, \
                     and it is read again at each poll"
                )),
                Change::Readable => logger.status("the model repository can be read again"),
                Change::Failed(name, _) => logger.problem(&format!(
                    "model `{name}` appeared and failed to load (the error is in the log and \
                     the repository index)"
                )),
                Change::Removed(name) => logger.status(&format!("model `{name}` was removed")),
            }
        }
    }
}

//! The bench's flags, and the validated [`Plan`] they become before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;
use torchbridge::{BackendKind, ModelDir};

use crate::cli::InputFile;

/// Measure a model: served by a KServe v2 server (`--model`), in process through each
/// bridge (`--bridges` / `--model-dir`), or both.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The model's name on the server; the served measure runs when it is given.
    #[arg(long, env = "TORCHBRIDGE_BENCH_MODEL")]
    model: Option<String>,
    /// The server's HTTP address, host:port.
    #[arg(long, env = "TORCHBRIDGE_BENCH_URL", default_value = "127.0.0.1:8000")]
    url: String,
    /// The server's gRPC address, host:port [default: the --url host, port 8001].
    #[arg(long, env = "TORCHBRIDGE_BENCH_GRPC_URL")]
    grpc_url: Option<String>,
    /// A header sent with every request (gRPC: metadata), as "NAME: VALUE"; repeat for
    /// more, e.g. `-H "authorization: Bearer TOKEN"`.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Send `authorization: Bearer <token>` with the token from this environment variable
    /// (a server started with --auth-token-*), keeping it off the command line.
    #[arg(long, value_name = "VAR")]
    auth_token_env: Option<String>,
    /// How to send tensors, one run each: http-json, http-binary, grpc.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "http-json")]
    protocol: Vec<Protocol>,
    /// Clients in flight (served) or caller threads (in process); one run each.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    concurrency: Vec<usize>,
    /// How long each run lasts, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Open loop instead of clients: send this many requests per second on a fixed
    /// schedule, whether or not earlier ones were answered (served runs; one run each).
    /// Latency counts from each request's scheduled time.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PER_SECOND",
        conflicts_with = "concurrency"
    )]
    rate: Vec<f64>,
    /// Open loop: connections (requests in flight) at most; a request due while all
    /// are busy is not sent and counts as an error.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Stop each run after this many requests instead of after --duration.
    #[arg(long, conflicts_with = "duration")]
    requests: Option<u64>,
    /// Rows per request, one run each [default: 1].
    #[arg(long, value_delimiter = ',', conflicts_with = "inputs")]
    batch: Vec<usize>,
    /// Untimed requests before each run.
    #[arg(long, default_value_t = 100)]
    warmup_requests: u64,
    /// An input as NAME=FILE.npy instead of random data; repeat for each input.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<InputFile>,
    /// The size given to variable (-1) dimensions of random inputs.
    #[arg(long, default_value_t = 8)]
    variable_dim: i64,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also measure these bridges in process, with no server [default with
    /// --model-dir: every form present].
    #[arg(long, value_delimiter = ',')]
    bridges: Vec<BackendKind>,
    /// The model directory for the in-process measure.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// This version instead of the highest (of --model-dir, and asked of the server).
    #[arg(long = "model-version")]
    version: Option<u64>,
    /// Time one request may take before it counts as a `timeout` error, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Threads of the load generator's async runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Print one JSON document with every run instead of tables (no progress bar).
    #[arg(long)]
    json: bool,
    /// Draw latency (p50, p99) against throughput for the runs as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// How the requests carry their tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1, tensors as JSON arrays.
    HttpJson,
    /// HTTP/1.1, tensors in the binary tensor data extension (both ways).
    HttpBinary,
    /// gRPC, tensors in `raw_input_contents`.
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpJson => "http-json",
            Protocol::HttpBinary => "http-binary",
            Protocol::Grpc => "grpc",
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// A server to drive.
#[derive(Debug)]
pub struct Target {
    pub model: String,
    pub version: Option<u64>,
    /// host:port
    pub http: String,
    /// host:port
    pub grpc: String,
    /// Whether `--grpc-url` gave `grpc` (else: the `--url` host, port 8001).
    pub grpc_given: bool,
    pub protocols: Vec<Protocol>,
    /// Sent with every request: `--header`s and the `--auth-token-env` token.
    pub headers: HeaderMap,
}

impl Target {
    /// A gRPC channel to the server; an address that cannot be reached says where it
    /// came from.
    pub async fn grpc_channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        super::client::grpc_connect(&self.grpc).await.map_err(|e| {
            let source = match self.grpc_given {
                true => "gRPC, --grpc-url",
                false => "gRPC: the --url host with port 8001, as no --grpc-url was given",
            };
            anyhow::anyhow!("{e} ({source})")
        })
    }

    /// `message` as a gRPC request carrying the run's headers as metadata.
    pub fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = MetadataMap::from_headers(self.headers.clone());
        request
    }

    /// `/v2/models/{model}`, or `…/versions/{v}` when a version was asked for.
    pub fn path(&self) -> String {
        match self.version {
            Some(v) => format!("/v2/models/{}/versions/{v}", self.model),
            None => format!("/v2/models/{}", self.model),
        }
    }
}

/// Bridges to measure in process.
#[derive(Debug)]
pub struct InProcess {
    pub dir: ModelDir,
    pub bridges: Vec<BackendKind>,
}

/// Everything a bench does, checked.
#[derive(Debug)]
pub struct Plan {
    pub server: Option<Target>,
    pub in_process: Option<InProcess>,
    pub concurrency: Vec<usize>,
    /// Open-loop request rates of the served runs; empty: closed loop at `concurrency`.
    pub rates: Vec<f64>,
    pub max_in_flight: usize,
    /// Rows per request; `None`: the rows of the `--input` files.
    pub batches: Vec<Option<usize>>,
    pub stop: Stop,
    pub warmup: u64,
    pub inputs: Vec<InputFile>,
    pub variable_dim: i64,
    pub seed: u64,
    pub request_timeout: Duration,
    pub client_threads: usize,
    pub json: bool,
    pub plot: Option<PathBuf>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl TryFrom<BenchArgs> for Plan {
    type Error = anyhow::Error;

    fn try_from(a: BenchArgs) -> anyhow::Result<Self> {
        ensure!(
            a.model.is_some() || a.model_dir.is_some() || !a.bridges.is_empty(),
            "nothing to measure: give --model NAME to drive a server, --model-dir DIR \
             (with --bridges) to measure in process, or both"
        );
        ensure!(
            !a.concurrency.contains(&0),
            "--concurrency must be at least 1"
        );
        ensure!(!a.batch.contains(&0), "--batch must be at least 1");
        ensure!(
            a.rate.iter().all(|r| r.is_finite() && *r > 0.0),
            "--rate must be a number of requests per second above 0"
        );
        ensure!(
            a.rate.is_empty() || a.model.is_some(),
            "--rate drives a server: give --model NAME"
        );
        ensure!(a.max_in_flight >= 1, "--max-in-flight must be at least 1");
        if let Some(plot) = &a.plot {
            let dir = plot.parent().filter(|d| !d.as_os_str().is_empty());
            ensure!(
                dir.is_none_or(|d| d.is_dir()),
                "--plot {}: the directory it would go in does not exist",
                plot.display()
            );
        }
        ensure!(a.variable_dim >= 1, "--variable-dim must be at least 1");
        ensure!(a.client_threads >= 1, "--client-threads must be at least 1");
        let stop = match a.requests {
            Some(0) => bail!("--requests must be at least 1"),
            Some(n) => Stop::Requests(n),
            None if a.duration.is_zero() => bail!("--duration must be longer than 0"),
            None => Stop::After(a.duration),
        };
        let in_process = match (&a.model_dir, a.bridges.is_empty()) {
            (None, false) => bail!("--bridges needs the model's directory: --model-dir DIR"),
            (None, true) => None,
            (Some(path), _) => {
                let dir = ModelDir::open(path, a.version)?;
                let bridges = if a.bridges.is_empty() {
                    dir.available_bridges()
                } else {
                    a.bridges.clone()
                };
                ensure!(
                    !bridges.is_empty(),
                    "{} holds no model file any bridge reads",
                    dir.version_dir.display()
                );
                Some(InProcess { dir, bridges })
            }
        };
        let server = match a.model {
            None => None,
            Some(model) => {
                let http = address(&a.url, 8000, "--url")?;
                let grpc = match &a.grpc_url {
                    Some(url) => address(url, 8001, "--grpc-url")?,
                    None => format!("{}:8001", host(&http)),
                };
                let mut protocols = a.protocol.clone();
                protocols.dedup();
                Some(Target {
                    model,
                    version: a.version,
                    http,
                    grpc,
                    grpc_given: a.grpc_url.is_some(),
                    protocols,
                    headers: headers(&a.headers, a.auth_token_env.as_deref())?,
                })
            }
        };
        let batches = if !a.inputs.is_empty() {
            vec![None]
        } else if a.batch.is_empty() {
            vec![Some(1)]
        } else {
            a.batch.iter().copied().map(Some).collect()
        };
        use std::io::IsTerminal;
        Ok(Plan {
            server,
            in_process,
            concurrency: a.concurrency,
            rates: a.rate,
            max_in_flight: a.max_in_flight,
            batches,
            stop,
            warmup: a.warmup_requests,
            inputs: a.inputs,
            variable_dim: a.variable_dim,
            seed: a.seed,
            request_timeout: a.request_timeout,
            client_threads: a.client_threads,
            progress: !a.json && std::io::stderr().is_terminal(),
            json: a.json,
            plot: a.plot,
        })
    }
}

/// The `--header "NAME: VALUE"`s and the `--auth-token-env` token as request headers.
fn headers(given: &[String], auth_token_env: Option<&str>) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for header in given {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header `{header}`: write it as \"NAME: VALUE\""))?;
        let name = HeaderName::try_from(name.trim()).with_context(|| {
            format!(
                "--header `{header}`: `{}` is not a header name",
                name.trim()
            )
        })?;
        let value = HeaderValue::try_from(value.trim())
            .with_context(|| format!("--header `{header}`: the value is not a header value"))?;
        headers.append(name, value);
    }
    if let Some(var) = auth_token_env {
        let token = std::env::var(var).map_err(|_| {
            anyhow::anyhow!("--auth-token-env {var}: the environment variable `{var}` is not set")
        })?;
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                anyhow::anyhow!("--auth-token-env {var}: the token is not a header value")
            })?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// `host:port` from `http://host:port/`, `host:port` or `host` (with `default_port`).
fn address(url: &str, default_port: u16, flag: &str) -> anyhow::Result<String> {
    if url.starts_with("https://") || url.starts_with("grpcs://") {
        bail!("{flag} {url}: TLS is not supported; give the plain address, e.g. 127.0.0.1:8000");
    }
    let bare = url.strip_prefix("http://").unwrap_or(url);
    let bare = bare.trim_end_matches('/');
    ensure!(
        !bare.is_empty() && !bare.contains('/'),
        "{flag} {url}: expected host:port, e.g. 127.0.0.1:8000"
    );
    // A port is there unless the address ends in a bare host or an IPv6 literal.
    let has_port = bare
        .rsplit_once(':')
        .is_some_and(|(h, p)| p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')));
    Ok(if has_port {
        bare.to_string()
    } else {
        format!("{bare}:{default_port}")
    })
}

fn host(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// `10s`, `500ms`, `2m`, `1.5s`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests;

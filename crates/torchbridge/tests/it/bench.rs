//! `torchbridge bench` against the real server binary, over each protocol, and in
//! process. The figures are never asserted on (the bench is the measure): only that
//! every request was answered, counted and timed consistently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{copy_dir, model_dir};

/// The server binary on free loopback ports, serving a copy of `mlp` through the onnx
/// bridge; killed when dropped, so a failing test leaves no server behind.
struct Server {
    child: Child,
    http: u16,
    grpc: u16,
    _repo: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// Ports free now, all different: every listener stays bound until all are picked, since a
/// port released at once may be handed out again by the next bind.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// The variable the server of [`Server::start_with_token`] reads its token from.
const TOKEN_VAR: &str = "TORCHBRIDGE_BENCH_TEST_TOKEN";

impl Server {
    fn start() -> Server {
        Server::start_with(None)
    }

    /// A server that answers only requests carrying `authorization: Bearer <token>`
    /// (health checks excepted, so that readiness can be polled).
    fn start_with_token(token: &str) -> Server {
        Server::start_with(Some(token))
    }

    fn start_with(token: Option<&str>) -> Server {
        let repo = tempfile::tempdir().unwrap();
        let mlp = repo.path().join("mlp");
        copy_dir(&model_dir("mlp"), &mlp);
        let config = std::fs::read_to_string(mlp.join("config.toml")).unwrap();
        let config = config.replace("backend = \"torchscript\"", "backend = \"onnx\"");
        assert!(config.contains("backend = \"onnx\""), "{config}");
        std::fs::write(mlp.join("config.toml"), config).unwrap();
        let [http, grpc, metrics] = free_ports::<3>();
        let port = |p: u16| p.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_torchbridge"));
        command
            .args(["serve", "--model-repository"])
            .arg(repo.path())
            .args(["--host", "127.0.0.1", "--http-port", &port(http)])
            .args(["--grpc-port", &port(grpc), "--metrics-port", &port(metrics)]);
        if let Some(token) = token {
            command
                .args(["--auth-token-env", TOKEN_VAR, "--auth-allow-health"])
                .env(TOKEN_VAR, token);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            http,
            grpc,
            _repo: repo,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited before it was ready: {status}");
            }
            if ready(self.http) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server was not ready within 60 s");
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }

    fn grpc_url(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }
}

/// The body of `GET path` (an empty string when the server cannot be reached).
fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut reply = String::new();
    let _ = stream.write_all(request.as_bytes());
    let _ = stream.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string())
}

/// `GET /v2/health/ready` answers 200.
fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.1 200")
}

/// Runs `torchbridge bench` with `flags` (split at spaces) and then `paths` (flag, path).
fn bench(flags: &str, paths: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_torchbridge"));
    command.arg("bench").args(flags.split_whitespace());
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The bench's `--json` document, after checking that it ran.
fn report(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// Every request answered and counted once; latencies in order.
fn assert_complete(run: &Value, requests: u64, batch: u64) {
    assert_eq!(run["requests"], requests, "{run:#}");
    assert_eq!(run["errors"], 0, "{run:#}");
    assert_eq!(run["errors_by_kind"], serde_json::json!({}), "{run:#}");
    assert_eq!(run["rows"], requests * batch, "{run:#}");
    assert_eq!(run["batch"], batch, "{run:#}");
    let l = &run["latency_ms"];
    let ms = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("no {k}: {run:#}"));
    assert!(ms("p50") > 0.0, "{run:#}");
    assert!(ms("p50") <= ms("p90") && ms("p90") <= ms("p99"), "{run:#}");
    assert!(ms("p99") <= ms("max"), "{run:#}");
    assert!(run["requests_per_s"].as_f64().unwrap() > 0.0, "{run:#}");
}

#[test]
fn drives_the_server_over_every_protocol() {
    let server = Server::start();
    let (url, grpc) = (server.url(), server.grpc_url());
    for protocol in ["http-json", "http-binary", "grpc"] {
        let out = bench(
            &format!(
                "--model mlp --url {url} --grpc-url {grpc} --protocol {protocol} \
                 --requests 200 --concurrency 4 --batch 3 --warmup-requests 8 --json"
            ),
            &[],
        );
        let report = report(&out);
        assert_eq!(report["model"], "mlp");
        let runs = report["server"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{report:#}");
        assert_eq!(runs[0]["protocol"], protocol);
        assert_eq!(runs[0]["concurrency"], 4);
        assert_complete(&runs[0], 200, 3);
        assert_eq!(report["in_process"], serde_json::json!([]));
    }
}

#[test]
fn sends_the_token_a_guarded_server_asks_for() {
    let server = Server::start_with_token("s3cret");
    let (url, grpc) = (server.url(), server.grpc_url());
    for protocol in ["http-binary", "grpc"] {
        let flags = format!(
            "--model mlp --url {url} --grpc-url {grpc} --protocol {protocol} --requests 20 \
             --warmup-requests 2 --json"
        );
        let refused = bench(&flags, &[]);
        assert!(!refused.status.success(), "{}", text(&refused));
        assert!(
            text(&refused).contains("authentication required"),
            "{protocol}: {}",
            text(&refused)
        );
        let command = || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_torchbridge"));
            command.arg("bench").args(flags.split_whitespace());
            command
        };
        let from_env = command()
            .args(["--auth-token-env", "BENCH_TOKEN"])
            .env("BENCH_TOKEN", "s3cret")
            .output()
            .unwrap();
        assert_complete(&report(&from_env)["server"][0], 20, 1);
        let as_header = command()
            .args(["-H", "Authorization: Bearer s3cret"])
            .output()
            .unwrap();
        assert_complete(&report(&as_header)["server"][0], 20, 1);
    }
}

#[test]
fn compares_bridges_in_process_and_with_the_server() {
    let server = Server::start();
    let dir = model_dir("mlp");
    let out = bench(
        "--bridges onnx,torchscript --requests 200 --batch 1,4 --concurrency 2 --json",
        &[("--model-dir", &dir)],
    );
    let report = report(&out);
    let runs = report["in_process"].as_array().unwrap();
    let bridges: Vec<_> = runs.iter().map(|r| r["bridge"].as_str().unwrap()).collect();
    assert_eq!(bridges, ["onnx", "onnx", "torchscript", "torchscript"]);
    for (run, batch) in runs.iter().zip([1, 4, 1, 4]) {
        assert_complete(run, 200, batch);
    }
    let best = &report["in_process_best"];
    assert!(["onnx", "torchscript"].contains(&best["bridge"].as_str().unwrap()));

    // Both measures: the served run is given as a fraction of the in-process best,
    // the table marks the fastest bridge, and the plot has a line per measure.
    let plot = tempfile::tempdir().unwrap();
    let svg = plot.path().join("bench.svg");
    let out = bench(
        &format!(
            "--model mlp --url {} --protocol http-binary --bridges onnx,torchscript \
             --requests 100",
            server.url()
        ),
        &[("--model-dir", &dir), ("--plot", &svg)],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for needle in [
        "in process: mlp",
        "← fastest",
        "in-process limit:",
        "served: mlp",
        "% of in-process",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for line in [
        "http-binary, batch 1",
        "onnx in process, batch 1",
        "<polyline",
    ] {
        assert!(svg.contains(line), "missing {line:?} in:\n{svg}");
    }
}

#[test]
fn an_in_process_run_with_errors_is_not_the_limit() {
    // A queue of one request: one caller is served, eight callers are mostly refused
    // (overloaded) at once, and their quick failures must not make the faster run.
    let repo = tempfile::tempdir().unwrap();
    let mlp = repo.path().join("mlp");
    copy_dir(&model_dir("mlp"), &mlp);
    let config = std::fs::read_to_string(mlp.join("config.toml")).unwrap();
    let config = config.replace("backend = \"torchscript\"", "backend = \"onnx\"")
        + "\n[batching]\nmax_queue_delay_us = 20000\nmax_queue_size = 1\n";
    std::fs::write(mlp.join("config.toml"), config).unwrap();
    let out = bench(
        "--bridges onnx --requests 300 --concurrency 1,8",
        &[("--model-dir", &mlp)],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("runs with errors are not ranked (overloaded: more callers than"),
        "{shown}"
    );
    assert!(
        shown.contains("in-process limit: onnx at batch 1 with 1 thread(s)"),
        "{shown}"
    );
}

#[test]
fn names_what_is_wrong() {
    let shows = |out: &Output, needle: &str| {
        assert_ne!(out.status.code(), Some(0), "{}", text(out));
        assert!(
            text(out).contains(needle),
            "missing {needle:?} in:\n{}",
            text(out)
        );
    };
    let nobody = format!("127.0.0.1:{}", free_port());
    let out = bench(&format!("--model mlp --url {nobody} --requests 5"), &[]);
    shows(
        &out,
        &format!("cannot connect to {nobody}: connection refused"),
    );
    let out = bench(
        &format!("--model mlp --protocol grpc --grpc-url {nobody}"),
        &[],
    );
    shows(
        &out,
        &format!("cannot connect to {nobody}: connection refused (gRPC, --grpc-url)"),
    );

    // Takes connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let out = bench(
        &format!("--model mlp --url {addr} --requests 3 --request-timeout 1s"),
        &[],
    );
    shows(&out, "did not answer the model metadata request within 1s");

    let server = Server::start();
    let url = server.url();
    // An unreachable endpoint of a later protocol is found before any run: the HTTP
    // run's 500 requests are never sent (only its one probe is).
    let out = bench(
        &format!(
            "--model mlp --url {url} --grpc-url {nobody} --protocol http-json,grpc \
             --requests 500 --warmup-requests 0"
        ),
        &[],
    );
    shows(
        &out,
        &format!("cannot connect to {nobody}: connection refused"),
    );
    let stats: Value = serde_json::from_str(&get(server.http, "/v2/models/mlp/stats")).unwrap();
    let answered = &stats["model_stats"][0]["inference_stats"]["success"]["count"];
    assert!(answered.as_u64().unwrap() <= 1, "{stats}");
    let out = bench(&format!("--model nope --url {url} --requests 5"), &[]);
    shows(
        &out,
        "answered 404 Not Found to GET /v2/models/nope: unknown model `nope`",
    );
    let out = bench(
        &format!("--model mlp --url {url} --batch 9 --requests 5"),
        &[],
    );
    shows(&out, "the batch size must be 1..=8");
    shows(
        &bench("--bridges onnx", &[]),
        "--bridges needs the model's directory",
    );
    shows(&bench("--model mlp --duration soon", &[]), "not a duration");
    shows(
        &bench("--model mlp --concurrency 0", &[]),
        "--concurrency must be at least 1",
    );
}

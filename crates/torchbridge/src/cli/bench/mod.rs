//! `torchbridge bench`: how fast does a model serve, and how close is that to the
//! model's own speed?
//!
//! Two measures, alone or together:
//! - **served**: a load generator drives any KServe v2 server (torchbridge, Triton, …)
//!   over HTTP with JSON tensors (`http-json`), HTTP with the binary tensor extension
//!   (`http-binary`) or gRPC (`grpc`);
//! - **in process**: the model runs through each requested bridge with no server at all
//!   (`--bridges`), which is the limit a server can approach.
//!
//! It is built to measure the server, not itself. On a small machine the generator and
//! the server share the cores, so every cycle the generator spends is taken from the
//! server: the request is **encoded once** before a run (a JSON body, a binary body,
//! a framed protobuf message) and each call sends that same buffer (a reference count,
//! no copy, no serialisation); replies are read and dropped (only a probe reply is
//! parsed, to check that the server answers with the model's outputs, so a server
//! answering 200 with garbage is caught; gRPC replies are otherwise read for their
//! `grpc-status` alone). Each client is a worker in a **closed loop** (it sends its
//! next request when the last one is answered, as a real caller does) on **its own
//! keep-alive connection** (HTTP/1.1, or HTTP/2 for gRPC), so the concurrency is
//! exactly the number of requests in flight and no connection is a shared queue; the
//! runtime has one thread unless `--client-threads` says otherwise. Latencies go into
//! an HDR histogram per worker (merged at the end); the bench is the measure, and the
//! tests never assert on a time.
//!
//! `--json` prints one document instead of tables:
//! `{"model", "url", "grpc_url", "server": [run…], "in_process": [run…], "in_process_best"}`.
//! A run is `{"protocol" (server runs) | "bridge" (in-process runs), "batch",
//! "concurrency", "seconds", "requests", "errors", "errors_by_kind": {kind: count},
//! "rows", "requests_per_s", "rows_per_s", "latency_ms": {"p50", "p90", "p99", "max",
//! "mean"}}`, and server runs add `"fraction_of_in_process"` (rows/s over the best
//! in-process rows/s) when both measures ran. `requests` counts every answered request,
//! failed ones included; rates and `rows` count the successful ones. Error kinds read
//! `HTTP 429`, `gRPC RESOURCE_EXHAUSTED`, `transport: …`, `timeout`.
//! `in_process_best` is `{"bridge", "batch", "concurrency", "rows_per_s"}` or null.
//! A run with failures the server answered adds `"error_latency_ms"` (same fields as
//! `latency_ms`: how fast a 429 comes back). An open-loop run (`--rate`, see
//! [`open_loop`]) adds `"offered_per_s"` and `"generator_lag_ms"`, and its
//! `concurrency` is the most requests that were in flight at once.

mod args;
mod client;
mod codec;
mod in_process;
mod load;
mod metadata;
mod open_loop;
mod plot;
mod report;
mod server;

use std::process::ExitCode;

use anyhow::{Context, bail};
use torchbridge::random::Rng;
use torchbridge::{ModelMetadata, Tensor};

use super::read_inputs;
pub use args::BenchArgs;
use args::Plan;
use report::Report;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::try_from(args)?;
    let mut report = Report::new(&plan);
    // The server's endpoints are checked (every request answered once) before anything
    // is measured, in process included.
    let served = match &plan.server {
        Some(target) => {
            let runtime = runtime(plan.client_threads)?;
            let prepared = runtime.block_on(server::prepare_all(&plan, target))?;
            report.model = target.model.clone();
            Some((runtime, prepared))
        }
        None => None,
    };
    if let Some(in_process) = &plan.in_process {
        report.in_process = in_process::run(&plan, in_process)?;
    }
    if let Some((runtime, prepared)) = served {
        report.server = runtime.block_on(server::run(&plan, prepared))?;
    }
    report.finish();
    if plan.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print(&plan);
    }
    if let Some(path) = &plan.plot {
        std::fs::write(path, plot::svg(&report))
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
        if !plan.json {
            println!("plot: {}", path.display());
        }
    }
    // A run in which no request succeeded measured nothing: say so in the exit status.
    let failed: Vec<String> = report
        .server
        .iter()
        .filter(|r| r.latency_ms.is_none())
        .map(|r| {
            format!(
                "{} at batch {} with {} clients",
                r.name(),
                r.batch,
                r.concurrency
            )
        })
        .collect();
    if !failed.is_empty() {
        eprintln!("no request succeeded in: {}", failed.join("; "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs of one request and its rows: `--input` files, or random tensors of
/// `batch` rows (the same for every bridge and protocol: one seed).
fn workload(
    plan: &Plan,
    meta: &ModelMetadata,
    batch: Option<usize>,
) -> anyhow::Result<(Vec<Tensor>, usize)> {
    let tensors = match batch {
        None => read_inputs(&plan.inputs, meta)?,
        Some(rows) => {
            if meta.max_batch_size == 0 && rows > 1 {
                bail!(
                    "--batch {rows}: model `{}` has no batch dimension (max_batch_size 0); \
                     use --batch 1",
                    meta.name
                );
            }
            let mut rng = Rng::new(plan.seed);
            torchbridge::random::inputs(meta, rows, plan.variable_dim, &mut rng)?
        }
    };
    let prepared = meta.prepare(tensors).with_context(|| match batch {
        Some(rows) => format!("--batch {rows}"),
        None => "--input".into(),
    })?;
    Ok((prepared.inputs, prepared.rows))
}

/// The generator's runtime: one thread by default, leaving the other cores to the server.
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

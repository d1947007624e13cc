//! The served measure: read the model's metadata from the server, encode the request
//! once per protocol and batch size, check one probe reply, then one closed-loop run per
//! concurrency (or one open-loop run per `--rate`, in [`open_loop`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::sync::{Barrier, watch};
use torchbridge::{ModelMetadata, Tensor};
use torchbridge_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;

use super::args::{Plan, Protocol, Target};
use super::client::{Call, Conn, http_connect, http_send};
use super::codec;
use super::load::{Counters, Measured, Progress, Tally};
use super::metadata::{self, error_text, grpc_error};
use super::open_loop;
use super::report::{Run, Subject};

/// Every request a bench will send, encoded and answered once by the server: made
/// before anything is measured, so an endpoint that cannot be reached (a wrong
/// `--grpc-url`) is reported before minutes of runs, not after them.
pub struct Prepared {
    /// (protocol, rows, the request) in the order they run.
    calls: Vec<(Protocol, usize, Arc<Call>)>,
}

pub async fn prepare_all(plan: &Plan, target: &Target) -> anyhow::Result<Prepared> {
    // A server that takes connections but never answers must not hold the bench forever.
    let meta = tokio::time::timeout(plan.request_timeout, metadata::fetch(target))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the server did not answer the model metadata request within {:?} \
                 (--request-timeout; HTTP {}, gRPC {})",
                plan.request_timeout,
                target.http,
                target.grpc
            )
        })??;
    let prefix = target.path();
    let mut calls = Vec::new();
    for &batch in &plan.batches {
        let (inputs, rows) = super::workload(plan, &meta, batch)?;
        for &protocol in &target.protocols {
            let call = prepare(protocol, target, &prefix, &meta, &inputs, rows).await?;
            calls.push((protocol, rows, call));
        }
    }
    Ok(Prepared { calls })
}

pub async fn run(plan: &Plan, prepared: Prepared) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (protocol, rows, call) in prepared.calls {
        for &rate in &plan.rates {
            let label = format!("{} · batch {rows} · {rate}/s", protocol.as_str());
            let measured = open_loop::drive(call.clone(), rate, plan, label).await?;
            let peak = measured.open_loop.map_or(0, |o| o.peak_in_flight);
            let subject = Subject::Protocol(protocol);
            runs.push(Run::new(subject, rows, peak, &measured));
        }
        if !plan.rates.is_empty() {
            continue;
        }
        for &concurrency in &plan.concurrency {
            let mut conns = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                conns.push(Conn::open(call.clone()).await?);
            }
            let label = format!(
                "{} · batch {rows} · {concurrency} clients",
                protocol.as_str()
            );
            let measured = drive(conns, plan, label).await;
            runs.push(Run::new(
                Subject::Protocol(protocol),
                rows,
                concurrency,
                &measured,
            ));
        }
    }
    Ok(runs)
}

/// Encodes the request for `protocol` and checks the server's answer to it.
async fn prepare(
    protocol: Protocol,
    target: &Target,
    prefix: &str,
    meta: &ModelMetadata,
    inputs: &[Tensor],
    rows: usize,
) -> anyhow::Result<Arc<Call>> {
    let garbage = |why: String| {
        anyhow!(
            "the server's reply over {} does not hold the model's outputs: {why}",
            protocol.as_str()
        )
    };
    if protocol == Protocol::Grpc {
        let request = codec::grpc_request(&target.model, target.version, inputs);
        let channel = target.grpc_channel().await?;
        let reply = GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .model_infer(target.grpc_request(request.clone()))
            .await
            .map_err(|s| grpc_error(target, "ModelInfer", &s))?;
        codec::check_grpc(reply.get_ref(), meta, rows).map_err(garbage)?;
        return Ok(Arc::new(Call::grpc(
            &target.grpc,
            codec::grpc_frame(&request),
            &target.headers,
        )?));
    }
    let body = match protocol {
        Protocol::HttpBinary => codec::http_binary(inputs)?,
        _ => codec::http_json(inputs)?,
    };
    let call = Call::http(
        &target.http,
        &format!("{prefix}/infer"),
        body,
        &target.headers,
    )?;
    let mut sender = http_connect(&target.http).await?;
    let reply = http_send(&mut sender, call.request()).await?;
    let status = reply.status();
    let header_length = reply
        .headers()
        .get("inference-header-content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = reply.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!(
            "the server at {} answered {status} to POST {prefix}/infer: {}",
            target.http,
            error_text(&body)
        );
    }
    codec::check_http(&body, header_length, meta, rows).map_err(garbage)?;
    Ok(Arc::new(call))
}

/// One closed-loop run over `conns`; the clock starts when every worker has warmed up.
async fn drive(conns: Vec<Conn>, plan: &Plan, label: String) -> Measured {
    let counters = Counters::new(plan.warmup, plan.stop);
    let barrier = Arc::new(Barrier::new(conns.len() + 1));
    let (go, _) = watch::channel(None);
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let (counters, barrier, go) = (counters.clone(), barrier.clone(), go.subscribe());
            tokio::spawn(worker(conn, counters, barrier, go, plan.request_timeout))
        })
        .collect();
    barrier.wait().await;
    let start = Instant::now();
    go.send_replace(Some(start));
    let _progress = Progress::start(plan.progress, label, counters);
    let mut tallies = Vec::with_capacity(workers.len());
    for w in workers {
        tallies.push(w.await.expect("a bench worker panicked"));
    }
    Measured::new(start, tallies)
}

async fn worker(
    mut conn: Conn,
    counters: Arc<Counters>,
    barrier: Arc<Barrier>,
    mut go: watch::Receiver<Option<Instant>>,
    timeout: Duration,
) -> Tally {
    while counters.warm_up_one() {
        match tokio::time::timeout(timeout, conn.call()).await {
            Ok(Ok(())) => {}
            Ok(Err(f)) if !f.reconnect => {}
            _ => conn.reconnect(),
        }
    }
    barrier.wait().await;
    let start = go
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|s| *s)
        .unwrap_or_else(Instant::now);
    let mut tally = Tally::default();
    while counters.next(start) {
        let sent = Instant::now();
        match tokio::time::timeout(timeout, conn.call()).await {
            Ok(Ok(())) => tally.ok(sent.elapsed()),
            Ok(Err(f)) if f.reconnect => {
                conn.reconnect();
                tally.error(f.kind);
            }
            Ok(Err(f)) => tally.answered_error(f.kind, sent.elapsed()),
            Err(_) => {
                conn.reconnect();
                tally.error("timeout".into());
            }
        }
        counters.done.fetch_add(1, Relaxed);
    }
    tally
}

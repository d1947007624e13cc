//! The open loop (`--rate`): requests leave on a fixed schedule whether or not earlier
//! ones were answered, as the traffic of many independent callers does. A closed loop
//! slows down with the server and so can never overload it; this one keeps sending,
//! which is how admission control (429 / RESOURCE_EXHAUSTED) and latency under
//! overload are measured.
//!
//! Request `i` is due at `start + i / rate`. The sender sleeps until the next due time
//! (tokio's timer has millisecond resolution, so at high rates requests leave in small
//! bursts each millisecond, on average at the rate), takes an idle connection from a
//! pool, or opens a new one up to `--max-in-flight`, and spawns the call. A request due
//! while every connection is busy is not sent and counts as the error `generator: …`.
//! Latency counts from the due time, not the send time, so a generator that falls behind
//! cannot hide the server's delay (no coordinated omission); how far it fell behind is
//! reported as `max_lag_ms`. When the schedule ends, requests in flight are awaited.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::args::{Plan, Stop};
use super::client::{Call, Conn};
use super::load::{Counters, Measured, OpenLoop, Progress, Tally};

/// Connections opened and warmed before the schedule starts.
const PREOPENED: usize = 16;

/// What the calls of one run share.
struct Shared {
    idle: Mutex<Vec<Conn>>,
    tally: Mutex<Tally>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    counters: Arc<Counters>,
}

/// One open-loop run of `rate` requests per second.
pub async fn drive(
    call: Arc<Call>,
    rate: f64,
    plan: &Plan,
    label: String,
) -> anyhow::Result<Measured> {
    let counters = Counters::new(plan.warmup, plan.stop);
    let mut idle = Vec::new();
    for _ in 0..PREOPENED.min(plan.max_in_flight) {
        idle.push(Conn::open(call.clone()).await?);
    }
    // Untimed warm-up, spread over the open connections, one call at a time.
    let mut next = 0;
    while counters.warm_up_one() {
        let conn = &mut idle[next % PREOPENED.min(plan.max_in_flight)];
        match tokio::time::timeout(plan.request_timeout, conn.call()).await {
            Ok(Ok(())) => {}
            Ok(Err(f)) if !f.reconnect => {}
            _ => conn.reconnect(),
        }
        next += 1;
    }
    let opened = idle.len();
    let shared = Arc::new(Shared {
        idle: Mutex::new(idle),
        tally: Mutex::new(Tally::default()),
        in_flight: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        counters: counters.clone(),
    });
    let mut opened = opened;
    let mut calls = JoinSet::new();
    let mut max_lag = Duration::ZERO;
    let start = Instant::now();
    let _progress = Progress::start(plan.progress, label, counters.clone());
    for i in 0u64.. {
        let offset = Duration::from_secs_f64(i as f64 / rate);
        match plan.stop {
            Stop::After(d) if offset >= d => break,
            Stop::Requests(n) if i >= n => break,
            _ => {}
        }
        let due = start + offset;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else {
            max_lag = max_lag.max(now - due);
        }
        let conn = shared.idle.lock().expect("pool lock").pop();
        let conn = match conn {
            Some(conn) => conn,
            None if opened < plan.max_in_flight => {
                opened += 1;
                Conn::lazy(call.clone())
            }
            None => {
                let why = format!(
                    "generator: all {} connections busy (--max-in-flight)",
                    plan.max_in_flight
                );
                shared.tally.lock().expect("tally lock").error(why);
                counters.done.fetch_add(1, Relaxed);
                continue;
            }
        };
        calls.spawn(one_call(conn, due, shared.clone(), plan.request_timeout));
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    let mut measured = Measured::new(start, []);
    measured.tally = std::mem::take(&mut *shared.tally.lock().expect("tally lock"));
    measured.open_loop = Some(OpenLoop {
        rate,
        peak_in_flight: shared.peak.load(Relaxed),
        max_lag_ms: max_lag.as_secs_f64() * 1e3,
    });
    Ok(measured)
}

/// Sends one request that was due at `due` and puts the connection back.
async fn one_call(mut conn: Conn, due: Instant, shared: Arc<Shared>, timeout: Duration) {
    let now = shared.in_flight.fetch_add(1, Relaxed) + 1;
    shared.peak.fetch_max(now, Relaxed);
    let result = tokio::time::timeout(timeout, conn.call()).await;
    let elapsed = due.elapsed();
    shared.in_flight.fetch_sub(1, Relaxed);
    {
        let mut tally = shared.tally.lock().expect("tally lock");
        match result {
            Ok(Ok(())) => tally.ok(elapsed),
            Ok(Err(f)) if f.reconnect => {
                conn.reconnect();
                tally.error(f.kind);
            }
            Ok(Err(f)) => tally.answered_error(f.kind, elapsed),
            Err(_) => {
                conn.reconnect();
                tally.error("timeout".into());
            }
        }
    }
    shared.counters.done.fetch_add(1, Relaxed);
    shared.idle.lock().expect("pool lock").push(conn);
}

//! No leaks: 100k requests through each bridge, and 100 load/unload cycles of a model
//! through the registry, leave resident memory flat.
//!
//! Resident memory is the whole process's, and the other tests of this binary run in
//! parallel threads, loading models of their own; so each measure runs in a child
//! process of its own: this binary again, running only [`rss_child`]. The child warms
//! up (so allocator arenas, torch's caches and lazily touched pages settle), reads its
//! resident size, does the work, reads it again, prints both and fails if memory grew
//! by more than the allowance:
//!
//! `allowed growth = min(5% of the warm size, 8 MiB)`
//!
//! 8 MiB is the slack for what an allocator does on its own (a heap trimmed or grown by
//! a few arenas' worth; our runs measure well under it), and it is smaller than what a
//! real leak of 100 bytes per request costs over 100k requests (9.5 MiB), so such a
//! leak fails; a leak of a fraction of that per request is hidden in the noise.
//! Calls run on several threads so the 100k fit in a debug build's test run.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use torchbridge::{BackendKind, ModelDir, Registry, ServedModel, Tensor};

use crate::common::{copy_dir, model_dir};

const REQUESTS: usize = 100_000;
const WARMUP_REQUESTS: usize = 10_000;
const THREADS: usize = 4;
const CYCLES: usize = 100;
const WARMUP_CYCLES: usize = 10;
const SLACK_KIB: u64 = 8 << 10;

/// Resident set size of this process, in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `what` in a child process (see the module doc) and returns its report line.
fn in_child(what: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["leaks::rss_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("TORCHBRIDGE_LEAK_CHILD", what)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}:\n{text}");
    // The child's line may follow the test harness's own text on the same line.
    let report = text
        .lines()
        .find_map(|l| l.find("rss ").map(|at| &l[at..]))
        .unwrap_or("");
    assert!(
        !report.is_empty(),
        "{what}: the child printed no figures:\n{text}"
    );
    println!("{report}");
    report.to_string()
}

/// Fails unless memory stayed within the allowance; prints the figures either way.
fn check_flat(what: &str, warm: u64, end: u64, work: &str, seconds: f64) {
    let allowed = (warm / 20).min(SLACK_KIB);
    let grown = end.saturating_sub(warm);
    println!(
        "rss {what}: warm {warm} KiB, end {end} KiB, grew {grown} KiB (allowed {allowed} KiB) \
         over {work} in {seconds:.1} s"
    );
    assert!(
        grown <= allowed,
        "{what}: resident memory grew by {grown} KiB over {work} ({warm} → {end} KiB), more \
         than the {allowed} KiB allowed"
    );
}

/// Calls `served` `count` times with a one-row `INPUT0`, on [`THREADS`] threads.
fn hammer(served: &ServedModel, count: usize) {
    let x = Tensor::from_slice("INPUT0", vec![1, 16], &[0.25f32; 16]).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (served, x) = (served, x.clone());
            s.spawn(move || {
                for _ in (t..count).step_by(THREADS) {
                    let batch = served.metadata().prepare(vec![x.clone()]).unwrap();
                    let y = served.run_blocking(batch).unwrap();
                    assert_eq!(y[0].shape, vec![1, 4]);
                }
            });
        }
    });
}

fn requests_through(bridge: BackendKind) {
    let dir = ModelDir::open(&model_dir("mlp"), None).unwrap();
    let served = torchbridge::start_model(&dir, bridge).unwrap();
    hammer(&served, WARMUP_REQUESTS);
    let warm = rss_kib();
    let began = Instant::now();
    hammer(&served, REQUESTS);
    let seconds = began.elapsed().as_secs_f64();
    let what = format!("{bridge}");
    check_flat(&what, warm, rss_kib(), "100000 requests", seconds);
}

fn load_unload_cycles(bridge: BackendKind) {
    let repo = tempfile::tempdir().unwrap();
    copy_dir(&model_dir("mlp"), &repo.path().join("mlp"));
    let registry = Registry::new(
        repo.path(),
        Arc::new(move |dir: &ModelDir| torchbridge::start_model(dir, bridge)),
    );
    let x = Tensor::from_slice("INPUT0", vec![1, 16], &[0.5f32; 16]).unwrap();
    let cycle = || {
        registry.load("mlp").unwrap();
        let served = registry.get("mlp", None).unwrap();
        let batch = served.metadata().prepare(vec![x.clone()]).unwrap();
        assert_eq!(served.run_blocking(batch).unwrap()[0].shape, vec![1, 4]);
        drop(served);
        registry.unload("mlp").unwrap();
    };
    for _ in 0..WARMUP_CYCLES {
        cycle();
    }
    settle();
    let warm = rss_kib();
    let began = Instant::now();
    for _ in 0..CYCLES {
        cycle();
    }
    settle();
    let what = format!("{bridge} load/unload");
    check_flat(
        &what,
        warm,
        rss_kib(),
        "100 cycles",
        began.elapsed().as_secs_f64(),
    );
}

/// An unloaded pool's threads are joined on a thread of their own; give them a moment
/// to exit (and their stacks to be unmapped) before reading the resident size.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// The measure a parent test asked for (`TORCHBRIDGE_LEAK_CHILD=<bridge>[-cycles]`);
/// does nothing when run any other way.
#[test]
#[ignore = "run by the other tests of this module, each in a process of its own"]
fn rss_child() {
    let Ok(what) = std::env::var("TORCHBRIDGE_LEAK_CHILD") else {
        return;
    };
    let (bridge, cycles) = match what.strip_suffix("-cycles") {
        Some(bridge) => (bridge, true),
        None => (what.as_str(), false),
    };
    let bridge: BackendKind = bridge.parse().unwrap();
    if cycles {
        load_unload_cycles(bridge);
    } else {
        requests_through(bridge);
    }
}

fn assert_fixture_ready() {
    // Generate the fixtures once here, so children do not race to write them.
    assert!(Path::new(&model_dir("mlp")).join("config.toml").exists());
}

#[test]
#[cfg(feature = "python")]
fn python_requests_leave_memory_flat() {
    assert_fixture_ready();
    in_child("python");
}

#[test]
#[cfg(feature = "torchscript")]
fn torchscript_requests_leave_memory_flat() {
    assert_fixture_ready();
    in_child("torchscript");
}

#[test]
#[cfg(feature = "onnx")]
fn onnx_requests_leave_memory_flat() {
    assert_fixture_ready();
    in_child("onnx");
}

#[test]
#[cfg(feature = "tract")]
fn tract_requests_leave_memory_flat() {
    assert_fixture_ready();
    in_child("tract");
}

#[test]
#[cfg(feature = "onnx")]
fn onnx_load_unload_cycles_leave_memory_flat() {
    assert_fixture_ready();
    in_child("onnx-cycles");
}

#[test]
#[cfg(feature = "python")]
fn python_load_unload_cycles_leave_memory_flat() {
    assert_fixture_ready();
    in_child("python-cycles");
}

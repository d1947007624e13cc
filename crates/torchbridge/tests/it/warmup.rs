//! `[warmup]`: made-up calls run before a model is handed out; a failing one fails the load.
#![cfg(all(feature = "python", feature = "torchscript"))]

use std::sync::atomic::Ordering::Relaxed;

use torchbridge::{Model, Tensor};

use crate::common::{copy_dir, model_dir};

/// A copy of fixture `name` with `extra` appended to its config.toml.
fn with_config(name: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&model_dir(name), dir.path());
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n{extra}\n")).unwrap();
    dir
}

/// A handler that logs, per call, which instance ran it and with how many rows.
const LOGGING_HANDLER: &str = r#"
import os
class Model:
    def __init__(self, model_dir, config):
        self.log = os.path.join(model_dir, "..", "calls.log")
    def predict(self, inputs):
        x = inputs["X"]
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}:{id(self)} {x.shape[0]}\n")
        return {"Y": x}
"#;

/// Per instance (keyed by its process and handler object), the row counts of its calls.
fn calls_by_instance(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u32>> {
    let log = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    let mut calls = std::collections::BTreeMap::<String, Vec<u32>>::new();
    for line in log.lines() {
        let (instance, rows) = line.split_once(' ').unwrap();
        calls
            .entry(instance.into())
            .or_default()
            .push(rows.parse().unwrap());
    }
    calls
}

#[test]
fn every_instance_runs_the_warmup_calls_before_the_model_is_returned_uncounted() {
    let dir = with_config("py_error", "[warmup]\nbatch_sizes = [1, 3]\ncalls = 2");
    std::fs::write(dir.path().join("1/model.py"), LOGGING_HANDLER).unwrap();
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("instances = 1", "instances = 2")).unwrap();

    let model = Model::load(dir.path()).unwrap();
    let calls = calls_by_instance(dir.path());
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls.values().all(|rows| rows == &[1, 1, 3, 3]),
        "{calls:?}"
    );
    let stats = model.stats();
    assert_eq!(stats.execution_count.load(Relaxed), 0);
    assert_eq!(stats.inference_count.load(Relaxed), 0);
}

/// The pid of this process's worker child serving the model in `dir`.
fn worker_of(dir: &std::path::Path) -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (ppid == me && cmdline.contains(dir.to_str()?)).then_some(pid)
        })
}

#[test]
fn a_worker_process_killed_while_idle_is_replaced_and_the_new_one_warms_up_first() {
    let dir = with_config(
        "py_error",
        "isolation = \"process\"\n[warmup]\nbatch_sizes = [2]\ncalls = 1",
    );
    // `isolation` is a top-level key: it must come before the tables.
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let (top, tables) = text.split_once("[[input]]").unwrap();
    let (tables, extra) = tables.split_once("isolation").unwrap();
    let (isolation, warmup) = extra.split_once('\n').unwrap();
    std::fs::write(
        &config,
        format!("{top}isolation{isolation}\n[[input]]{tables}{warmup}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("1/model.py"), LOGGING_HANDLER).unwrap();

    let model = Model::load(dir.path()).unwrap();
    let first = calls_by_instance(dir.path());
    assert_eq!(first.values().collect::<Vec<_>>(), [&[2]], "{first:?}");
    let worker = worker_of(dir.path()).expect("the worker process");
    let killed = std::process::Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status();
    assert!(killed.unwrap().success());
    // Dead, every thread of it (so its server can reap it), before the next call.
    // SAFETY: waitid on our own child with WNOWAIT only reads its state.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let exited = libc::WEXITED | libc::WNOWAIT;
        assert_eq!(libc::waitid(libc::P_PID, worker, &mut info, exited), 0);
    }

    // The next call finds the worker gone, starts another, which warms up before it
    // runs the call.
    let x = Tensor::from_slice("X", vec![1, 2], &[0.5f32, 0.25]).unwrap();
    let y = model.infer(vec![x]).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), [0.5, 0.25]);
    let calls = calls_by_instance(dir.path());
    assert_eq!(calls.len(), 2, "{calls:?}");
    let replacement = calls.keys().find(|k| !first.contains_key(*k)).unwrap();
    assert_eq!(calls[replacement], [2, 1], "{calls:?}");
}

#[test]
fn a_failing_warmup_fails_the_load_and_says_so() {
    // py_error raises on negative inputs, and made-up floats lie in [-1, 1).
    let dir = with_config("py_error", "[warmup]\nbatch_sizes = [4]");
    let err = Model::load(dir.path()).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("warm-up ([warmup] in config.toml) failed") && err.contains("negative input"),
        "{err}"
    );
    let dir = with_config("mlp", "[warmup]\nbatch_sizes = [9]");
    let err = Model::load(dir.path()).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("`warmup.batch_sizes` holds 9, outside 1..=8"),
        "{err}"
    );
}

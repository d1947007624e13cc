//! `[warmup]`: made-up calls run before a model is handed out; a failing one fails the load.
#![cfg(all(feature = "python", feature = "torchscript"))]

use std::sync::atomic::Ordering::Relaxed;

use torchbridge::{BackendKind, Model};

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

#[test]
fn warmup_calls_run_before_the_model_is_returned() {
    let dir = with_config("mlp", "[warmup]\nbatch_sizes = [1, 8]\ncalls = 2");
    let model = Model::load_with(dir.path(), BackendKind::Torchscript).unwrap();
    let stats = model.stats();
    assert_eq!(stats.execution_count.load(Relaxed), 4);
    assert_eq!(stats.inference_count.load(Relaxed), 2 + 16);
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

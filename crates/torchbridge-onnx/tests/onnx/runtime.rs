//! Finding and starting ONNX Runtime. A process starts it once, so the failure cases run
//! in a fresh copy of this test binary with `ORT_DYLIB_PATH` pointing somewhere bad.

use std::process::Command;

use crate::fixtures::{fixtures, model_path};

#[test]
fn the_runtime_is_the_venv_wheels() {
    let versions = std::fs::read_to_string(fixtures().join("versions.json")).unwrap();
    let versions: serde_json::Value = serde_json::from_str(&versions).unwrap();
    let version = torchbridge_onnx::runtime_version().unwrap();
    assert_eq!(Some(version.as_str()), versions["onnxruntime"].as_str());
}

/// Set in the child process: what `ORT_DYLIB_PATH` points at, and a model to load.
const CHILD_MODEL: &str = "TORCHBRIDGE_ONNX_TEST_CHILD_MODEL";

/// Runs `child_with_a_bad_runtime` alone in a new process with `ORT_DYLIB_PATH` set.
fn run_child(dylib: &std::path::Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runtime::child_with_a_bad_runtime",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ORT_DYLIB_PATH", dylib)
        .env(CHILD_MODEL, model_path("mlp"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
    text
}

#[test]
fn ort_dylib_path_to_a_file_that_is_not_a_library_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"definitely not ELF").unwrap();
    let text = run_child(&fake);
    assert!(
        text.contains(&format!("cannot load `{}` as ONNX Runtime", fake.display())),
        "{text}"
    );
}

#[test]
fn ort_dylib_path_to_a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere/libonnxruntime.so");
    let text = run_child(&missing);
    assert!(
        text.contains(&format!(
            "ORT_DYLIB_PATH is `{}`, which is not a file",
            missing.display()
        )),
        "{text}"
    );
}

/// Does nothing in a normal run; in the child, both entry points must fail without a
/// panic, say how to fix it, and fail the same way a second time.
#[test]
fn child_with_a_bad_runtime() {
    let Some(model) = std::env::var_os(CHILD_MODEL) else {
        return;
    };
    let e = torchbridge_onnx::runtime_version().unwrap_err().to_string();
    println!("runtime_version: {e}");
    assert!(e.contains("ORT_DYLIB_PATH"), "{e}");
    let ctx = torchbridge_core::LoadContext {
        model: "mlp".into(),
        version: 1,
        config: torchbridge_core::ModelConfig::from_toml("backend = \"onnx\"").unwrap(),
        version_dir: std::path::PathBuf::from(&model)
            .parent()
            .unwrap()
            .to_path_buf(),
        form: torchbridge_core::ModelForm::Onnx(model.into()),
        instance: 0,
    };
    for _ in 0..2 {
        let e = torchbridge_onnx::load(&ctx)
            .err()
            .expect("the load must fail")
            .to_string();
        println!("load: {e}");
        assert!(
            e.starts_with("model `mlp` failed to load through the onnx bridge: "),
            "{e}"
        );
    }
}

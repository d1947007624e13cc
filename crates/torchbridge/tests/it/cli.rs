//! The `torchbridge` binary's `infer` and `check` verbs, run as a user runs them.

use std::process::{Command, Output};

use crate::common::{copy_dir, model_dir, workspace};

fn torchbridge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_torchbridge"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn check_finds_the_forms_agree_and_names_the_fastest() {
    let dir = model_dir("multi_io");
    let out = torchbridge(&[
        "check",
        dir.to_str().unwrap(),
        "--batch-sizes",
        "1,4",
        "--iterations",
        "3",
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for needle in [
        "reference: python",
        "torchscript  SCALED",
        "onnx         IDS_PLUS",
        "fastest:",
        "verdict: the forms agree",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
}

#[test]
fn check_says_which_batch_sizes_it_cannot_run_as_asked() {
    let dir = model_dir("mlp");
    let dir = dir.to_str().unwrap();
    let out = torchbridge(&[
        "check",
        dir,
        "--bridges",
        "onnx",
        "--batch-sizes",
        "1,100",
        "--iterations",
        "1",
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("note: batch 100 is over `mlp`'s max_batch_size; checking batch 8"),
        "{shown}"
    );
    let out = torchbridge(&["check", dir, "--batch-sizes", "0,4"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("--batch-sizes") && shown.contains("0"),
        "{shown}"
    );
    // Given inputs have their own rows: batch sizes would be ignored.
    let input = format!(
        "INPUT0={}",
        model_dir("mlp").join("ref/inputs/INPUT0.npy").display()
    );
    let out = torchbridge(&["check", dir, "--input", &input, "--batch-sizes", "1,8"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    // NaN compares false with everything: every output would "disagree".
    let out = torchbridge(&["check", dir, "--atol", "nan"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("must be a finite number ≥ 0, got \"nan\""));
}

#[test]
fn check_fails_when_a_form_disagrees() {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&model_dir("mlp"), copy.path());
    // A python handler that ignores its weights: it disagrees with the TorchScript file.
    let zeros = "import torch\n\nclass Model:\n    def __init__(self, model_dir, config):\n        pass\n\n    def predict(self, inputs):\n        return {\"OUTPUT0\": torch.zeros(inputs[\"INPUT0\"].shape[0], 4)}\n";
    std::fs::write(copy.path().join("1/model.py"), zeros).unwrap();
    let out = torchbridge(&[
        "check",
        copy.path().to_str().unwrap(),
        "--bridges",
        "python,torchscript",
        "--iterations",
        "1",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("DIFFERENT") && shown.contains("verdict: the forms DISAGREE"),
        "{shown}"
    );
}

#[test]
fn check_reports_a_failing_call_with_its_bridge_and_batch_and_compares_the_rest() {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&model_dir("mlp"), copy.path());
    // The TorchScript file's own network, but past 4 rows the handler raises.
    let picky = "import os, torch\n\nclass Model:\n    def __init__(self, model_dir, config):\n        self.net = torch.jit.load(os.path.join(model_dir, 'model.pt'))\n\n    def predict(self, inputs):\n        x = inputs['INPUT0']\n        if x.shape[0] > 4:\n            raise ValueError('at most 4 rows')\n        return {'OUTPUT0': self.net(x)}\n";
    std::fs::write(copy.path().join("1/model.py"), picky).unwrap();
    let out = torchbridge(&[
        "check",
        copy.path().to_str().unwrap(),
        "--bridges",
        "torchscript,python",
        "--batch-sizes",
        "1,8",
        "--iterations",
        "1",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    for needle in [
        "python: FAILED at batch 8:",
        "at most 4 rows",
        "python       OUTPUT0          batch 1",
        "verdict: 1 call(s) FAILED (above); what ran agrees",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
}

#[test]
fn check_compares_the_forms_that_load_and_fails_naming_the_one_that_does_not() {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&model_dir("mlp"), copy.path());
    std::fs::write(copy.path().join("1/model.onnx"), b"not an onnx file").unwrap();
    let dir = copy.path().to_str().unwrap();
    let out = torchbridge(&[
        "check",
        dir,
        "--bridges",
        "onnx,python,torchscript",
        "--iterations",
        "1",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    for needle in [
        "onnx: FAILED to load",
        "reference: python",
        "torchscript  OUTPUT0",
        "verdict: onnx FAILED to load (above); the 2 that loaded agree",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    let out = torchbridge(&[
        "check",
        dir,
        "--bridges",
        "torchscript",
        "--iterations",
        "1",
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("verdict: one form (torchscript), nothing compared"),
        "{shown}"
    );
    // Files the python bridge would load, but does not: said, not silently skipped.
    std::fs::write(copy.path().join("1/model.pt2"), b"").unwrap();
    let out = torchbridge(&["check", dir, "--bridges", "python", "--iterations", "1"]);
    let shown = text(&out);
    for needle in [
        "python       model.py",
        "note: model.pt2 is not compared: the python bridge loads model.py",
        "note: model.pt is not compared",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
}

#[test]
fn infer_reads_npy_inputs_and_saves_npy_outputs() {
    let dir = model_dir("mlp");
    let input = dir.join("ref/inputs/INPUT0.npy");
    let saved = tempfile::tempdir().unwrap();
    let arg = format!("INPUT0={}", input.display());
    let out = torchbridge(&[
        "infer",
        dir.to_str().unwrap(),
        "--bridge",
        "onnx",
        "--input",
        &arg,
        "--save",
        saved.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let got = torchbridge::npy::read(&saved.path().join("OUTPUT0.npy"), "OUTPUT0", None).unwrap();
    let want =
        torchbridge::npy::read(&dir.join("ref/outputs/OUTPUT0.npy"), "OUTPUT0", None).unwrap();
    let d = torchbridge::compare::compare(&got, &want, 1e-5, 1e-6).unwrap();
    assert_eq!(d.mismatched, 0, "{d:?}");
}

#[test]
fn infer_prints_integers_exactly() {
    // Through f64, 2^60 + 2 printed as 1152921504606846976.000000.
    let dir = model_dir("dtypes_INT64");
    let input = tempfile::tempdir().unwrap();
    let x = torchbridge::Tensor::from_slice("X", vec![1, 4], &[1i64 << 60, -3, 7, 0]).unwrap();
    let path = input.path().join("x.npy");
    torchbridge::npy::write(&path, &x).unwrap();
    let arg = format!("X={}", path.display());
    let out = torchbridge(&["infer", dir.to_str().unwrap(), "--input", &arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Y INT64 [1, 4] = [1152921504606846977, -2, 8, 1]"),
        "{}",
        text(&out)
    );
}

#[test]
fn infer_errors_name_what_is_wrong() {
    let dir = model_dir("mlp");
    let dir = dir.to_str().unwrap();
    let out = torchbridge(&["infer", dir, "--input", "NOPE=x.npy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("the model has no input `NOPE` (inputs: INPUT0)"),
        "{}",
        text(&out)
    );
    let out = torchbridge(&["infer", dir, "--bridge", "tensorflow", "--random"]);
    assert!(
        text(&out).contains("unknown bridge `tensorflow`"),
        "{}",
        text(&out)
    );
    let out = torchbridge(&[
        "infer",
        &workspace().join("nope").display().to_string(),
        "--random",
    ]);
    assert!(
        text(&out).contains("no such model directory"),
        "{}",
        text(&out)
    );
    let out = torchbridge(&["infer", dir, "--random", "--batch", "3"]);
    assert!(
        out.status.success() && text(&out).contains("OUTPUT0 FP32 [3, 4]"),
        "{}",
        text(&out)
    );
    // --batch shapes random inputs only, and only where the model has a batch dimension.
    let out = torchbridge(&["infer", dir, "--input", "INPUT0=x.npy", "--batch", "3"]);
    assert!(
        !out.status.success() && text(&out).contains("--batch shapes the inputs --random makes"),
        "{}",
        text(&out)
    );
    let no_batch = model_dir("no_batch");
    let out = torchbridge(&[
        "infer",
        no_batch.to_str().unwrap(),
        "--random",
        "--batch",
        "3",
    ]);
    assert!(
        text(&out).contains("model `no_batch` has no batch dimension (max_batch_size 0)"),
        "{}",
        text(&out)
    );
}

#[test]
fn serve_refuses_flags_that_could_not_work_before_starting() {
    let repo = tempfile::tempdir().unwrap();
    let repo = repo.path().to_str().unwrap();
    for (flag, value, says) in [
        ("--host", "myhost", "`myhost` is not an IP address"),
        ("--request-timeout-ms", "0", "0 is not in 1.."),
        (
            "--client-timeout-secs",
            "18446744073709551615",
            "is not in 1..=31536000",
        ),
        ("--model-load-threads", "0", "0 is not in 1.."),
        (
            "--grpc-port",
            "8000",
            "--http-port and --grpc-port are both 8000",
        ),
        (
            "--http-port",
            "tcp://10.96.0.12:8000",
            "looks like a Kubernetes service link",
        ),
        ("--trace-count", "5", "--trace-count needs --trace-file"),
    ] {
        let out = torchbridge(&["serve", "--model-repository", repo, flag, value]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {shown}");
        assert!(shown.contains(says), "{flag} {value}: {shown}");
    }
}

//! The `[tokenizer]` stage: strings in, and the bridge gets exactly the token ids that
//! transformers' own tokenizer gives (all-MiniLM-L6-v2's tokenizer.json).

use std::process::Command;

use torchbridge::{BackendKind, DataType, Model, Tensor};

use crate::common::{python, workspace};

#[test]
fn strings_are_tokenized_as_transformers_does_before_every_onnx_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(python())
        .arg(workspace().join("tests/fixtures/make_tokenized.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "make_tokenized.py failed");
    let text = std::fs::read_to_string(dir.path().join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sentences: Vec<&str> = expected["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let flat = |key: &str| -> Vec<i64> {
        let rows = expected[key].as_array().unwrap();
        rows.iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
            .collect()
    };
    let compiled = torchbridge::compiled_bridges();
    let bridges = [BackendKind::Tract, BackendKind::Onnx];
    for bridge in bridges.into_iter().filter(|b| compiled.contains(b)) {
        let model = Model::load_with(dir.path().join("echo"), bridge).unwrap();
        let meta = model.metadata();
        assert_eq!(meta.inputs.len(), 1, "{bridge}: {:?}", meta.inputs);
        assert_eq!(meta.inputs[0].name, "TEXT");
        assert_eq!(meta.inputs[0].datatype, DataType::Bytes);
        assert_eq!(meta.full_shape(&meta.inputs[0]), vec![-1, 1]);
        let n = sentences.len() as i64;
        let input = Tensor::from_strings("TEXT", vec![n, 1], &sentences).unwrap();
        let out = model.infer(vec![input]).unwrap();
        assert_eq!(
            out[0].to_vec::<i64>().unwrap(),
            flat("input_ids"),
            "{bridge}"
        );
        assert_eq!(
            out[1].to_vec::<i64>().unwrap(),
            flat("attention_mask"),
            "{bridge}"
        );
        assert_eq!(out[0].shape[0], n);
    }
    // `torchbridge infer` reads the strings from NumPy's own .npy of text (`<U`).
    let texts = dir.path().join("texts.npy");
    let status = Command::new(python())
        .args([
            "-c",
            "import json, sys, numpy as np; \
             s = json.load(open(sys.argv[2]))['sentences']; \
             np.save(sys.argv[1], np.array([[t] for t in s]))",
        ])
        .args([&texts, &dir.path().join("expected.json")])
        .status()
        .unwrap();
    assert!(status.success(), "np.save failed");
    let saved = dir.path().join("saved");
    let cli = |bridge: BackendKind| {
        Command::new(env!("CARGO_BIN_EXE_torchbridge"))
            .arg("infer")
            .arg(dir.path().join("echo"))
            .args(["--bridge", bridge.as_str(), "--save"])
            .arg(&saved)
            .arg("--input")
            .arg(format!("TEXT={}", texts.display()))
            .output()
            .unwrap()
    };
    if let Some(&bridge) = bridges.iter().find(|b| compiled.contains(b)) {
        let out = cli(bridge);
        assert!(out.status.success(), "{out:?}");
        let ids = torchbridge::npy::read(&saved.join("ids.npy"), "ids", None).unwrap();
        assert_eq!(ids.to_vec::<i64>().unwrap(), flat("input_ids"), "{bridge}");
    }
    // A tokenizer file that is no regular file (a device that never ends) is refused at
    // load, not read until memory runs out.
    let file = dir.path().join("echo/1/tokenizer.json");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
    if let Some(&bridge) = bridges.iter().find(|b| compiled.contains(b)) {
        let e = Model::load_with(dir.path().join("echo"), bridge).unwrap_err();
        assert!(e.to_string().contains("is not a regular file"), "{e}");
    }
}

//! The digits network trained by the example gives the same predictions through all
//! bridges as in Python.

use std::process::Command;

use torchbridge::{BackendKind, Model, ModelDir, Tensor};

use crate::common::{python, workspace};

#[test]
fn digits_predictions_are_identical_through_every_bridge() {
    let repo = tempfile::tempdir().unwrap();
    let status = Command::new(python())
        .arg(workspace().join("examples/digits/train.py"))
        .arg(repo.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "examples/digits/train.py failed");
    let testset = repo.path().join("digits_testset");
    let images = torchbridge::npy::read(&testset.join("images.npy"), "INPUT0", None).unwrap();
    let python_predictions = torchbridge::npy::read(&testset.join("predictions.npy"), "p", None)
        .unwrap()
        .to_vec::<i64>()
        .unwrap();
    let dir = ModelDir::open(&repo.path().join("digits"), None).unwrap();
    assert_eq!(
        dir.available_bridges(),
        vec![
            BackendKind::Python,
            BackendKind::Torchscript,
            BackendKind::Onnx,
            BackendKind::Tract
        ]
    );
    // Every form the directory holds that this build can run (candle reads a
    // transformer's own files, which the digits net has not).
    let compiled = torchbridge::compiled_bridges();
    for bridge in dir.available_bridges() {
        if !compiled.contains(&bridge) {
            continue;
        }
        let model = Model::from_dir(dir.clone(), bridge).unwrap();
        let predictions = predict(&model, &images);
        let differing = predictions
            .iter()
            .zip(&python_predictions)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing,
            0,
            "{bridge}: {differing} of {} predictions differ from Python's",
            predictions.len()
        );
    }
}

/// Argmax of the logits, in batches of up to 64 rows.
fn predict(model: &Model, images: &Tensor) -> Vec<i64> {
    let (n, width) = (images.shape[0] as usize, images.shape[1] as usize);
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(64) {
        let rows = 64.min(n - start);
        let data = images
            .data
            .slice(start * width * 4..(start + rows) * width * 4);
        let batch = Tensor::new(
            "INPUT0",
            images.datatype,
            vec![rows as i64, width as i64],
            data,
        )
        .unwrap();
        let logits = model.infer(vec![batch]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap();
        out.extend(
            logits
                .chunks(10)
                .map(|row| (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as i64),
        );
    }
    out
}

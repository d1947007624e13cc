//! Classifies the held-out digits through every bridge and checks them against Python.
//!
//! Run `python examples/digits/train.py examples/digits/models` first (scripts/setup
//! does both), then:
//!
//! ```text
//! cargo run --release -p torchbridge --example digits -- examples/digits/models
//! ```
//!
//! For each form of the model (python handler, TorchScript, ONNX) it prints accuracy,
//! how many predictions equal Python's, and latency at batch 1 and batch 64. It exits
//! non-zero if any bridge disagrees with Python on any image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use torchbridge::{Model, Tensor};

fn main() -> anyhow::Result<()> {
    let repo = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "examples/digits/models".into()),
    );
    let testset = repo.join("digits_testset");
    let images = torchbridge::npy::read(&testset.join("images.npy"), "INPUT0", None)
        .context("run examples/digits/train.py first")?;
    let labels =
        torchbridge::npy::read(&testset.join("labels.npy"), "labels", None)?.to_vec::<i64>()?;
    let python_predictions =
        torchbridge::npy::read(&testset.join("predictions.npy"), "p", None)?.to_vec::<i64>()?;
    let python_accuracy = std::fs::read_to_string(testset.join("python_accuracy.txt"))?;
    let n = labels.len();
    println!(
        "{n} held-out digits; accuracy in Python (torch eager): {}\n",
        python_accuracy.trim()
    );
    println!(
        "{:<12} {:>9} {:>16} {:>15} {:>17}",
        "bridge", "accuracy", "same as Python", "p50 batch 1", "p50 batch 64"
    );

    let dir = torchbridge::ModelDir::open(&repo.join("digits"), None)?;
    let mut all_agree = true;
    for bridge in dir.available_bridges() {
        let model = Model::from_dir(dir.clone(), bridge)?;
        let predictions = classify(&model, &images, 64)?;
        let correct = predictions
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        let same = predictions
            .iter()
            .zip(&python_predictions)
            .filter(|(p, q)| p == q)
            .count();
        all_agree &= same == n;
        println!(
            "{:<12} {:>9.4} {:>10} / {n:<3} {:>12.3} ms {:>14.3} ms",
            bridge.as_str(),
            correct as f64 / n as f64,
            same,
            p50_ms(&model, &images, 1)?,
            p50_ms(&model, &images, 64)?,
        );
    }
    ensure!(all_agree, "a bridge's predictions differ from Python's");
    println!("\nevery bridge predicts exactly what Python predicts");
    Ok(())
}

/// Rows `start..start + rows` of the images as one input tensor.
fn rows(images: &Tensor, start: usize, rows: usize) -> Tensor {
    let width = images.shape[1] as usize * 4;
    let data = images.data.slice(start * width..(start + rows) * width);
    Tensor::new(
        "INPUT0",
        images.datatype,
        vec![rows as i64, images.shape[1]],
        data,
    )
    .unwrap()
}

fn classify(model: &Model, images: &Tensor, batch: usize) -> anyhow::Result<Vec<i64>> {
    let n = images.shape[0] as usize;
    let mut predictions = Vec::with_capacity(n);
    for start in (0..n).step_by(batch) {
        let logits = model.infer(vec![rows(images, start, batch.min(n - start))])?;
        let logits = logits[0].to_vec::<f32>()?;
        predictions.extend(logits.chunks(10).map(argmax));
    }
    Ok(predictions)
}

fn argmax(row: &[f32]) -> i64 {
    let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
    best.map_or(0, |(i, _)| i as i64)
}

fn p50_ms(model: &Model, images: &Tensor, batch: usize) -> anyhow::Result<f64> {
    let input = rows(images, 0, batch);
    let mut times = Vec::new();
    for i in 0..60 {
        let started = Instant::now();
        model.infer(vec![input.clone()])?;
        if i >= 10 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

//! One `Model` shared by 16 threads gives each caller its own answer.

use std::sync::Arc;

use torchbridge::{BackendKind, Model};

use crate::common::{assert_matches, model_dir, reference, row};

fn sixteen_threads(bridge: BackendKind) {
    let model = Arc::new(Model::load_with(model_dir("mlp"), bridge).unwrap());
    let (inputs, expected) = reference(&model);
    std::thread::scope(|s| {
        for t in 0..16 {
            let (model, inputs, expected) = (model.clone(), &inputs, &expected);
            s.spawn(move || {
                for i in 0..25 {
                    let r = (t + i) % 3;
                    let out = model
                        .infer(inputs.iter().map(|x| row(x, r)).collect())
                        .unwrap();
                    let want: Vec<_> = expected.iter().map(|x| row(x, r)).collect();
                    assert_matches(&format!("{bridge} thread {t} call {i}"), &out, &want);
                }
            });
        }
    });
}

#[test]
#[cfg(feature = "python")]
fn python_bridge_serves_sixteen_threads() {
    sixteen_threads(BackendKind::Python);
}

#[test]
#[cfg(feature = "torchscript")]
fn torchscript_bridge_serves_sixteen_threads() {
    sixteen_threads(BackendKind::Torchscript);
}

#[test]
#[cfg(feature = "onnx")]
fn onnx_bridge_serves_sixteen_threads() {
    sixteen_threads(BackendKind::Onnx);
}

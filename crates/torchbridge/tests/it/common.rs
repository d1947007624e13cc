//! Fixture generation (once per test run) and reference data.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use torchbridge::compare::compare;
use torchbridge::{BackendKind, DataType, Model, Tensor};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub use torchbridge_testing::venv_python as python;

/// The generated model repository; made on first use, reused while the script is unchanged.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Models with `isolation = "process"` run their instances in this binary.
        torchbridge::worker::set_program(env!("CARGO_BIN_EXE_torchbridge"));
        torchbridge_testing::generated_fixtures(
            &workspace().join("tests/fixtures/make_fixtures.py"),
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "fixtures",
        )
    })
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// `manifest.json`: which forms each fixture model was written in.
pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn bridge_of(form: &str) -> BackendKind {
    match form {
        "python" | "pt2" | "pickle" => BackendKind::Python,
        "torchscript" => BackendKind::Torchscript,
        "onnx" => BackendKind::Onnx,
        other => panic!("unknown form {other}"),
    }
}

/// Every compiled-in bridge that reads `form` of fixture `model`: `model.onnx` runs
/// through both onnx and tract.
pub fn bridges_of(model: &str, form: &str) -> Vec<BackendKind> {
    let mut bridges = vec![bridge_of(form)];
    // tract has no bfloat16 element type (its DatumType lacks one), so the BF16
    // fixture is refused at load by design; the onnx bridge serves it.
    if form == "onnx" && model != "dtypes_BF16" {
        bridges.push(BackendKind::Tract);
    }
    let compiled = torchbridge::compiled_bridges();
    bridges.retain(|b| compiled.contains(b));
    bridges
}

/// The reference inputs and outputs Python computed with the eager module.
pub fn reference(model: &Model) -> (Vec<Tensor>, Vec<Tensor>) {
    let dir = model.dir().root.join("ref");
    let read = |kind: &str, spec: &torchbridge::TensorSpec| {
        let path = dir.join(kind).join(format!("{}.npy", spec.name));
        torchbridge::npy::read(&path, &spec.name, Some(spec.datatype)).unwrap()
    };
    let meta = model.metadata();
    let inputs = meta.inputs.iter().map(|s| read("inputs", s)).collect();
    let outputs = meta.outputs.iter().map(|s| read("outputs", s)).collect();
    (inputs, outputs)
}

/// Integers and booleans must be equal; floats within 1e-5 relative (1e-2 for the
/// 16-bit floats, whose last bit may round differently between engines).
pub fn assert_matches(context: &str, actual: &[Tensor], expected: &[Tensor]) {
    assert_eq!(actual.len(), expected.len(), "{context}: output count");
    for (a, e) in actual.iter().zip(expected) {
        let rtol = match e.datatype {
            DataType::Fp16 | DataType::Bf16 => 1e-2,
            d if d.is_float() => 1e-5,
            _ => 0.0,
        };
        let d = compare(a, e, rtol, 1e-6 * f64::from(u8::from(rtol > 0.0)))
            .unwrap_or_else(|why| panic!("{context}: {why}"));
        assert_eq!(
            d.mismatched, 0,
            "{context}: output `{}` differs: {d:?}",
            a.name
        );
    }
}

/// Row `i` of a batched tensor, as a batch of one.
pub fn row(t: &Tensor, i: usize) -> Tensor {
    let rows = t.shape[0] as usize;
    let width = t.data.len() / rows;
    let mut shape = t.shape.clone();
    shape[0] = 1;
    Tensor::new(
        t.name.clone(),
        t.datatype,
        shape,
        t.data.slice(i * width..(i + 1) * width),
    )
    .unwrap()
}

/// Copies a model directory (to edit its config or files in a test).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

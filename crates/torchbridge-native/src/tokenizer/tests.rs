use std::path::Path;

use torchbridge_core::{BackendKind, ModelConfig, ModelForm};

use super::*;

/// A word-level tokenizer: whitespace split, `[PAD]` = 0, `[UNK]` = 1.
const TOKENIZER: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
  "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
  "decoder": null,
  "model": {"type": "WordLevel", "unk_token": "[UNK]",
            "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "again": 4}}
}"#;

/// Echoes `input_ids` and `attention_mask` back, so tests see what the bridge got.
struct Echo(ModelMetadata);

impl Backend for Echo {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }
    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        assert_eq!(batch.inputs[0].name, "input_ids");
        Ok(batch.inputs)
    }
}

fn spec(name: &str, dims: Vec<i64>) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype: DataType::Int64,
        dims,
    }
}

fn error_of(dir: &Path, table: &str) -> String {
    stage(dir, table).err().expect("a load error").to_string()
}

fn stage(dir: &Path, table: &str) -> Result<Box<dyn Backend>> {
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER).unwrap();
    let config = ModelConfig::from_toml(&format!(
        "backend = \"tract\"\nmax_batch_size = 8\n[tokenizer]\n{table}"
    ))
    .unwrap();
    let inner = ModelMetadata {
        name: "m".into(),
        version: 1,
        platform: BackendKind::Tract.to_string(),
        max_batch_size: 8,
        inputs: vec![
            spec("input_ids", vec![-1]),
            spec("attention_mask", vec![-1]),
        ],
        outputs: vec![
            spec("input_ids", vec![-1]),
            spec("attention_mask", vec![-1]),
        ],
    };
    let ctx = LoadContext {
        model: "m".into(),
        version: 1,
        config,
        version_dir: dir.to_path_buf(),
        form: ModelForm::Onnx(dir.join("model.onnx")),
        instance: 0,
    };
    with_tokenizer(&ctx, Box::new(Echo(inner)))
}

fn run(backend: &mut dyn Backend, texts: &[&str]) -> Result<Vec<Vec<i64>>> {
    let text = Tensor::from_strings("TEXT", vec![texts.len() as i64, 1], texts).unwrap();
    let batch = backend.metadata().prepare(vec![text])?;
    let out = backend.infer(batch)?;
    Ok(out.iter().map(|t| t.to_vec::<i64>().unwrap()).collect())
}

#[test]
fn strings_become_padded_token_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = stage(dir.path(), "").unwrap();
    let meta = backend.metadata();
    assert_eq!(meta.inputs.len(), 1);
    assert_eq!(
        (meta.inputs[0].name.as_str(), meta.inputs[0].datatype),
        ("TEXT", DataType::Bytes)
    );
    assert_eq!(meta.full_shape(&meta.inputs[0]), vec![-1, 1]);
    let out = run(backend.as_mut(), &["hello world again", "world nope"]).unwrap();
    assert_eq!(out[0], vec![2, 3, 4, 3, 1, 0]);
    assert_eq!(out[1], vec![1, 1, 1, 1, 1, 0]);
    assert!(backend.last_timing().unwrap().input > std::time::Duration::ZERO);
}

#[test]
fn max_length_pads_and_truncates_or_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = stage(dir.path(), "max_length = 2\npadding = \"max_length\"").unwrap();
    let out = run(backend.as_mut(), &["hello world again", "world"]).unwrap();
    assert_eq!(out[0], vec![2, 3, 3, 0]);
    let mut backend = stage(dir.path(), "max_length = 2\ntruncation = false").unwrap();
    let e = run(backend.as_mut(), &["hello world again"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("3 tokens, over `tokenizer.max_length = 2`"),
        "{e}"
    );
    let bad = Tensor::new(
        "TEXT",
        DataType::Bytes,
        vec![1, 1],
        vec![1u8, 0, 0, 0, 0xff],
    )
    .unwrap();
    let batch = backend.metadata().prepare(vec![bad]).unwrap();
    let e = backend.infer(batch).unwrap_err().to_string();
    assert!(e.contains("not UTF-8"), "{e}");
}

#[test]
fn mismatches_with_the_model_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = error_of(dir.path(), "outputs = [\"input_ids\", \"token_type_ids\"]");
    assert!(
        e.contains("`token_type_ids`, which is not among its inputs"),
        "{e}"
    );
    let e = error_of(dir.path(), "outputs = [\"input_ids\"]");
    assert!(
        e.contains("also takes `attention_mask`, which `tokenizer.outputs` does not make"),
        "{e}"
    );
    let e = error_of(dir.path(), "input = \"input_ids\"");
    assert!(e.contains("already one of the model's inputs"), "{e}");
    let e = error_of(dir.path(), "file = \"nope.json\"");
    assert!(e.contains("nope.json"), "{e}");
}

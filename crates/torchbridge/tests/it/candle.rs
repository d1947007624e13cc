//! The candle bridge: all-MiniLM-L6-v2 served from its published files gives the
//! embeddings sentence-transformers itself computes (tests/fixtures/make_minilm.py, at
//! test time), from token ids and, through the `[tokenizer]` stage, from strings.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use torchbridge::{BackendKind, DataType, Error, Model, Tensor};

use crate::common::workspace;

/// sentence-transformers' embeddings are reproduced within this (absolute, per element
/// of a unit vector).
const TOLERANCE: f32 = 1e-4;

fn repo() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        torchbridge_testing::generated_fixtures(
            &workspace().join("tests/fixtures/make_minilm.py"),
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            "minilm",
        )
    })
}

struct Expected {
    sentences: Vec<String>,
    /// Padded to the longest sentence, as transformers' tokenizer gives them.
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    embeddings: Vec<Vec<f32>>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(repo().join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |key: &str| -> Vec<Vec<serde_json::Value>> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().clone())
            .collect()
    };
    let ints = |key: &str| -> Vec<Vec<i64>> {
        rows(key)
            .iter()
            .map(|r| r.iter().map(|x| x.as_i64().unwrap()).collect())
            .collect()
    };
    Expected {
        sentences: v["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        input_ids: ints("input_ids"),
        attention_mask: ints("attention_mask"),
        embeddings: rows("embeddings")
            .iter()
            .map(|r| r.iter().map(|x| x.as_f64().unwrap() as f32).collect())
            .collect(),
    }
}

fn tokens(name: &str, rows: &[Vec<i64>]) -> Tensor {
    let flat: Vec<i64> = rows.concat();
    Tensor::from_slice(name, vec![rows.len() as i64, rows[0].len() as i64], &flat).unwrap()
}

fn assert_embeddings(context: &str, out: &Tensor, expected: &[Vec<f32>]) {
    assert_eq!(out.datatype, DataType::Fp32, "{context}");
    assert_eq!(out.shape, vec![expected.len() as i64, 384], "{context}");
    let values = out.to_vec::<f32>().unwrap();
    for (row, (got, want)) in values.chunks(384).zip(expected).enumerate() {
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= TOLERANCE,
            "{context}: sentence {row} differs from sentence-transformers by {worst:e}"
        );
    }
}

#[test]
fn token_ids_give_sentence_transformers_embeddings() {
    let e = expected();
    let model = Model::load(repo().join("minilm_ids")).unwrap();
    let meta = model.metadata();
    assert_eq!(meta.platform, "candle");
    let names: Vec<&str> = meta.inputs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask"]);
    assert_eq!(meta.outputs[0].name, "embedding");
    assert_eq!(meta.full_shape(&meta.outputs[0]), vec![-1, 384]);
    // All sentences padded to the longest: padding must not change an embedding.
    let out = model
        .infer(vec![
            tokens("input_ids", &e.input_ids),
            tokens("attention_mask", &e.attention_mask),
        ])
        .unwrap();
    assert_embeddings("padded batch", &out[0], &e.embeddings);
    // One sentence alone, unpadded.
    let len = e.attention_mask[0].iter().filter(|&&m| m == 1).count();
    let out = model
        .infer(vec![
            tokens("input_ids", &[e.input_ids[0][..len].to_vec()]),
            tokens("attention_mask", &[e.attention_mask[0][..len].to_vec()]),
        ])
        .unwrap();
    assert_embeddings("one sentence", &out[0], &e.embeddings[..1]);
}

#[test]
fn strings_through_the_tokenizer_stage_give_the_same_embeddings() {
    let e = expected();
    let model = Model::load(repo().join("minilm")).unwrap();
    assert_eq!(model.bridge(), BackendKind::Candle);
    let meta = model.metadata();
    assert_eq!(meta.inputs.len(), 1, "{:?}", meta.inputs);
    assert_eq!(
        (meta.inputs[0].name.as_str(), meta.inputs[0].datatype),
        ("TEXT", DataType::Bytes)
    );
    let n = e.sentences.len() as i64;
    let text = Tensor::from_strings("TEXT", vec![n, 1], &e.sentences).unwrap();
    let out = model.infer(vec![text]).unwrap();
    assert_embeddings("strings", &out[0], &e.embeddings);
}

#[test]
fn a_pytorch_state_dict_with_token_types_and_no_batch_dimension_serves_too() {
    let e = expected();
    let model = Model::load(repo().join("minilm_pth")).unwrap();
    let meta = model.metadata();
    assert_eq!(meta.max_batch_size, 0);
    assert_eq!(meta.inputs[2].name, "token_type_ids");
    let types: Vec<Vec<i64>> = e.input_ids.iter().map(|r| vec![0; r.len()]).collect();
    let out = model
        .infer(vec![
            tokens("input_ids", &e.input_ids),
            tokens("attention_mask", &e.attention_mask),
            tokens("token_type_ids", &types),
        ])
        .unwrap();
    assert_embeddings("pytorch_model.bin", &out[0], &e.embeddings);
}

#[test]
fn bad_ids_and_shapes_are_refused_naming_the_input() {
    let model = Model::load(repo().join("minilm_ids")).unwrap();
    let ids = tokens("input_ids", &[vec![101, 40_000, 102]]);
    let mask = tokens("attention_mask", &[vec![1, 1, 1]]);
    let err = model.infer(vec![ids, mask.clone()]).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`input_ids` holds 40000") && text.contains("0..30522"),
        "{text}"
    );
    let ids = tokens("input_ids", &[vec![101, 102]]);
    let text = model.infer(vec![ids, mask]).unwrap_err().to_string();
    assert!(
        text.contains("`attention_mask` has shape [1, 3]") && text.contains("[1, 2]"),
        "{text}"
    );
    let long = vec![vec![101; 513]];
    let text = model
        .infer(vec![
            tokens("input_ids", &long),
            tokens("attention_mask", &long),
        ])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("513 tokens") && text.contains("1 to 512"),
        "{text}"
    );
}

#[test]
fn a_model_that_is_not_bert_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("roberta/1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(
        dir.path().join("roberta/config.toml"),
        "backend = \"candle\"",
    )
    .unwrap();
    std::fs::write(
        version.join("config.json"),
        r#"{"model_type": "roberta", "architectures": ["RobertaModel"]}"#,
    )
    .unwrap();
    let err = Model::load(dir.path().join("roberta")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Load {
                bridge: "candle",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("type `roberta`") && text.contains("BERT encoders"),
        "{text}"
    );
}

#[test]
fn a_state_dict_declaring_more_than_it_holds_is_refused_at_load() {
    // A pickle may declare any shape for a tensor whose data is 4 bytes: [2^30, 16384]
    // of FP32 is 70 TB, which candle would allocate before reading (the process aborted).
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("bert/1");
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(dir.path().join("bert/config.toml"), "backend = \"candle\"").unwrap();
    let script = r#"
import collections, io, json, pickle, sys, zipfile, torch
class Storage: pass
class Huge:
    def __reduce__(self):
        shape = (1 << 30, 16384)
        return (torch._utils._rebuild_tensor_v2,
                (Storage(), 0, shape, (16384, 1), False, collections.OrderedDict()))
class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", 1) if isinstance(obj, Storage) else None
state = io.BytesIO()
Pickler(state, protocol=2).dump({"embeddings.word_embeddings.weight": Huge()})
with zipfile.ZipFile(sys.argv[1] + "/pytorch_model.bin", "w") as z:
    z.writestr("archive/data.pkl", state.getvalue())
    z.writestr("archive/data/0", b"\0" * 4)
    z.writestr("archive/version", "3\n")
json.dump({"model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
           "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
           "pad_token_id": 0, "hidden_dropout_prob": 0.0,
           "initializer_range": 0.02}, open(sys.argv[1] + "/config.json", "w"))
"#;
    let status = std::process::Command::new(crate::common::python())
        .args(["-c", script])
        .arg(&version)
        .status()
        .unwrap();
    assert!(status.success());
    let err = Model::load(dir.path().join("bert"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("declares shape [1073741824, 16384]") && err.contains("holds 4 bytes"),
        "{err}"
    );
}

#[test]
fn a_tokenizer_max_length_over_the_models_positions_is_refused_at_load() {
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path().join("minilm");
    crate::common::copy_dir(&repo().join("minilm"), &dir);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let start = config
        .find("max_length = ")
        .expect("the fixture sets max_length");
    let end = start + config[start..].find('\n').unwrap();
    let config = format!("{}max_length = 2000{}", &config[..start], &config[end..]);
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let err = Model::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("`tokenizer.max_length = 2000` is over the model's 512 positions"),
        "{err}"
    );
}

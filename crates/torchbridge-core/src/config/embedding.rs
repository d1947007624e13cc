//! The `[embedding]` table of config.toml: how the candle bridge turns an encoder's
//! per-token states into one vector per text (sentence-transformers' Pooling and
//! Normalize modules, which a published encoder's weights do not contain).

use serde::Deserialize;

/// The `[embedding]` table (candle bridge). Absent: mean pooling, no normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    #[serde(default)]
    pub pooling: Pooling,
    /// Scale each vector to unit L2 norm (cosine similarity becomes a dot product).
    #[serde(default)]
    pub normalize: bool,
}

/// How token states become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean of the states of the tokens whose attention mask is 1.
    #[default]
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    #[test]
    fn embedding_table_parses_and_belongs_to_candle() {
        let c = ModelConfig::from_toml("backend = \"candle\"").unwrap();
        assert_eq!(c.embedding, None);
        let c = ModelConfig::from_toml(
            "backend = \"candle\"\n[embedding]\npooling = \"cls\"\nnormalize = true",
        )
        .unwrap();
        assert_eq!(
            c.embedding,
            Some(EmbeddingConfig {
                pooling: Pooling::Cls,
                normalize: true
            })
        );
        let e = ModelConfig::from_toml("backend = \"candle\"\n[embedding]\npooling = \"max\"")
            .unwrap_err();
        assert!(e.contains("max") && e.contains("mean"), "{e}");
        let e = ModelConfig::from_toml("backend = \"candle\"\n[embedding]\nnormalise = true")
            .unwrap_err();
        assert!(e.contains("unknown field `normalise`"), "{e}");
        let e = ModelConfig::from_toml("backend = \"onnx\"\n[embedding]").unwrap_err();
        assert!(e.contains("`[embedding]`") && e.contains("candle"), "{e}");
    }
}

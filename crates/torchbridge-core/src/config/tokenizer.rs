//! The `[tokenizer]` table of config.toml: strings in, token ids to the bridge.

use std::path::PathBuf;

use serde::Deserialize;

/// The longest `max_length` accepted (a long-context model's window; past it, one
/// padded request could take gigabytes).
const MAX_LENGTH: u32 = 1 << 17;

/// The `[tokenizer]` table: clients send strings in one BYTES input (`input`); a
/// `tokenizer.json` turns them into INT64 token tensors (`outputs`) that the bridge's
/// model takes, so an embedding service is one config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    /// The Hugging Face `tokenizer.json`, relative to the version directory.
    #[serde(default = "default_tokenizer_file")]
    pub file: PathBuf,
    /// The name of the BYTES input clients send.
    #[serde(default = "default_text_input")]
    pub input: String,
    /// Tokens per text, special tokens included.
    #[serde(default = "default_max_length")]
    pub max_length: u32,
    #[serde(default)]
    pub padding: Padding,
    /// Cut texts to `max_length` tokens; `false` refuses longer texts instead.
    #[serde(default = "default_true")]
    pub truncation: bool,
    /// The tensors handed to the bridge, by the model's input names.
    #[serde(default = "default_token_outputs")]
    pub outputs: Vec<TokenOutput>,
}

/// How a batch of texts is padded: to `max_length`, or to its longest text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    MaxLength,
    #[default]
    Longest,
}

/// A tensor the tokenizer stage produces, named as the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOutput {
    InputIds,
    AttentionMask,
    TokenTypeIds,
}

impl TokenOutput {
    /// Every tensor the stage can make.
    pub const ALL: [TokenOutput; 3] = [
        TokenOutput::InputIds,
        TokenOutput::AttentionMask,
        TokenOutput::TokenTypeIds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenOutput::InputIds => "input_ids",
            TokenOutput::AttentionMask => "attention_mask",
            TokenOutput::TokenTypeIds => "token_type_ids",
        }
    }
}

impl TokenizerConfig {
    /// What serde cannot check; the error names the key.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_length == 0 {
            return Err("`tokenizer.max_length` must be at least 1".into());
        }
        if self.max_length > MAX_LENGTH {
            // Each text of a batch becomes this many tokens with `padding = "max_length"`.
            return Err(format!(
                "`tokenizer.max_length = {}`: at most {MAX_LENGTH} tokens",
                self.max_length
            ));
        }
        if self.outputs.is_empty() {
            return Err("`tokenizer.outputs` must name at least `input_ids`".into());
        }
        if let Some((_, o)) = self
            .outputs
            .iter()
            .enumerate()
            .find(|(i, o)| self.outputs[..*i].contains(o))
        {
            return Err(format!("`tokenizer.outputs` names `{}` twice", o.as_str()));
        }
        Ok(())
    }
}

fn default_tokenizer_file() -> PathBuf {
    PathBuf::from("tokenizer.json")
}

fn default_text_input() -> String {
    "TEXT".to_string()
}

fn default_max_length() -> u32 {
    128
}

fn default_true() -> bool {
    true
}

fn default_token_outputs() -> Vec<TokenOutput> {
    vec![TokenOutput::InputIds, TokenOutput::AttentionMask]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;

    fn error_of(text: &str) -> String {
        ModelConfig::from_toml(text).unwrap_err()
    }

    #[test]
    fn tokenizer_table_parses_with_defaults_and_refuses_unknown_keys() {
        let c = ModelConfig::from_toml("backend = \"tract\"\n[tokenizer]").unwrap();
        let t = c.tokenizer.unwrap();
        assert_eq!(t.file, PathBuf::from("tokenizer.json"));
        assert_eq!(
            (t.input.as_str(), t.max_length, t.truncation),
            ("TEXT", 128, true)
        );
        assert_eq!(t.padding, Padding::Longest);
        assert_eq!(
            t.outputs,
            vec![TokenOutput::InputIds, TokenOutput::AttentionMask]
        );
        let c = ModelConfig::from_toml(
            "backend = \"onnx\"\n[tokenizer]\nfile = \"tok/t.json\"\ninput = \"S\"\nmax_length = 16\n\
             padding = \"max_length\"\ntruncation = false\noutputs = [\"input_ids\", \"token_type_ids\"]",
        )
        .unwrap();
        let t = c.tokenizer.unwrap();
        assert_eq!(
            (t.padding, t.max_length, t.truncation),
            (Padding::MaxLength, 16, false)
        );
        assert_eq!(t.outputs[1].as_str(), "token_type_ids");
        let e = error_of("backend = \"onnx\"\n[tokenizer]\nmax_len = 3");
        assert!(e.contains("unknown field `max_len`"), "{e}");
        let e = error_of("backend = \"onnx\"\n[tokenizer]\npadding = \"right\"");
        assert!(e.contains("right") && e.contains("max_length"), "{e}");
        let e =
            error_of("backend = \"onnx\"\n[tokenizer]\noutputs = [\"input_ids\", \"input_ids\"]");
        assert!(e.contains("names `input_ids` twice"), "{e}");
        let e = error_of("backend = \"onnx\"\n[tokenizer]\nmax_length = 0");
        assert!(e.contains("max_length"), "{e}");
    }
}

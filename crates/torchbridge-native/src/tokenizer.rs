//! The tokenizer stage: strings in one BYTES input become the INT64 token tensors a
//! model takes, before the bridge runs. A decorator around any bridge's backend.

use std::time::Instant;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use torchbridge_core::{
    Backend, Batch, CallTiming, DataType, Error, LoadContext, ModelMetadata, Padding, Result,
    Tensor, TensorSpec, TokenOutput, TokenizerConfig,
};

/// The largest tokenizer file read (the largest published tokenizer.json files are tens
/// of megabytes); a file that is no regular file (`/dev/zero`) is refused too.
const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// Wraps `inner` in the stage `ctx.config.tokenizer` describes (returns it unchanged
/// when there is none). The wrapped backend's metadata shows the BYTES input in place
/// of the token inputs.
pub fn with_tokenizer(ctx: &LoadContext, inner: Box<dyn Backend>) -> Result<Box<dyn Backend>> {
    let Some(config) = &ctx.config.tokenizer else {
        return Ok(inner);
    };
    let path = ctx.version_dir.join(&config.file);
    let fail = |message: String| Error::Config {
        path: path.clone(),
        message,
    };
    match std::fs::metadata(&path) {
        Ok(file) if file.is_file() && file.len() <= MAX_TOKENIZER_BYTES => {}
        Ok(file) if file.is_file() => {
            return Err(fail(format!(
                "the tokenizer file is {} bytes, over the {MAX_TOKENIZER_BYTES} a tokenizer.json \
                 may be",
                file.len()
            )));
        }
        Ok(_) => return Err(fail("the tokenizer file is not a regular file".into())),
        Err(e) => return Err(fail(format!("cannot read the tokenizer file: {e}"))),
    }
    let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| {
        fail(format!(
            "cannot load the tokenizer ([tokenizer] in config.toml): {e}"
        ))
    })?;
    configure(&mut tokenizer, config).map_err(fail)?;
    let metadata = public_metadata(inner.metadata(), config).map_err(fail)?;
    Ok(Box::new(Tokenized {
        inner,
        tokenizer,
        config: config.clone(),
        metadata,
        timing: None,
    }))
}

/// Padding and truncation as config.toml says, keeping the file's pad token.
fn configure(tokenizer: &mut Tokenizer, config: &TokenizerConfig) -> Result<(), String> {
    let max_length = config.max_length as usize;
    let mut padding = tokenizer.get_padding().cloned().unwrap_or_else(|| {
        let mut p = PaddingParams::default();
        p.pad_id = tokenizer.token_to_id(&p.pad_token).unwrap_or(0);
        p
    });
    padding.strategy = match config.padding {
        Padding::MaxLength => PaddingStrategy::Fixed(max_length),
        Padding::Longest => PaddingStrategy::BatchLongest,
    };
    tokenizer.with_padding(Some(padding));
    let truncation = config.truncation.then(|| TruncationParams {
        max_length,
        ..TruncationParams::default()
    });
    tokenizer
        .with_truncation(truncation)
        .map_err(|e| format!("`tokenizer.max_length = {max_length}`: {e}"))?;
    Ok(())
}

/// The bridge's metadata with its token inputs replaced by the one BYTES input: one
/// text per row (`dims = [1]`, Triton's habit) when batching, else a list of texts.
fn public_metadata(
    inner: &ModelMetadata,
    config: &TokenizerConfig,
) -> Result<ModelMetadata, String> {
    let batched = inner.max_batch_size > 0;
    for output in &config.outputs {
        let name = output.as_str();
        let spec = inner.inputs.iter().find(|s| s.name == name).ok_or_else(|| {
            format!(
                "`tokenizer.outputs` hands the model `{name}`, which is not among its inputs ({})",
                names(&inner.inputs)
            )
        })?;
        if spec.datatype != DataType::Int64 {
            return Err(format!(
                "the tokenizer gives INT64 `{name}`, but the model's input is {}",
                spec.datatype
            ));
        }
        let want = if batched { 1 } else { 2 };
        let fixed = spec.dims.get(want - 1).copied().filter(|&d| d != -1);
        if spec.dims.len() != want
            || fixed.is_some_and(|d| {
                config.padding != Padding::MaxLength || d != i64::from(config.max_length)
            })
        {
            return Err(format!(
                "the model's input `{name}` has dims {:?}; the tokenizer gives [texts, tokens] \
                 (a fixed token count needs `padding = \"max_length\"` and that `max_length`)",
                spec.dims
            ));
        }
    }
    // A token tensor the model takes but the tokenizer does not make would be the
    // client's to send, and a client that sends text cannot know its length.
    if let Some(missing) = TokenOutput::ALL
        .into_iter()
        .find(|o| !config.outputs.contains(o) && inner.inputs.iter().any(|s| s.name == o.as_str()))
    {
        return Err(format!(
            "the model also takes `{0}`, which `tokenizer.outputs` does not make: add \
             \"{0}\" to it (clients send text and cannot know the token count)",
            missing.as_str()
        ));
    }
    if inner.inputs.iter().any(|s| s.name == config.input) {
        return Err(format!(
            "`tokenizer.input = \"{}\"` is already one of the model's inputs",
            config.input
        ));
    }
    let is_token = |s: &TensorSpec| config.outputs.iter().any(|o| o.as_str() == s.name);
    let first = inner.inputs.iter().position(is_token).unwrap_or(0);
    let mut inputs: Vec<TensorSpec> = inner
        .inputs
        .iter()
        .filter(|s| !is_token(s))
        .cloned()
        .collect();
    inputs.insert(
        first.min(inputs.len()),
        TensorSpec {
            name: config.input.clone(),
            datatype: DataType::Bytes,
            dims: if batched { vec![1] } else { vec![-1] },
        },
    );
    Ok(ModelMetadata {
        inputs,
        ..inner.clone()
    })
}

fn names(specs: &[TensorSpec]) -> String {
    let names: Vec<_> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
    names.join(", ")
}

struct Tokenized {
    inner: Box<dyn Backend>,
    tokenizer: Tokenizer,
    config: TokenizerConfig,
    metadata: ModelMetadata,
    timing: Option<CallTiming>,
}

impl std::fmt::Debug for Tokenized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenized")
            .field("model", &self.metadata.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tokenized {
    /// The token tensors for the texts of `text`, `[texts, tokens]` each.
    fn tokenize(&self, text: &Tensor) -> Result<Vec<Tensor>> {
        let invalid =
            |m: String| Error::InvalidInput(format!("model `{}`: {m}", self.metadata.name));
        let texts = text
            .strings()?
            .into_iter()
            .map(|s| std::str::from_utf8(s))
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|e| {
                invalid(format!(
                    "input `{}` holds text that is not UTF-8: {e}",
                    text.name
                ))
            })?;
        let count = texts.len();
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| invalid(format!("cannot tokenize `{}`: {e}", text.name)))?;
        let length = encodings.first().map_or(0, |e| e.len());
        let max = self.config.max_length as usize;
        if let Some(long) = encodings
            .iter()
            .position(|e| e.len() != length || e.len() > max)
        {
            return Err(invalid(format!(
                "text {long} of `{}` is {} tokens, over `tokenizer.max_length = {max}` \
                 (and `truncation = false`)",
                text.name,
                encodings[long].len()
            )));
        }
        let shape = vec![count as i64, length as i64];
        self.config
            .outputs
            .iter()
            .map(|&output| {
                let values: Vec<i64> = encodings
                    .iter()
                    .flat_map(|e| match output {
                        TokenOutput::InputIds => e.get_ids(),
                        TokenOutput::AttentionMask => e.get_attention_mask(),
                        TokenOutput::TokenTypeIds => e.get_type_ids(),
                    })
                    .map(|&v| i64::from(v))
                    .collect();
                Tensor::from_slice(output.as_str(), shape.clone(), &values)
            })
            .collect()
    }
}

impl Backend for Tokenized {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let started = Instant::now();
        let mut given = batch.inputs;
        let at = given
            .iter()
            .position(|t| t.name == self.config.input)
            .ok_or_else(|| {
                Error::InvalidInput(format!("input `{}` is missing", self.config.input))
            })?;
        let text = given.swap_remove(at);
        let mut tokens = self.tokenize(&text)?;
        let inner = self.inner.metadata();
        let mut inputs = Vec::with_capacity(inner.inputs.len());
        for spec in &inner.inputs {
            let from = if tokens.iter().any(|t| t.name == spec.name) {
                &mut tokens
            } else {
                &mut given
            };
            let i = from
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| Error::InvalidInput(format!("input `{}` is missing", spec.name)))?;
            inputs.push(from.swap_remove(i));
        }
        let tokenized = started.elapsed();
        let outputs = self.inner.infer(Batch {
            inputs,
            rows: batch.rows,
        })?;
        self.timing = Some(match self.inner.last_timing() {
            Some(t) => CallTiming {
                input: t.input + tokenized,
                ..t
            },
            None => CallTiming {
                input: tokenized,
                compute: started.elapsed() - tokenized,
                output: Default::default(),
            },
        });
        Ok(outputs)
    }

    fn runs_on_any_thread(&self) -> bool {
        self.inner.runs_on_any_thread()
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }
}

#[cfg(test)]
mod tests;

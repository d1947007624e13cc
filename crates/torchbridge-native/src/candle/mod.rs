//! The candle bridge: a BERT-family sentence encoder straight from its published files
//! (`config.json`, `model.safetensors` or `pytorch_model.bin`), pooled into one vector
//! per text as `[embedding]` in config.toml says. Each instance runs on its own rayon
//! pool of `threads` threads, so instances never oversubscribe the CPUs.

mod files;
mod pooling;

use std::time::Instant;

use candle_core::{DType, Device, Tensor as CandleTensor};
use torchbridge_core::{
    Backend, Batch, CallTiming, DataType, Device as TorchbridgeDevice, EmbeddingConfig, Error,
    FileTensor, LoadContext, ModelForm, ModelMetadata, Result, Tensor, TokenOutput, reconcile,
};

use files::Encoder;

const BRIDGE: &str = "candle";
const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const TOKEN_TYPE_IDS: &str = "token_type_ids";
const DEFAULT_OUTPUT: &str = "embedding";

/// Loads the encoder in the version directory (`ModelForm::Directory`).
pub fn load(ctx: &LoadContext) -> Result<Box<dyn Backend>> {
    Ok(Box::new(CandleBackend::load(ctx)?))
}

/// The version of candle compiled in (Cargo.toml pins it).
pub fn candle_version() -> &'static str {
    "0.11.1"
}

struct CandleBackend {
    encoder: Encoder,
    embedding: EmbeddingConfig,
    threads: rayon::ThreadPool,
    metadata: ModelMetadata,
    /// Where `input_ids`, `attention_mask` and (if taken) `token_type_ids` sit in a batch.
    ids_at: usize,
    mask_at: usize,
    types_at: Option<usize>,
    timing: Option<CallTiming>,
}

impl std::fmt::Debug for CandleBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleBackend")
            .field("model", &self.metadata.name)
            .finish_non_exhaustive()
    }
}

impl CandleBackend {
    fn load(ctx: &LoadContext) -> Result<Self> {
        let fail = |message: String| Error::Load {
            model: ctx.model.clone(),
            bridge: BRIDGE,
            message,
        };
        let ModelForm::Directory(dir) = &ctx.form else {
            return Err(fail(format!(
                "the candle bridge loads a directory of published files (config.json and \
                 weights), not {}",
                ctx.form.path().display()
            )));
        };
        if let TorchbridgeDevice::Cuda(_) = ctx.config.device {
            return Err(fail(format!(
                "`device = \"{}\"` is not available: this build of candle runs on the CPU; \
                 set `device = \"cpu\"`",
                ctx.config.device
            )));
        }
        let started = Instant::now();
        let encoder = files::load_encoder(dir).map_err(fail)?;
        let positions = encoder.config.max_position_embeddings;
        if let Some(t) = ctx.config.tokenizer.as_ref()
            && t.max_length as usize > positions
        {
            // Caught here, not by the first long text of a request.
            return Err(fail(format!(
                "`tokenizer.max_length = {}` is over the model's {positions} positions \
                 (`max_position_embeddings` in config.json); set it to {positions} at most",
                t.max_length
            )));
        }
        let (inputs, outputs) = file_tensors(ctx, encoder.config.hidden_size);
        let metadata =
            reconcile(ctx.configured_metadata(BRIDGE), &inputs, &outputs).map_err(fail)?;
        let at = |name: &str| metadata.inputs.iter().position(|s| s.name == name);
        // `reconcile` guarantees every input of `file_tensors` is declared.
        let (ids_at, mask_at) = (at(INPUT_IDS).unwrap(), at(ATTENTION_MASK).unwrap());
        let types_at = at(TOKEN_TYPE_IDS);
        let count =
            torchbridge_core::cpu::threads_per_instance(ctx.config.threads, ctx.config.instances)
                as usize;
        let (model, instance) = (ctx.model.clone(), ctx.instance);
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(move |i| format!("candle-{model}-{instance}-{i}"))
            .build()
            .map_err(|e| fail(format!("cannot start {count} threads: {e}")))?;
        tracing::info!(
            model = %ctx.model,
            version = ctx.version,
            instance = ctx.instance,
            dir = %dir.display(),
            weights = encoder.weights,
            threads = count,
            load_ms = started.elapsed().as_millis() as u64,
            "loaded through candle {}",
            candle_version()
        );
        Ok(CandleBackend {
            encoder,
            embedding: ctx.config.embedding.clone().unwrap_or_default(),
            threads,
            metadata,
            ids_at,
            mask_at,
            types_at,
            timing: None,
        })
    }

    /// The candle tensors of one batch: ids, mask (FP32) and token types, after checking
    /// that they agree in shape and that every id is one the model has an embedding for.
    fn tokens(&self, inputs: &[Tensor]) -> Result<[CandleTensor; 3]> {
        let invalid =
            |m: String| Error::InvalidInput(format!("model `{}`: {m}", self.metadata.name));
        let ids = &inputs[self.ids_at];
        let [texts, length] = ids.shape[..] else {
            return Err(invalid(format!(
                "input `{INPUT_IDS}` must be [texts, tokens], got {:?}",
                ids.shape
            )));
        };
        let config = &self.encoder.config;
        if length < 1 || length as usize > config.max_position_embeddings {
            return Err(invalid(format!(
                "input `{INPUT_IDS}` holds {length} tokens per text; the model takes 1 to {} \
                 (`max_position_embeddings` in config.json)",
                config.max_position_embeddings
            )));
        }
        let shape = (texts as usize, length as usize);
        let candle = |t: &Tensor, below: Option<usize>| -> Result<CandleTensor> {
            if t.shape != ids.shape {
                return Err(invalid(format!(
                    "input `{}` has shape {:?}, but `{INPUT_IDS}` has {:?}; they must agree",
                    t.name, t.shape, ids.shape
                )));
            }
            let values = t.to_vec::<i64>()?;
            if let Some(limit) = below
                && let Some(bad) = values.iter().find(|&&v| v < 0 || v as usize >= limit)
            {
                return Err(invalid(format!(
                    "input `{}` holds {bad}, outside the model's 0..{limit}",
                    t.name
                )));
            }
            CandleTensor::from_vec(values, shape, &Device::Cpu)
                .map_err(|e| invalid(format!("input `{}`: {e}", t.name)))
        };
        let ids_tensor = candle(ids, Some(config.vocab_size))?;
        let mask = candle(&inputs[self.mask_at], None)?
            .to_dtype(DType::F32)
            .map_err(|e| invalid(format!("input `{ATTENTION_MASK}`: {e}")))?;
        let types = match self.types_at {
            Some(at) => candle(&inputs[at], Some(config.type_vocab_size))?,
            None => ids_tensor
                .zeros_like()
                .map_err(|e| invalid(format!("token types: {e}")))?,
        };
        Ok([ids_tensor, mask, types])
    }
}

/// What the encoder takes and gives, as a file would declare it: INT64 `[texts, tokens]`
/// ids and mask (and token types where config.toml hands them over), and one FP32
/// `[texts, hidden]` output named as `[[output]]` names it (default `embedding`).
fn file_tensors(ctx: &LoadContext, hidden: usize) -> (Vec<FileTensor>, Vec<FileTensor>) {
    let config = &ctx.config;
    let tokens = |name: &str| FileTensor {
        name: name.to_string(),
        datatype: DataType::Int64,
        shape: vec![-1, -1],
    };
    let mut inputs = vec![tokens(INPUT_IDS), tokens(ATTENTION_MASK)];
    let types_declared = config.inputs.iter().any(|t| t.name == TOKEN_TYPE_IDS);
    let types_tokenized = config
        .tokenizer
        .as_ref()
        .is_some_and(|t| t.outputs.contains(&TokenOutput::TokenTypeIds));
    if types_declared || types_tokenized {
        inputs.push(tokens(TOKEN_TYPE_IDS));
    }
    let output = FileTensor {
        name: config
            .outputs
            .first()
            .map_or(DEFAULT_OUTPUT, |t| t.name.as_str())
            .to_string(),
        datatype: DataType::Fp32,
        shape: vec![-1, hidden as i64],
    };
    (inputs, vec![output])
}

impl Backend for CandleBackend {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn infer(&mut self, batch: Batch) -> Result<Vec<Tensor>> {
        let started = Instant::now();
        let [ids, mask, types] = self.tokens(&batch.inputs)?;
        let converted = Instant::now();
        let (encoder, embedding) = (&self.encoder, &self.embedding);
        let pooled = self
            .threads
            .install(|| {
                let states = encoder.model.forward(&ids, &types, Some(&mask))?;
                pooling::pool(&states, &mask, embedding)?.to_vec2::<f32>()
            })
            .map_err(|e| Error::Inference {
                model: self.metadata.name.clone(),
                message: format!("candle: {e}"),
            })?;
        let computed = Instant::now();
        let rows = pooled.len() as i64;
        let hidden = self.encoder.config.hidden_size as i64;
        let values: Vec<f32> = pooled.into_iter().flatten().collect();
        let output = Tensor::from_slice(
            self.metadata.outputs[0].name.clone(),
            vec![rows, hidden],
            &values,
        )?;
        self.timing = Some(CallTiming {
            input: converted - started,
            compute: computed - converted,
            output: computed.elapsed(),
        });
        Ok(vec![output])
    }

    /// Every call runs inside the instance's own rayon pool, whoever makes it.
    fn runs_on_any_thread(&self) -> bool {
        true
    }

    fn last_timing(&self) -> Option<CallTiming> {
        self.timing
    }
}

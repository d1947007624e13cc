//! Reading a published encoder's own files: `config.json` (BERT only, checked before
//! anything else is read) and its weights, as `model.safetensors` or a PyTorch state
//! dict `pytorch_model.bin`.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

/// The encoder and the config it was built from.
pub(crate) struct Encoder {
    pub model: BertModel,
    pub config: Config,
    /// The weights file it came from, for the load log.
    pub weights: &'static str,
}

/// Loads the BERT encoder in `dir` on the CPU, in FP32.
pub(crate) fn load_encoder(dir: &Path) -> Result<Encoder, String> {
    let config = read_config(&dir.join("config.json"))?;
    let device = Device::Cpu;
    let (weights, vb) = weights(dir, &device)?;
    let model = BertModel::load(vb, &config).map_err(|e| {
        format!("the weights in `{weights}` do not fit config.json's BERT encoder: {e}")
    })?;
    Ok(Encoder {
        model,
        config,
        weights,
    })
}

/// `config.json`, refused unless it describes a BERT encoder candle's BERT runs as is.
pub(crate) fn read_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not JSON: {e}", path.display()))?;
    let model_type = value.get("model_type").and_then(|v| v.as_str());
    if model_type != Some("bert") {
        let architectures = value
            .get("architectures")
            .map_or_else(|| "none given".to_string(), |a| a.to_string());
        return Err(format!(
            "`{}` describes a model of type {} (architectures: {architectures}); the candle \
             bridge runs BERT encoders (`\"model_type\": \"bert\"`, e.g. all-MiniLM-L6-v2, \
             bge, e5) only: export other models to ONNX and serve them through the onnx or \
             tract bridge",
            path.display(),
            model_type.map_or_else(|| "(no `model_type`)".to_string(), |t| format!("`{t}`")),
        ));
    }
    let config: Config = serde_json::from_value(value).map_err(|e| {
        format!(
            "`{}`: not a BERT config candle can run: {e}",
            path.display()
        )
    })?;
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(format!(
            "`{}`: `hidden_size` {} is not a multiple of `num_attention_heads` {}",
            path.display(),
            config.hidden_size,
            config.num_attention_heads
        ));
    }
    Ok(config)
}

/// The weights beside config.json: safetensors first, else a PyTorch state dict.
fn weights(dir: &Path, device: &Device) -> Result<(&'static str, VarBuilder<'static>), String> {
    let safetensors = dir.join("model.safetensors");
    if safetensors.is_file() {
        let tensors = candle_core::safetensors::load(&safetensors, device)
            .map_err(|e| format!("cannot read `{}`: {e}", safetensors.display()))?;
        return Ok((
            "model.safetensors",
            VarBuilder::from_tensors(tensors, DType::F32, device),
        ));
    }
    let state_dict = dir.join("pytorch_model.bin");
    if state_dict.is_file() {
        tensors_fit_their_data(&state_dict)
            .map_err(|e| format!("cannot read `{}`: {e}", state_dict.display()))?;
        let vb = VarBuilder::from_pth(&state_dict, DType::F32, device)
            .map_err(|e| format!("cannot read `{}`: {e}", state_dict.display()))?;
        return Ok(("pytorch_model.bin", vb));
    }
    Err(format!(
        "`{}` holds config.json but no weights: expected `model.safetensors` or \
         `pytorch_model.bin` beside it (a sharded checkpoint is not supported)",
        dir.display()
    ))
}

/// Every tensor a PyTorch state dict declares fits in the data the file holds for it.
/// candle allocates a tensor of the declared shape before reading its data, so a file
/// of a kilobyte declaring [2^30, 16384] would abort the process (70 TB); here it is a
/// load error of its model.
fn tensors_fit_their_data(path: &Path) -> Result<(), String> {
    let infos =
        candle_core::pickle::read_pth_tensor_info(path, false, None).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    for info in infos {
        let held = zip
            .index_for_name(&info.path)
            .and_then(|i| zip.by_index_raw(i).ok())
            .map(|entry| entry.size())
            .ok_or_else(|| {
                format!(
                    "tensor `{}`: no data `{}` in the file",
                    info.name, info.path
                )
            })?;
        // In u128 and checked: the dims are the file's, their product may overflow.
        let needed = info
            .layout
            .dims()
            .iter()
            .try_fold(1u128, |n, &d| n.checked_mul(d as u128))
            .and_then(|n| n.checked_add(info.layout.start_offset() as u128))
            .and_then(|n| n.checked_mul(info.dtype.size_in_bytes() as u128))
            .unwrap_or(u128::MAX);
        if needed > u128::from(held) {
            return Err(format!(
                "tensor `{}` declares shape {:?} of {:?} ({needed} bytes), but the file holds \
                 {held} bytes of data for it",
                info.name,
                info.layout.dims(),
                info.dtype
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI_BERT: &str = r#"{"model_type": "bert", "architectures": ["BertModel"],
        "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 8, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "max_position_embeddings": 16, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;

    fn error_of(config: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        match load_encoder(dir.path()) {
            Ok(_) => panic!("loaded"),
            Err(e) => e,
        }
    }

    #[test]
    fn other_architectures_are_refused_naming_them() {
        let e = error_of(r#"{"model_type": "roberta", "architectures": ["RobertaModel"]}"#);
        assert!(
            e.contains("type `roberta`") && e.contains("RobertaModel") && e.contains("BERT"),
            "{e}"
        );
        let e = error_of("{}");
        assert!(e.contains("no `model_type`"), "{e}");
        let e = error_of("not json");
        assert!(e.contains("is not JSON"), "{e}");
        let e = error_of(&MINI_BERT.replace("\"gelu\"", "\"swish\""));
        assert!(e.contains("swish"), "{e}");
    }

    #[test]
    fn missing_weights_are_named() {
        let e = error_of(MINI_BERT);
        assert!(
            e.contains("no weights") && e.contains("model.safetensors"),
            "{e}"
        );
    }
}

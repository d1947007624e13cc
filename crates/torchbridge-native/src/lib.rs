//! The pure-Rust bridges, and the tokenizer stage: nothing to install but the binary.
//!
//! Why this crate exists: every other bridge needs a large native runtime beside the
//! binary (CPython and torch, libtorch, ONNX Runtime). What is here links only Rust
//! crates, so a `torchbridge` built with `--no-default-features --features
//! native,server` runs in a minimal container with nothing else installed.
//!
//! - **`tract`** (cargo feature `tract`): any `model.onnx` exported from PyTorch, run by
//!   tract-onnx. The model is optimised once at load with the batch dimension kept
//!   symbolic (one symbol `N` for dim 0 of every input when the model batches), so one
//!   plan serves every batch size up to `max_batch_size`. Operators tract does not
//!   implement are refused at load, naming the operator and the node.
//! - **`candle`** (cargo feature `candle`): a BERT-family sentence encoder served from its
//!   published files (`config.json`, `model.safetensors` or `pytorch_model.bin`) with no
//!   export step, by candle's BERT; token states are pooled (mean over the attention
//!   mask, or `[CLS]`) and optionally L2-normalised as `[embedding]` in config.toml says.
//! - **the tokenizer stage** (cargo feature `tokenizer`): a `[tokenizer]` table in
//!   config.toml turns a BYTES input of strings into `input_ids` / `attention_mask` /
//!   `token_type_ids` with the `tokenizers` crate (built without its C and C++ parts)
//!   before any bridge runs. It is a [`Backend`](torchbridge_core::Backend) decorator, so
//!   it works in front of every bridge, native or not.

#[cfg(feature = "candle")]
mod candle;
#[cfg(feature = "tokenizer")]
mod tokenizer;
#[cfg(feature = "tract")]
mod tract;

#[cfg(feature = "candle")]
pub use candle::{candle_version, load as load_candle};
#[cfg(feature = "tokenizer")]
pub use tokenizer::with_tokenizer;
#[cfg(feature = "tract")]
pub use tract::{load, tract_version};

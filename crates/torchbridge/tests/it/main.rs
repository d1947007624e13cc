//! End-to-end tests of the library through every bridge, on fixture models that
//! `tests/fixtures/make_fixtures.py` generates with real torch at test time.
//! One test binary, modules by topic.

mod batching;
#[cfg(all(feature = "server", feature = "onnx", feature = "torchscript"))]
mod bench;
#[cfg(all(feature = "candle", feature = "tokenizer"))]
mod candle;
#[cfg(all(feature = "python", feature = "torchscript", feature = "onnx"))]
mod cli;
mod common;
mod concurrency;
mod errors;
mod leaks;
mod misbehaving;
mod parity;
mod reference;
mod timing;
#[cfg(feature = "tokenizer")]
mod tokenizer;
#[cfg(feature = "tract")]
mod tract;
mod warmup;

//! The onnx bridge against the real ONNX Runtime, on models PyTorch exports at test
//! time (`tests/fixtures/make_models.py`, run once per test process with the project's
//! virtualenv). Expected outputs come from PyTorch; floats must agree within 1e-5
//! relative (1e-5 absolute below magnitude 1), everything else exactly.

mod config;
mod fixtures;
mod inference;
mod runtime;

//! The python bridge against a real embedded CPython and torch, with models written by
//! `tests/fixtures/make_models.py`. One interpreter per process: every test here
//! shares it, as models in one server do.

mod errors;
mod fixtures;
mod forms;
mod gpu;
mod scopes;
mod venvs;
mod zero_copy;

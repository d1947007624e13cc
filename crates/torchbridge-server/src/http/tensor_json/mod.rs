//! Tensor data as JSON, the server's hot path in both directions.
//!
//! Decoding ([`DataSeed`]) walks an input's `data` array (flat or nested, flattened in
//! row-major order) and writes each number straight into the little-endian buffer of its
//! datatype, checking its range; no `serde_json::Value` is built per element. Numbers
//! and booleans go through a hand-written scanner over the value's raw text (`scan`,
//! with the per-datatype rules in `element`), which is most of a JSON request's cost;
//! `BYTES` elements are strings, read by serde and stored length-prefixed as in
//! [`Tensor`]; `FP16`/`BF16` are plain numbers.
//!
//! Encoding ([`write_data`]) prints the elements into the response buffer with `itoa` and
//! `ryu`; NaN and the infinities as the literals `NaN`, `Infinity` and `-Infinity`, as
//! Triton writes and reads them (JSON has none; Python's json and rapidjson read them).
//! serde_json refuses those literals, so a request holding them has them quoted first
//! ([`quote_non_finite`]), and the scanner takes both forms.
//!
//! [`Tensor`]: torchbridge_core::Tensor

mod decode;
mod element;
mod encode;
mod non_finite;
mod scan;

pub use decode::{DataSeed, Decoded};
pub use encode::write_data;
pub use non_finite::quote_non_finite;

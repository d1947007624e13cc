//! HTTP/REST (axum): see the crate docs.

//! gRPC (tonic): see the crate docs.

//! Fuzz target: `torchbridge_server::fuzzing::grpc_request` (see that function for the input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| torchbridge_server::fuzzing::grpc_request(data));

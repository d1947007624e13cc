//! Compiles `proto/` into Rust with protox (pure Rust: no `protoc` binary needed) and
//! tonic-prost-build. Tensor payloads are generated as `bytes::Bytes`, so request bytes
//! reach a `Tensor` without a copy.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(["grpc_service.proto", "health.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .bytes(".inference.InferTensorContents.bytes_contents")
        .compile_fds(files)?;
    Ok(())
}

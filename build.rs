//! Compiles `proto/grpc_service.proto` into the tonic service and prost
//! messages, with `protox` (a protobuf compiler in Rust), so building needs
//! no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_service.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        // Tensor bytes are sliced from the request buffer, never copied.
        .bytes(".inference")
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}

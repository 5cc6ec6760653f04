//! Generates the gRPC and JSON code for the contract in `proto/`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("focalpoint_descriptor.bin");
    let protos = [
        "proto/focalpoint/v1/messages.proto",
        "proto/focalpoint/v1/peer.proto",
        "proto/focalpoint/v1/log.proto",
        "proto/focalpoint/v1/operator.proto",
    ];
    let mut config = prost_build::Config::new();
    // A protoc on PATH or in PROTOC wins; otherwise the vendored one, so no system package is needed.
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &protos, &["proto"])?;
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        // A zero count or an empty list is an answer too: every field is written, defaults included.
        .emit_fields()
        .build(&[".focalpoint"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

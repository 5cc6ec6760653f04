//! The generated contract (`proto/focalpoint/v1`), with its JSON mapping.
#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::nursery
)]

tonic::include_proto!("focalpoint.v1");
include!(concat!(env!("OUT_DIR"), "/focalpoint.v1.serde.rs"));

/// The encoded file descriptor set of the contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/focalpoint_descriptor.bin"));

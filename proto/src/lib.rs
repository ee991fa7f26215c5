//! ibsweep's wire format, generated from `proto/ibsweep/v1/*.proto` at build time by
//! tonic-prost-build with protox (no system `protoc`).
//!
//! Bump [`PROTOCOL_VERSION`] with any change a peer of the old version would misread.
//! [`connect`] is the one way clients (commands and workers) reach a coordinator.

pub mod connect;

/// Sent by workers at registration; the coordinator refuses any other.
pub const PROTOCOL_VERSION: u32 = 3;

/// Everything in package `ibsweep.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, missing_debug_implementations)]
    tonic::include_proto!("ibsweep.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ibsweep_descriptor");
}

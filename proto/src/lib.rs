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

impl v1::RegisterRequest {
    /// A first registration of a CPU worker at this build's protocol version: what tools
    /// that drive the protocol themselves (benches, harnesses, tests) send.
    pub fn cpu(name: impl Into<String>, threads: u32) -> v1::RegisterRequest {
        v1::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: name.into(),
            threads,
            device: "cpu".into(),
            previous_worker_id: String::new(),
        }
    }
}

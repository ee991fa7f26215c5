//! ibsweep's wire format, generated from `proto/ibsweep/v1/*.proto` at build time by
//! tonic-prost-build with protox (no system `protoc`).
//!
//! Bump [`PROTOCOL_VERSION`] with any change a peer of the old version would misread.
//!
//! # Layout
//! - [`v1`]: the generated messages and services.
//! - [`convert`]: the shared vocabulary (job specs, splits, result rows) to and from the
//!   wire, once for every peer.
//! - [`connect`]: the one way clients (commands and workers) reach a coordinator; every
//!   call carries [`PROTOCOL_HEADER`].

pub mod connect;
pub mod convert;

/// Sent by workers at registration and by every client in [`PROTOCOL_HEADER`]; the
/// coordinator refuses any other. 4: typed claims, splits, job specs and result rows.
/// 5: job specs carry `measure.estimators`; chunks and result rows carry other
/// estimators' estimates.
pub const PROTOCOL_VERSION: u32 = 5;

/// The request header that carries the client's [`PROTOCOL_VERSION`]. Clients of
/// protocol 3 and older do not send it, so the coordinator can name their version too.
pub const PROTOCOL_HEADER: &str = "ibsweep-protocol";

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

impl v1::Lease {
    /// What `worker_id` presents with every call about this lease.
    pub fn claim(&self, worker_id: &str) -> v1::LeaseClaim {
        v1::LeaseClaim {
            worker_id: worker_id.to_string(),
            job_id: self.job_id.clone(),
            fencing_token: self.fencing_token,
            lease_secret: self.lease_secret.clone(),
        }
    }
}

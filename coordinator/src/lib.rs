//! The ibsweep coordinator: a durable job store, leases with fencing, histogram ingest and
//! MI results, served over gRPC. No libtorch here.
//!
//! # Layout
//! - [`ids`]: newtype IDs (sweep, job, worker, fencing token).
//! - [`store`]: the `JobStore` trait and its sled and in-memory implementations.
//! - [`metrics`]: Prometheus counters and gauges, `/metrics`, gRPC latency by method.
//! - [`lifecycle`]: a job's states and transitions, pure (no store, no clock).
//! - [`records`]: what the store holds: records, typed keys, typed tables.
//! - [`checkpoints`]: checkpoint files beside the store, written durably before use.
//! - [`scheduler`]: the lifecycle applied to a store: control (submit, cancel, retry),
//!   leasing, ingest, queries; an in-memory index keeps scans off the hot paths.
//! - [`security`]: tokens with roles, mutual TLS for workers, server resource limits.
//! - [`service`]: the gRPC services and `serve`.
//! - [`cli`]: the `coordinator` command line, one module per command.
//! - [`report`]: plots and the reproduction's tables, from result rows; used by the CLI
//!   only, never by the server.
//! - [`parquet`]: result rows as Parquet (the CLI's `--out FILE.parquet`, the HTTP API).
//! - [`client`]: the client library the commands use (one connection path: TLS, token).
//! - [`clock`]: injectable time for leases.
//! - [`error`]: the crate's error type and its mapping to gRPC status codes.
//! - `harness`: request fuzzing harness (the fuzz target and a proptest share it).

pub mod backup;
pub mod checkpoints;
pub mod cli;
pub mod client;
pub mod clock;
pub mod error;
#[doc(hidden)]
pub mod harness;
pub mod ids;
pub mod lifecycle;
pub mod metrics;
pub mod parquet;
pub mod records;
pub mod report;
pub mod scheduler;
pub mod security;
pub mod service;
pub mod store;

pub use error::{Error, Result};

//! What the attach loop needs from a coordinator, in the worker's own types: the network
//! edge as a trait, so the loop is written once and driven by the real gRPC client
//! ([`super::grpc::GrpcApi`]) or by a fake that fails on cue ([`super::fake`]).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use ibsweep_shared::job::JobSpec;
use ibsweep_shared::results::{EstimateColumns, Measurement};

/// Who this worker is, as it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub threads: u32,
    pub device: String,
    /// The ID this process was given before a reconnect, so its record (and live lease)
    /// is reused.
    pub previous: Option<String>,
}

/// The coordinator's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub worker_id: String,
    pub heartbeat_interval: Duration,
}

/// Who holds which lease: what every call about a job presents. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Claim {
    pub worker_id: String,
    pub job_id: String,
    pub token: u64,
    pub secret: String,
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("worker_id", &self.worker_id)
            .field("job_id", &self.job_id)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A stored checkpoint: its last epoch, size and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub epoch: u32,
    pub size: u64,
    pub sha256: String,
}

/// A granted lease.
#[derive(Debug, Clone)]
pub struct Lease {
    pub claim: Claim,
    pub attempt: u32,
    /// The job, or why its spec could not be read (the job is then reported as failed,
    /// so a spec this worker cannot use ends as `failed` instead of circulating).
    pub spec: Result<JobSpec, String>,
    /// Resume from this checkpoint.
    pub resume: Option<CheckpointInfo>,
    /// Upload a checkpoint after the last epoch too.
    pub final_checkpoint: bool,
}

/// What a lease request brought.
#[derive(Debug, Clone)]
pub enum Offer {
    Lease(Box<Lease>),
    /// No job is pending: ask again after this long.
    RetryAfter(Duration),
}

/// One histogram, or one piece of a large one, with the numbers that travel with it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPiece {
    /// Unique per attempt; a resent piece keeps its number, so it is counted once.
    pub sequence: u64,
    pub key: Measurement,
    /// The `IBH1` bytes (empty for estimates).
    pub bytes: Vec<u8>,
    pub piece: u32,
    pub pieces: u32,
    /// Instead of a histogram: one layer's estimates from the job's other estimators.
    pub estimates: Option<Vec<EstimateColumns>>,
}

/// What a finished job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub train_indices_hash: String,
    pub test_indices_hash: String,
    /// Histogram pieces sent in this attempt, checked against what arrived.
    pub pieces: u64,
}

/// What a refused or failed call means for the worker; every call is classified the same
/// way, so the answer to one status code is the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient (network, coordinator restarting or overloaded): try again with backoff.
    Retry,
    /// The coordinator no longer counts this lease as ours: drop the job, lease again.
    LeaseLost,
    /// Retrying cannot help (a protocol mismatch, a request refused as malformed).
    Fatal,
}

/// A call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub disposition: Disposition,
    pub message: String,
}

impl CallError {
    pub fn new(disposition: Disposition, message: impl Into<String>) -> CallError {
        CallError { disposition, message: message.into() }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The coordinator as the attach loop sees it. Cloned into the heartbeat task, so clones
/// share one connection.
pub trait CoordinatorApi: Clone + Send + Sync + 'static {
    fn register(&self, registration: &Registration) -> impl Future<Output = Result<Registered, CallError>> + Send;
    fn lease(&self, worker_id: &str) -> impl Future<Output = Result<Offer, CallError>> + Send;
    /// Keeps the lease alive; true when the job was cancelled.
    fn heartbeat(&self, claim: &Claim, epoch: u32) -> impl Future<Output = Result<bool, CallError>> + Send;
    /// One measured split's pieces, as one stream.
    fn upload(&self, claim: &Claim, pieces: &[HistogramPiece]) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Returns the rows stored.
    fn complete(&self, claim: &Claim, completion: &Completion) -> impl Future<Output = Result<u64, CallError>> + Send;
    fn fail(&self, claim: &Claim, reason: &str, release: bool) -> impl Future<Output = Result<(), CallError>> + Send;
    /// Returns the histograms committed with it.
    fn upload_checkpoint(
        &self,
        claim: &Claim,
        epoch: u32,
        bytes: &[u8],
    ) -> impl Future<Output = Result<u64, CallError>> + Send;
    /// The lease's checkpoint bytes, not yet checked against `info`.
    fn download_checkpoint(
        &self,
        claim: &Claim,
        info: &CheckpointInfo,
    ) -> impl Future<Output = Result<Vec<u8>, CallError>> + Send;
    fn discard_checkpoint(&self, claim: &Claim, reason: &str) -> impl Future<Output = Result<(), CallError>> + Send;
}

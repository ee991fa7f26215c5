//! The coordinator's one error type, and its one mapping to gRPC status codes.

use crate::ids::{BadId, JobId, LeaseToken, SweepId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("sweep {0} not found; `coordinator status` lists the sweeps")]
    SweepNotFound(SweepId),
    #[error("job {0} not found")]
    JobNotFound(JobId),
    #[error("worker not registered: {0}; restart the worker so it registers again")]
    UnknownWorker(String),
    /// A fenced call from an old lease (the job was re-leased since, or finished). The
    /// message names only the caller's own token, never the live one.
    #[error("stale lease for job {job}: token {token} is no longer current ({detail})")]
    StaleLease { job: JobId, token: LeaseToken, detail: String },
    /// A call about a lease that another worker holds.
    #[error("job {job}: this worker does not hold its lease")]
    WrongWorker { job: JobId },
    #[error("{0}")]
    FailedPrecondition(String),
    /// Bytes that do not match their checksum (a checkpoint upload or file).
    #[error("{0}")]
    DataLoss(String),
    /// A configured limit was reached (workers, connections, ...).
    #[error("{0}")]
    ResourceExhausted(String),
    /// `got` is a version, or "3 or older" for a client that sends no version header.
    #[error(
        "this client speaks ibsweep protocol {got}; this coordinator speaks protocol {want}: use a worker and a \
         `coordinator` command from the same release as the coordinator"
    )]
    ProtocolMismatch { got: String, want: u32 },
    #[error("store: {0}")]
    Store(String),
    #[error("the store at {path} has format version {found}, this coordinator reads {expected}")]
    FormatVersion { path: String, found: String, expected: String },
    #[error("corrupt record in tree {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
}

impl Error {
    /// A lifecycle refusal about `job`, as the caller sees it.
    pub fn refused(job: JobId, refusal: crate::lifecycle::Refusal) -> Error {
        use crate::lifecycle::Refusal;
        match refusal {
            Refusal::Stale { token, detail } => Error::StaleLease { job, token, detail },
            Refusal::WrongWorker => Error::WrongWorker { job },
            other @ (Refusal::NotPending(_) | Refusal::NotFailed(_)) => {
                Error::FailedPrecondition(format!("job {job}: {other}"))
            }
        }
    }
}

impl From<crate::lifecycle::CountError> for Error {
    fn from(e: crate::lifecycle::CountError) -> Self {
        Error::Corrupt { tree: "sweeps", detail: e.to_string() }
    }
}

impl From<BadId> for Error {
    fn from(e: BadId) -> Self {
        Error::InvalidArgument(e.0)
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(message),
            Error::SweepNotFound(_) | Error::JobNotFound(_) => tonic::Status::not_found(message),
            Error::UnknownWorker(_) => tonic::Status::not_found(message),
            Error::ResourceExhausted(_) => tonic::Status::resource_exhausted(message),
            Error::DataLoss(_) => tonic::Status::data_loss(message),
            Error::StaleLease { .. }
            | Error::WrongWorker { .. }
            | Error::FailedPrecondition(_)
            | Error::ProtocolMismatch { .. } => tonic::Status::failed_precondition(message),
            Error::Store(_) | Error::FormatVersion { .. } | Error::Corrupt { .. } => tonic::Status::internal(message),
        }
    }
}

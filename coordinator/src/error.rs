//! The coordinator's one error type, and its one mapping to gRPC status codes.

use crate::ids::{JobId, LeaseToken, SweepId};

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
    /// A fenced call from an old lease (the job was re-leased since, or finished).
    #[error("stale lease for job {job}: token {token} is no longer current ({detail})")]
    StaleLease { job: JobId, token: LeaseToken, detail: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("protocol version {got} is not supported; this coordinator speaks version {want}: upgrade the worker")]
    ProtocolMismatch { got: u32, want: u32 },
    #[error("store: {0}")]
    Store(String),
    #[error("the store at {path} has format version {found}, this coordinator reads {expected}")]
    FormatVersion { path: String, found: String, expected: String },
    /// A store transaction lost a race; the store reruns it, so callers never see this.
    #[error("transaction conflict")]
    Conflict,
    #[error("corrupt record in tree {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
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
            Error::UnknownWorker(_) => tonic::Status::unauthenticated(message),
            Error::StaleLease { .. } | Error::FailedPrecondition(_) | Error::ProtocolMismatch { .. } => {
                tonic::Status::failed_precondition(message)
            }
            Error::Store(_) | Error::FormatVersion { .. } | Error::Corrupt { .. } | Error::Conflict => {
                tonic::Status::internal(message)
            }
        }
    }
}

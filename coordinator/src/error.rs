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
    /// A write refused because the store's file system is full (or over quota). Nothing of
    /// the refused request was applied; the coordinator reopens the store by itself once
    /// space returns, so a client only has to retry.
    #[error(
        "the store at {dir} cannot write: no space left on its file system ({free} free); nothing of this \
         request was applied, and writes resume by themselves once space is freed"
    )]
    StorageFull { dir: String, free: String },
    /// The store failed and could not be reopened in this process: only a restart can help
    /// (`coordinator serve` exits with [`EXIT_STORE_LOST`]).
    #[error("the store at {dir} failed and could not be reopened: {detail}; restart the coordinator")]
    StoreLost { dir: String, detail: String },
    /// A store that sled cannot open, or whose records fail ibsweep's own checks.
    #[error(
        "the store at {dir} is damaged: {detail}. Nothing was served from it. Move it aside and restore the last \
         backup (`coordinator restore FILE --data-dir NEW_DIR`); `coordinator verify --data-dir {dir}` lists \
         every problem"
    )]
    Damaged { dir: String, detail: String },
    #[error("the store at {path} has format version {found}, this coordinator reads {expected}")]
    FormatVersion { path: String, found: String, expected: String },
    #[error("corrupt record in tree {tree}: {detail}")]
    Corrupt { tree: &'static str, detail: String },
}

/// `coordinator serve`'s exit code when the store failed in a way only a restart can fix
/// (EX_TEMPFAIL): a supervisor should restart it.
pub const EXIT_STORE_LOST: u8 = 75;
/// Exit code of `serve` and `verify` for a damaged store (EX_DATAERR): restarting cannot
/// help; restore a backup.
pub const EXIT_STORE_DAMAGED: u8 = 65;

/// Whether an IO error means "no space": ENOSPC, or EDQUOT on a file system with quotas.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// Free space of the file system holding `dir`, for messages ("unknown" if it cannot be read).
pub fn free_space(dir: &std::path::Path) -> String {
    match fs2::available_space(dir) {
        Ok(bytes) => human_bytes(bytes),
        Err(_) => "unknown".into(),
    }
}

/// `1.5 MiB`, `312 KiB`, `17 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

impl Error {
    /// The exit code `coordinator serve` ends with for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::StoreLost { .. } => EXIT_STORE_LOST,
            Error::Damaged { .. } | Error::Corrupt { .. } => EXIT_STORE_DAMAGED,
            _ => 1,
        }
    }

    /// An IO error on a file under `dir`: [`Error::StorageFull`] when it means no space.
    pub fn io(dir: &std::path::Path, what: impl std::fmt::Display, e: std::io::Error) -> Error {
        if is_no_space(&e) {
            Error::StorageFull { dir: dir.display().to_string(), free: free_space(dir) }
        } else {
            Error::Store(format!("{what}: {e}"))
        }
    }

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
            Error::ResourceExhausted(_) | Error::StorageFull { .. } => tonic::Status::resource_exhausted(message),
            Error::DataLoss(_) => tonic::Status::data_loss(message),
            Error::StaleLease { .. }
            | Error::WrongWorker { .. }
            | Error::FailedPrecondition(_)
            | Error::ProtocolMismatch { .. } => tonic::Status::failed_precondition(message),
            Error::StoreLost { .. } => tonic::Status::unavailable(message),
            Error::Store(_) | Error::FormatVersion { .. } | Error::Corrupt { .. } | Error::Damaged { .. } => {
                tonic::Status::internal(message)
            }
        }
    }
}

//! The worker's one error type. `main` turns it into a message and an exit code.

use std::path::PathBuf;

use ibsweep_shared::job::SpecError;
use ibsweep_shared::measure::MeasureError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data set file is missing or corrupt.
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    /// The user's input (flags, npy files, job file) is unusable.
    #[error("{0}")]
    InvalidInput(String),
    /// This machine could not provide what a run needs (a thread, a runtime, a signal
    /// handler): not the input's fault, and not retried.
    #[error("{0}")]
    Setup(String),
    /// A checkpoint that cannot be used: damaged, of another job, or of another layout.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The coordinator refused this worker or one of its calls for good (a protocol
    /// mismatch, a wrong token): retrying cannot help.
    #[error("the coordinator refused {what}: {message}")]
    Refused { what: &'static str, message: String },
    #[error("invalid job: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Measure(#[from] MeasureError),
    #[error(transparent)]
    Estimator(#[from] crate::estimators::EstimatorError),
    /// NaN or infinite activations: the run cannot be measured.
    #[error("training diverged at epoch {epoch}, layer {layer}: {detail}")]
    Diverged { epoch: u32, layer: String, detail: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The run stopped before its last epoch, as asked.
    #[error("stopped: {0}")]
    Stopped(Stop),
    /// `worker run` was interrupted; what it measured is kept.
    #[error("stopped; what was measured so far is in {}", measured_in.display())]
    Interrupted { measured_in: PathBuf },
    /// The training thread panicked.
    #[error("training panicked: {0}")]
    Panicked(String),
}

/// Why a training run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Whoever runs the job asked (Ctrl-C, a cancelled job, a lost lease, a shutdown).
    Requested,
    /// A checkpoint was taken after `epoch`, then the run stopped: a worker draining
    /// before it shuts down.
    Drained { epoch: u32 },
    /// Whoever consumed the run's events went away.
    Abandoned,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Requested => f.write_str("asked to stop"),
            Stop::Drained { epoch } => write!(f, "stopped after a checkpoint at epoch {epoch}"),
            Stop::Abandoned => f.write_str("nothing is reading the run's results any more"),
        }
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// Exit code for the command line: 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidInput(_) | Error::Spec(_) | Error::Data { .. } | Error::Estimator(_) => 2,
            Error::Measure(
                MeasureError::BadBinSize(_) | MeasureError::Shape { .. } | MeasureError::LabelRange { .. },
            ) => 2,
            Error::Stopped(_) | Error::Interrupted { .. } => 130,
            _ => 1,
        }
    }
}

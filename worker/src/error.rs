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
    #[error("invalid job: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// NaN or infinite activations: the run cannot be measured.
    #[error("training diverged at epoch {epoch}, layer {layer}: {detail}")]
    Diverged { epoch: u32, layer: String, detail: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Stopped by the user (Ctrl-C) or a cancelled job.
    #[error("stopped: {0}")]
    Stopped(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// Exit code for the command line: 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::InvalidInput(_) | Error::Spec(_) | Error::Data { .. } => 2,
            Error::Measure(
                MeasureError::BadBinSize(_) | MeasureError::Shape { .. } | MeasureError::LabelRange { .. },
            ) => 2,
            Error::Stopped(_) => 130,
            _ => 1,
        }
    }
}

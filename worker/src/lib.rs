//! The ibsweep worker: trains the paper's CNNs with libtorch and measures every layer.
//!
//! # Layout
//! - [`data`]: MNIST / Fashion-MNIST IDX loading and the job's seeded subsets.
//! - [`model`]: the CNN built from a job spec, exposing every measured layer.
//! - [`train`]: training and per-epoch measurement of one job (on the caller's thread).
//! - [`adam`]: Adam with its state in plain tensors, so it can be checkpointed.
//! - [`checkpoint`]: the training state as a safetensors file, for resume.
//! - [`run`]: `worker run`, one job locally with outputs on disk.
//! - [`attach`]: `worker --coordinator URL`, the lease/train/upload loop.
//! - [`estimators`]: KDE bounds, matrix-based Rényi entropy and sliced MI on a sample of a
//!   layer, the estimators that see inside wide layers.
//! - [`epoch_estimates`]: those estimators inside each measured epoch's pass.
//! - [`estimate`]: `worker estimate` on npy activations.
//! - [`cli`]: the command line.
//! - [`error`]: the crate's error type.

pub mod adam;
pub mod attach;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod epoch_estimates;
pub mod error;
pub mod estimate;
pub mod estimators;
pub mod model;
pub mod run;
pub mod train;

pub use error::{Error, Result};

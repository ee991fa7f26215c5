//! ibsweep's shared vocabulary and science: no libtorch, no networking.
//!
//! # Layout
//! - [`job`]: one job's parameters ([`job::JobSpec`]), their validation and layer shapes.
//! - [`measure`]: binning, pattern hashing, mergeable histograms and the MI estimator.
//! - [`results`]: the MI result row and its CSV form.

pub mod job;
pub mod measure;
pub mod results;

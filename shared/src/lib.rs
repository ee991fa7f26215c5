//! ibsweep's shared vocabulary and science: no libtorch, no networking.
//!
//! # Layout
//! - [`estimators`]: the `measure.estimators` section (KDE, Rényi, sliced MI parameters).
//! - [`grid`]: grid files, lazily expanded into job specs.
//! - [`job`]: one job's parameters ([`job::JobSpec`]), their validation and layer shapes.
//! - [`measure`]: binning, pattern hashing, mergeable histograms and the MI estimator.
//! - [`results`]: the MI result row and its CSV form.

pub mod estimators;
pub mod grid;
pub mod job;
pub mod measure;
pub mod results;

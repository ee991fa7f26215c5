//! Measurement: binning activations into patterns, mergeable per-label histograms, and the
//! plug-in mutual-information estimator of `../shared/design.md` §1.
//!
//! - [`binning`]: `floor(h / bin_size)` in f64 for several bin sizes in one pass, and the
//!   128-bit pattern hash of every sample's code vector.
//! - [`histogram`]: pattern hash -> counts per label; `merge` sums, bytes round-trip.
//! - [`estimator`]: H(T), I(X;T), H(T|Y), I(Y;T), H(Y) in bits from integer counts.
//! - [`profile`]: the multiset of per-pattern count vectors, which is all the estimator needs
//!   once a histogram is final.

pub mod binning;
pub mod estimator;
pub mod histogram;
pub mod profile;

pub use binning::{Activation, BinSize, Binner};
pub use estimator::Estimate;
pub use histogram::{LayerAccumulator, LayerHistogram};
pub use profile::CountProfile;

/// What can go wrong while measuring; every variant says which input was at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MeasureError {
    #[error("non-finite activation {value} at sample {sample}, feature {feature}")]
    NonFinite { sample: usize, feature: usize, value: f64 },
    #[error("bin size {0} is not a positive finite number")]
    BadBinSize(f64),
    #[error("batch of {len} values is not a whole number of samples of {features} features")]
    Shape { len: usize, features: usize },
    #[error("{labels} labels for {samples} samples")]
    LabelCount { labels: usize, samples: usize },
    #[error("label {label} outside 0..{n_labels}")]
    LabelRange { label: u32, n_labels: usize },
    #[error("cannot merge histograms with {left} and {right} labels")]
    LabelMismatch { left: usize, right: usize },
    #[error("corrupt histogram bytes: {0}")]
    Corrupt(String),
    #[error("counts overflow 64 bits (corrupt or hostile input)")]
    CountOverflow,
    #[error("code {code} of feature {feature} does not fit in 64 bits")]
    CodeOverflow { feature: usize, code: f64 },
}

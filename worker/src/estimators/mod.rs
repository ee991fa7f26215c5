//! Estimators that keep resolution where binning cannot: in a wide deterministic layer
//! almost every sample gets its own bin, so binning reads log2 N whatever the network
//! learned. These see the geometry of the activations instead:
//!
//! - [`kde`]: Kolchinsky–Tracey upper (KL) and lower (Bhattacharyya) bounds on the MI of
//!   the layer plus Gaussian noise, as Saxe et al. (2018) compute them in `ibsgd`.
//! - [`renyi`]: matrix-based Rényi α-entropy of Gram matrices (Sánchez Giraldo, Rao and
//!   Príncipe 2015), as in `representation-itl`.
//! - [`sliced`]: sliced MI between the layer and the label (Goldfeld and Greenewald 2021),
//!   a k-nearest-neighbour estimate per random projection, as in `SMI-DNN`.
//!
//! All work on one [`Sample`]: M rows of a layer (f64, CPU) and their labels. Pairwise
//! squared distances are computed once ([`Sample::squared_distances`]) and shared by every
//! noise variance, σ and α. Results are in bits.

pub mod kde;
pub mod renyi;
pub mod sliced;

use tch::{Device, Kind, Tensor};

/// Why an estimator cannot run on its input, named for the person who gave it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimatorError {
    #[error("non-finite value {value} at sample {sample}, feature {feature}")]
    NonFinite { sample: usize, feature: usize, value: f64 },
    #[error("every sample is identical (a constant layer): {0} is undefined")]
    Constant(&'static str),
    #[error("class {class} has {count} samples; {estimator} needs at least {needed} per class")]
    SmallClass { class: u32, count: usize, needed: usize, estimator: &'static str },
    #[error("{name} must be a positive finite number, got {value}")]
    NotPositive { name: &'static str, value: f64 },
    #[error("{0}")]
    Shape(String),
}

pub type Result<T, E = EstimatorError> = std::result::Result<T, E>;

/// The precision of the matrix products (the Gram matrix `X Xᵀ`, the projections `X Θ`).
/// Everything after them (distances, exponentials, logs, eigenvalues) is f64 either way.
///
/// f32 products are 4-5x faster on a CPU. Their error stays small because the rows are
/// centred first and the squared norms are summed in f64; the diagonal is exactly 0. The
/// result agrees with the f64 reference code to 1e-3 bits. f64 agrees to 1e-6 bits
/// (`worker/tests/estimators_reference.rs` checks both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    #[default]
    F32,
    F64,
}

/// M samples of one layer (or of the inputs) with their labels.
#[derive(Debug)]
pub struct Sample {
    /// M x D, f64, on the CPU.
    values: Tensor,
    labels: Vec<u32>,
    /// Per class present, in label order: the label and its rows' indices.
    classes: Vec<(u32, Vec<i64>)>,
}

impl Sample {
    /// `values` is M rows of `features` values each (C order).
    pub fn new(values: &[f64], features: usize, labels: &[u32]) -> Result<Sample> {
        if features == 0 || values.is_empty() || !values.len().is_multiple_of(features) {
            return Err(EstimatorError::Shape(format!(
                "{} values do not form rows of {features} features",
                values.len()
            )));
        }
        let m = values.len() / features;
        if labels.len() != m {
            return Err(EstimatorError::Shape(format!("{m} samples but {} labels", labels.len())));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(EstimatorError::NonFinite { sample: i / features, feature: i % features, value: values[i] });
        }
        let values = Tensor::from_slice(values).view([m as i64, features as i64]).to_device(Device::Cpu);
        Ok(Sample { values, labels: labels.to_vec(), classes: group_by_class(labels) })
    }

    /// From an M x D tensor of any float kind and device (copied to f64 on the CPU).
    pub fn from_tensor(values: &Tensor, labels: &[u32]) -> Result<Sample> {
        let [m, features] = values.size()[..] else {
            return Err(EstimatorError::Shape(format!("a tensor of shape {:?}; expected M x D", values.size())));
        };
        let flat = to_vec(values);
        if flat.len() != (m * features) as usize {
            return Err(EstimatorError::Shape(format!("{} values for {m} x {features}", flat.len())));
        }
        Sample::new(&flat, features as usize, labels)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    pub fn features(&self) -> usize {
        self.values.size()[1] as usize
    }

    pub(crate) fn classes(&self) -> &[(u32, Vec<i64>)] {
        &self.classes
    }

    /// Refuses a layer whose samples are all equal: every estimator here divides by a
    /// spread (a distance, a bandwidth) that is then zero.
    pub(crate) fn check_not_constant(&self, estimator: &'static str) -> Result<()> {
        let spread = (self.values.max_dim(0, false).0 - self.values.min_dim(0, false).0).max().double_value(&[]);
        if spread == 0.0 { Err(EstimatorError::Constant(estimator)) } else { Ok(()) }
    }

    /// M x M squared Euclidean distances, `|x|² + |y|² - 2 x·y` as the reference code
    /// computes them (one matrix product), clamped at 0 against rounding, diagonal exactly 0.
    pub fn squared_distances(&self, precision: Precision) -> Tensor {
        let x = match precision {
            Precision::F64 => self.values.shallow_clone(),
            // Distances do not change under translation; centred rows have smaller norms,
            // so less of the f32 product's rounding survives the subtraction.
            Precision::F32 => &self.values - self.values.mean_dim([0i64].as_slice(), true, Kind::Double),
        };
        let norms = (&x * &x).sum_dim_intlist([1i64].as_slice(), true, Kind::Double);
        let gram = match precision {
            Precision::F64 => symmetric_gram(&x),
            Precision::F32 => symmetric_gram(&x.to_kind(Kind::Float)).to_kind(Kind::Double),
        };
        let mut d = (&norms + norms.tr() - gram * 2.0).clamp_min(0.0);
        let _ = d.fill_diagonal_(0.0, false);
        d
    }

    /// `X Θ` for projection columns Θ (D x P), as f64.
    pub(crate) fn project(&self, projections: &Tensor, precision: Precision) -> Tensor {
        match precision {
            Precision::F64 => self.values.matmul(&projections.to_kind(Kind::Double)),
            Precision::F32 => {
                self.values.to_kind(Kind::Float).matmul(&projections.to_kind(Kind::Float)).to_kind(Kind::Double)
            }
        }
    }
}

/// `X Xᵀ` computing only the blocks on and above the diagonal and mirroring the rest:
/// libtorch has no symmetric rank-k product, and with four row blocks this does 10 of the
/// 16 block products (BLAS's `syrk`, which NumPy reaches for `a @ a.T`, does half).
fn symmetric_gram(x: &Tensor) -> Tensor {
    const BLOCKS: i64 = 4;
    let m = x.size()[0];
    if m < 4 * BLOCKS {
        return x.matmul(&x.tr());
    }
    let step = (m + BLOCKS - 1) / BLOCKS;
    let gram = Tensor::zeros([m, m], (x.kind(), x.device()));
    let starts: Vec<i64> = (0..m).step_by(step as usize).collect();
    for (bi, &i) in starts.iter().enumerate() {
        let rows_i = x.narrow(0, i, step.min(m - i));
        for &j in &starts[bi..] {
            let rows_j = x.narrow(0, j, step.min(m - j));
            let block = rows_i.matmul(&rows_j.tr());
            gram.narrow(0, i, rows_i.size()[0]).narrow(1, j, rows_j.size()[0]).copy_(&block);
            if i != j {
                gram.narrow(0, j, rows_j.size()[0]).narrow(1, i, rows_i.size()[0]).copy_(&block.tr());
            }
        }
    }
    gram
}

/// Per class present, in label order: the label and the indices of its samples.
pub(crate) fn group_by_class(labels: &[u32]) -> Vec<(u32, Vec<i64>)> {
    let mut by_class: std::collections::BTreeMap<u32, Vec<i64>> = std::collections::BTreeMap::new();
    for (i, &y) in labels.iter().enumerate() {
        by_class.entry(y).or_default().push(i as i64);
    }
    by_class.into_iter().collect()
}

/// The rows and columns of `matrix` (M x M) that belong to `rows`.
pub(crate) fn block(matrix: &Tensor, rows: &[i64]) -> Tensor {
    let idx = Tensor::from_slice(rows);
    matrix.index_select(0, &idx).index_select(1, &idx)
}

/// NumPy's median: the mean of the two middle values for an even count.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

pub(crate) fn to_vec(t: &Tensor) -> Vec<f64> {
    let t = t.to_kind(Kind::Double).contiguous().view([-1]);
    let n = t.numel();
    let mut out = vec![0.0; n];
    t.copy_data(&mut out, n);
    out
}

pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 { Ok(value) } else { Err(EstimatorError::NotPositive { name, value }) }
}

pub(crate) const LN2: f64 = std::f64::consts::LN_2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_gram_is_the_full_product() {
        for m in [5, 16, 37, 64] {
            let x = Tensor::randn([m, 9], (Kind::Double, Device::Cpu));
            let diff = (symmetric_gram(&x) - x.matmul(&x.tr())).abs().max().double_value(&[]);
            assert!(diff < 1e-12, "m = {m}: {diff}");
        }
    }
}

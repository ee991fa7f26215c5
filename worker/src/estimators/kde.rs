//! Kolchinsky–Tracey bounds on the MI of a layer with Gaussian noise of variance v added
//! (Kolchinsky and Tracey 2017; Saxe et al. 2018, `ibsgd/kde.py` and the MI arithmetic of
//! its `MNIST_ComputeMI` notebook).
//!
//! The reference computes each entropy with its constants, `D/2 + (D/2) ln(2πv) + ln N -
//! mean_i logsumexp_j(-d_ij / 2v)`, and subtracts `H(T|X) = (D/2)(ln(2πv) + 1)`. At
//! D = 50,000 those constants are about 10⁴ nats, so we use the cancelled forms, which are
//! the same numbers without them:
//!
//! - `I(X;T)_upper = ln N - mean_i lse_j(-d_ij / 2v)`; the lower bound (Bhattacharyya) is
//!   the same with 4v in place of v, i.e. `-d_ij / 8v`.
//! - `I(Y;T) = I(X;T) - sum_y p(y) [ln N_y - mean_{i in y} lse_{j in y}(...)]`, with the
//!   same kernel width in both terms.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::{LN2, Result, Sample, block, median, positive};

/// One line of `worker estimate --estimator kde --json`: the keys are the interface.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KdeRow {
    pub estimator: &'static str,
    pub noise_variance: f64,
    pub n: usize,
    pub i_xt_upper: f64,
    pub i_xt_lower: f64,
    pub i_yt_upper: f64,
    pub i_yt_lower: f64,
}

/// `mean_i logsumexp_j(-d_ij * scale)`.
fn mean_lse(d: &Tensor, scale: f64) -> f64 {
    (d * -scale).logsumexp([1i64].as_slice(), false).mean(Kind::Double).double_value(&[])
}

/// Both bounds for each noise variance, from the sample's squared distances `d`.
pub fn kde(sample: &Sample, d: &Tensor, noise_variances: &[f64]) -> Result<Vec<KdeRow>> {
    let n = sample.len();
    let blocks: Vec<(f64, Tensor)> =
        sample.classes().iter().map(|(_, rows)| (rows.len() as f64, block(d, rows))).collect();
    noise_variances
        .iter()
        .map(|&v| {
            let v = positive("the noise variance", v)?;
            // I(X;T) and the conditional term at one kernel width, in nats.
            let at = |scale: f64| {
                let i_xt = (n as f64).ln() - mean_lse(d, scale);
                let conditional: f64 =
                    blocks.iter().map(|(n_y, d_y)| n_y / n as f64 * (n_y.ln() - mean_lse(d_y, scale))).sum();
                (i_xt, i_xt - conditional)
            };
            let (xu, yu) = at(1.0 / (2.0 * v));
            let (xl, yl) = at(1.0 / (8.0 * v));
            Ok(KdeRow {
                estimator: "kde",
                noise_variance: v,
                n,
                i_xt_upper: xu / LN2,
                i_xt_lower: xl / LN2,
                i_yt_upper: yu / LN2,
                i_yt_lower: yl / LN2,
            })
        })
        .collect()
}

/// The median over samples of the squared distance to the nearest other sample: the
/// scale a relative noise variance multiplies.
pub fn median_nearest_squared_distance(d: &Tensor) -> f64 {
    let mut others = d.copy();
    let _ = others.fill_diagonal_(f64::INFINITY, false);
    let nearest = others.min_dim(1, false).0;
    median(super::to_vec(&nearest))
}

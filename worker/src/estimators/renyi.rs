//! Matrix-based Rényi α-entropy (Sánchez Giraldo, Rao and Príncipe 2015), applied to CNNs
//! by Yu, Wickstrøm et al.; the arithmetic of `representation-itl`'s `matrix_itl.py`.
//!
//! A Gram matrix `K_ij = exp(-d_ij / 2σ²)` normalised by its trace, `A = K / tr K`, has
//! `S_α(A) = log2(Σ λ_i^α) / (1 - α)` over its positive eigenvalues (renormalised to sum
//! to 1, as the reference does against rounding). α = 2 needs no eigendecomposition:
//! `Σ λ² = ‖A‖_F²`; α = 1 is the von Neumann limit `-Σ λ log2 λ`. A joint entropy is the
//! entropy of the Hadamard product, so `I(X;T) = S(X) + S(T) - S(X,T)` with a Gaussian kernel
//! on the inputs, and `I(Y;T)` likewise with the label kernel `[y_i = y_j]`.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::{EstimatorError, Result, Sample, median, positive, to_vec};

/// One line of `worker estimate --estimator renyi --json`: the keys are the interface.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RenyiRow {
    pub estimator: &'static str,
    pub alpha: f64,
    pub sigma: f64,
    pub input_sigma: f64,
    pub n: usize,
    pub s_t: f64,
    pub s_x: f64,
    pub s_y: f64,
    pub i_xt: f64,
    pub i_yt: f64,
}

/// A kernel width: a number, the median pairwise distance of the data it is used on, or
/// the width best aligned with the label kernel ([`alignment_sigma`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sigma {
    Fixed(f64),
    Median,
    Alignment,
}

impl std::str::FromStr for Sigma {
    type Err = String;

    fn from_str(s: &str) -> Result<Sigma, String> {
        match s {
            "median" => Ok(Sigma::Median),
            "alignment" => Ok(Sigma::Alignment),
            number => number
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .map(Sigma::Fixed)
                .ok_or_else(|| format!("sigma must be a positive number, `median` or `alignment`, got `{number}`")),
        }
    }
}

impl Sigma {
    /// The width in the units of `d`'s square roots, for data labelled `labels`.
    pub fn resolve(self, d: &Tensor, labels: &[u32]) -> Result<f64> {
        match self {
            Sigma::Fixed(s) => positive("sigma", s),
            Sigma::Median => {
                let m = median_pairwise_distance(d);
                if m > 0.0 { Ok(m) } else { Err(EstimatorError::Constant("a median kernel width")) }
            }
            Sigma::Alignment => alignment_sigma(d, labels),
        }
    }
}

/// Candidate widths [`alignment_sigma`] tries, as the reference optimizer does.
pub const ALIGNMENT_CANDIDATES: usize = 300;

/// How much of a new epoch's best-aligned width enters the smoothed width
/// (`σ_t = β σ* + (1 − β) σ_{t−1}`), the reference optimizer's default.
pub const ALIGNMENT_SMOOTHING: f64 = 0.5;

/// The width whose Gaussian kernel best aligns with the label kernel `[y_i = y_j]`:
/// the largest `<K_σ, K_Y>_F / (‖K_σ‖_F ‖K_Y‖_F)` over [`ALIGNMENT_CANDIDATES`] widths
/// evenly spaced up to ten times the mean pairwise distance (Wickstrøm, Løkse, Kampffmeyer,
/// Yu, Príncipe and Jenssen's kernel-alignment choice, as their `AligmentOptimizer`).
/// Its kernel is ours, `exp(-d / 2σ²)`; the reference's `exp(-d / σ²)` is the same
/// family, so the chosen kernel is the same up to that grid's spacing.
pub fn alignment_sigma(d: &Tensor, labels: &[u32]) -> Result<f64> {
    let mean = pairwise_distances(d).mean(Kind::Double).double_value(&[]);
    if mean.is_nan() || mean <= 0.0 {
        return Err(EstimatorError::Constant("an alignment kernel width"));
    }
    let ky = label_gram(labels).to_device(d.device());
    let ky_norm = ky.sum(Kind::Double).double_value(&[]).sqrt(); // ‖K_Y‖_F: its entries are 0 or 1
    let d = d.to_kind(Kind::Double);
    let top = 10.0 * mean;
    let mut best = (f64::NEG_INFINITY, top);
    for i in 1..=ALIGNMENT_CANDIDATES {
        let sigma = top * i as f64 / ALIGNMENT_CANDIDATES as f64;
        let k = gaussian_gram(&d, sigma);
        let inner = (&k * &ky).sum(Kind::Double).double_value(&[]);
        let norm = k.square().sum(Kind::Double).double_value(&[]).sqrt();
        let alignment = inner / (norm * ky_norm);
        // The first of equal maxima, as the reference takes.
        if alignment > best.0 {
            best = (alignment, sigma);
        }
    }
    Ok(best.1)
}

/// The median distance over distinct pairs (i < j).
pub fn median_pairwise_distance(d: &Tensor) -> f64 {
    median(to_vec(&pairwise_distances(d)))
}

/// The distances of distinct pairs (i < j), from the squared-distance matrix `d`.
fn pairwise_distances(d: &Tensor) -> Tensor {
    let m = d.size()[0];
    let pairs = Tensor::triu_indices(m, m, 1, (Kind::Int64, d.device()));
    let index = pairs.get(0) * m + pairs.get(1);
    d.view([-1]).index_select(0, &index).sqrt()
}

/// `exp(-d / 2σ²)`.
pub fn gaussian_gram(d: &Tensor, sigma: f64) -> Tensor {
    (d * (-1.0 / (2.0 * sigma * sigma))).exp()
}

/// `[y_i = y_j]` as 0/1.
pub fn label_gram(labels: &[u32]) -> Tensor {
    let y = Tensor::from_slice(&labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    y.unsqueeze(1).eq_tensor(&y.unsqueeze(0)).to_kind(Kind::Double)
}

/// `S_α` of a Gram matrix, in bits.
pub fn entropy(k: &Tensor, alpha: f64) -> Result<f64> {
    let alpha = positive("alpha", alpha)?;
    let a = k / k.trace().double_value(&[]);
    if alpha == 2.0 {
        return Ok(-(&a * &a).sum(Kind::Double).double_value(&[]).log2());
    }
    let eigen = to_vec(&a.linalg_eigvalsh("L"));
    let positive: Vec<f64> = eigen.into_iter().filter(|&l| l > 0.0).collect();
    let total: f64 = positive.iter().sum();
    let p = positive.iter().map(|l| l / total);
    Ok(if alpha == 1.0 {
        -p.map(|l| l * l.log2()).sum::<f64>()
    } else {
        p.map(|l| l.powf(alpha)).sum::<f64>().log2() / (1.0 - alpha)
    })
}

/// `S_α` of the label kernel in closed form: `[y_i = y_j] / N` is block diagonal with one
/// block of ones per class, so its eigenvalues are the class proportions and `S_α(Y)` is
/// the Rényi entropy of the label distribution (Shannon's at α = 1). Saves an
/// eigendecomposition per α.
pub fn label_entropy(sample: &Sample, alpha: f64) -> Result<f64> {
    let alpha = positive("alpha", alpha)?;
    let n = sample.len() as f64;
    let p = sample.classes().iter().map(|(_, rows)| rows.len() as f64 / n);
    Ok(if alpha == 1.0 {
        -p.map(|q| q * q.log2()).sum::<f64>()
    } else {
        p.map(|q| q.powf(alpha)).sum::<f64>().log2() / (1.0 - alpha)
    })
}

/// S(X) of the inputs' kernel per (α, input σ): the inputs are the same for every layer
/// and epoch of a split, so a job computes each once instead of once per layer.
#[derive(Debug, Default)]
pub struct InputEntropies(std::collections::HashMap<(u64, u64), f64>);

/// S_T, S_X, S_Y and both MIs for each α, from the layer's and the inputs' squared
/// distances at the given widths.
pub fn renyi(
    layer: &Sample,
    layer_d: &Tensor,
    inputs_d: &Tensor,
    alphas: &[f64],
    sigma: f64,
    input_sigma: f64,
) -> Result<Vec<RenyiRow>> {
    renyi_cached(layer, layer_d, inputs_d, alphas, (sigma, input_sigma), &mut InputEntropies::default())
}

/// [`renyi`], reusing and filling `inputs`' S(X).
pub fn renyi_cached(
    layer: &Sample,
    layer_d: &Tensor,
    inputs_d: &Tensor,
    alphas: &[f64],
    (sigma, input_sigma): (f64, f64),
    inputs: &mut InputEntropies,
) -> Result<Vec<RenyiRow>> {
    let (sigma, input_sigma) = (positive("sigma", sigma)?, positive("the input sigma", input_sigma)?);
    if inputs_d.size() != layer_d.size() {
        return Err(EstimatorError::Shape(format!(
            "{} inputs for {} activations",
            inputs_d.size()[0],
            layer_d.size()[0]
        )));
    }
    let kt = gaussian_gram(layer_d, sigma);
    let kx = gaussian_gram(inputs_d, input_sigma);
    let ky = label_gram(layer.labels());
    let (kxt, kyt) = (&kx * &kt, &ky * &kt);
    alphas
        .iter()
        .map(|&alpha| {
            let s_x = match inputs.0.get(&(alpha.to_bits(), input_sigma.to_bits())) {
                Some(&s) => s,
                None => {
                    let s = entropy(&kx, alpha)?;
                    inputs.0.insert((alpha.to_bits(), input_sigma.to_bits()), s);
                    s
                }
            };
            let (s_t, s_y) = (entropy(&kt, alpha)?, label_entropy(layer, alpha)?);
            Ok(RenyiRow {
                estimator: "renyi",
                alpha,
                sigma,
                input_sigma,
                n: layer.len(),
                s_t,
                s_x,
                s_y,
                i_xt: s_x + s_t - entropy(&kxt, alpha)?,
                i_yt: s_y + s_t - entropy(&kyt, alpha)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_kernel_spectrum_is_the_class_distribution() {
        let labels: Vec<u32> = (0..60).map(|i| [0, 0, 0, 1, 1, 2][i % 6]).collect();
        let sample = Sample::new(&vec![0.0; 60], 1, &labels).unwrap();
        // Below α = 1 the spectrum's rounding-level positive eigenvalues (1e-17) weigh in
        // as λ^α, so there the two agree only to 1e-6.
        for (alpha, tolerance) in [(0.5, 1e-6), (1.0, 1e-10), (1.01, 1e-10), (2.0, 1e-10), (3.0, 1e-10)] {
            let closed = label_entropy(&sample, alpha).unwrap();
            let spectral = entropy(&label_gram(&labels), alpha).unwrap();
            assert!((closed - spectral).abs() < tolerance, "alpha {alpha}: {closed} vs {spectral}");
        }
        // Shannon at alpha = 1: p = (1/2, 1/3, 1/6).
        let h: f64 = [0.5f64, 1.0 / 3.0, 1.0 / 6.0].iter().map(|p| -p * p.log2()).sum();
        assert!((label_entropy(&sample, 1.0).unwrap() - h).abs() < 1e-12);
    }
}

//! Sliced mutual information `SMI(T;Y) = E_θ I(θᵀT; Y)` (Goldfeld and Greenewald 2021),
//! averaged over fixed projections θ, as `SMI-DNN`'s `compute_smi` with its `ksg_cd`
//! estimator computes it:
//!
//! `I(Z;Y) = |H(Z) - Σ_y p(y) H(Z | Y=y)|` per projection Z = θᵀT, each entropy the
//! Kozachenko–Leonenko k-nearest-neighbour estimate in one dimension,
//! `ψ(N) - ψ(k) + ln 2 + mean_i ln ε_i` with ε_i the distance to the k-th nearest other
//! sample. The reference breaks ties with 1e-10 uniform noise; we floor ε at
//! [`TIE_FLOOR`] instead, which is deterministic and the same on data without ties. The
//! absolute value is the reference's; we keep it so results compare.

use serde::Serialize;
use tch::Tensor;

use super::{EstimatorError, LN2, Precision, Result, Sample, group_by_class, to_vec};

/// Smallest k-NN distance used: the scale of the reference's tie-breaking noise.
pub const TIE_FLOOR: f64 = 1e-10;

/// One line of `worker estimate --estimator sliced --json`: the keys are the interface.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SlicedRow {
    pub estimator: &'static str,
    pub projections: usize,
    pub k: usize,
    pub n: usize,
    pub i_yt: f64,
    /// Standard error of the mean over projections.
    pub i_yt_stderr: f64,
}

/// ψ(n) for a positive integer: `-γ + Σ_{i<n} 1/i`, exact to rounding.
pub fn digamma(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    -EULER_GAMMA + (1..n).map(|i| 1.0 / i as f64).sum::<f64>()
}

/// Distance from each value to its k-th nearest other value (any order in, same order
/// out), from one sort: the k nearest of a point in one dimension are a window around it.
fn kth_neighbour_distances(values: &[f64], k: usize) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let sorted: Vec<f64> = order.iter().map(|&i| values[i]).collect();
    let mut out = vec![0.0; values.len()];
    for (p, &at) in order.iter().enumerate() {
        let (mut left, mut right) = (p, p + 1);
        let mut last = 0.0;
        for _ in 0..k {
            let dl = if left > 0 { sorted[p] - sorted[left - 1] } else { f64::INFINITY };
            let dr = if right < sorted.len() { sorted[right] - sorted[p] } else { f64::INFINITY };
            if dl <= dr {
                last = dl;
                left -= 1;
            } else {
                last = dr;
                right += 1;
            }
        }
        out[at] = last;
    }
    out
}

/// The 1-D Kozachenko–Leonenko entropy (nats) without the `ln 2 - ψ(k)` that cancels in
/// every MI here.
fn entropy_part(values: &[f64], k: usize) -> f64 {
    let eps = kth_neighbour_distances(values, k);
    digamma(values.len()) + eps.iter().map(|e| e.max(TIE_FLOOR).ln()).sum::<f64>() / values.len() as f64
}

/// `I(Z;Y)` of one projection, in nats.
fn projected_mi(z: &[f64], classes: &[(u32, Vec<i64>)], k: usize) -> f64 {
    let n = z.len() as f64;
    let conditional: f64 = classes
        .iter()
        .map(|(_, rows)| {
            let zy: Vec<f64> = rows.iter().map(|&i| z[i as usize]).collect();
            zy.len() as f64 / n * entropy_part(&zy, k)
        })
        .sum();
    (entropy_part(z, k) - conditional).abs()
}

/// SMI over the columns of `projections` (D x P), with its standard error, in bits.
pub fn sliced(sample: &Sample, projections: &Tensor, k: usize, precision: Precision) -> Result<SlicedRow> {
    let (d, p) = match projections.size()[..] {
        [d, p] => (d as usize, p as usize),
        ref other => return Err(EstimatorError::Shape(format!("projections of shape {other:?}; expected D x P"))),
    };
    if d != sample.features() {
        return Err(EstimatorError::Shape(format!(
            "projections for {d} features, the layer has {}",
            sample.features()
        )));
    }
    if p < 2 {
        return Err(EstimatorError::Shape(format!("{p} projection(s); give at least 2 for a standard error")));
    }
    if k == 0 {
        return Err(EstimatorError::NotPositive { name: "k", value: 0.0 });
    }
    check_class_sizes(sample.classes(), k)?;
    sample.check_not_constant("sliced MI")?;
    // P x N: one projection's values are contiguous.
    let z = to_vec(&sample.project(projections, precision).tr());
    Ok(from_columns(&z, p, sample.len(), sample.classes(), k))
}

/// SMI from values already projected (N x P, row-major: one sample's P projections
/// together, as a measurement pass produces them batch by batch) and the N labels.
pub fn sliced_projected(z: &[f64], p: usize, labels: &[u32], k: usize) -> Result<SlicedRow> {
    let n = labels.len();
    if p < 2 || z.len() != n * p {
        return Err(EstimatorError::Shape(format!("{} projected values for {n} samples x {p} projections", z.len())));
    }
    let classes = group_by_class(labels);
    check_class_sizes(&classes, k)?;
    if let Some(i) = z.iter().position(|v| !v.is_finite()) {
        return Err(EstimatorError::NonFinite { sample: i / p, feature: i % p, value: z[i] });
    }
    let mut columns = vec![0.0; z.len()];
    for (i, row) in z.chunks(p).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            columns[j * n + i] = v;
        }
    }
    Ok(from_columns(&columns, p, n, &classes, k))
}

/// The k-NN estimate needs k other samples of a point's own class.
fn check_class_sizes(classes: &[(u32, Vec<i64>)], k: usize) -> Result<()> {
    match classes.iter().find(|(_, rows)| rows.len() < k + 1) {
        Some((class, rows)) => {
            Err(EstimatorError::SmallClass { class: *class, count: rows.len(), needed: k + 1, estimator: "sliced" })
        }
        None => Ok(()),
    }
}

/// The mean and standard error over projections, from P contiguous columns of N values.
fn from_columns(z: &[f64], p: usize, n: usize, classes: &[(u32, Vec<i64>)], k: usize) -> SlicedRow {
    let mis: Vec<f64> = z.chunks(n).map(|zp| projected_mi(zp, classes, k) / LN2).collect();
    let mean = mis.iter().sum::<f64>() / p as f64;
    let variance = mis.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (p - 1) as f64;
    SlicedRow { estimator: "sliced", projections: p, k, n, i_yt: mean, i_yt_stderr: (variance / p as f64).sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kth_neighbours_in_one_dimension() {
        let v = [0.0, 10.0, 1.0, 3.0, 7.0];
        assert_eq!(kth_neighbour_distances(&v, 1), vec![1.0, 3.0, 1.0, 2.0, 3.0]);
        assert_eq!(kth_neighbour_distances(&v, 2), vec![3.0, 7.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn digamma_of_integers() {
        assert!((digamma(1) + 0.577_215_664_901_532_9).abs() < 1e-15);
        assert!((digamma(10) - 2.251_752_589_066_721).abs() < 1e-14);
    }
}

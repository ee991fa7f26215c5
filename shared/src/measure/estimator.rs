//! The plug-in estimator of design §1 "Estimator", in bits.
//!
//! Everything is computed from integer counts as `H = log2 N - (1/N) sum c log2 c`, so the
//! design's identities hold to rounding: all-distinct patterns give exactly `log2 N` (every
//! `c log2 c` is 0) and `I(Y;T) = H(Y)` (the same expression), and a single pattern gives 0.

use serde::{Deserialize, Serialize};

use super::MeasureError;

/// One histogram's information quantities, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Number of samples.
    pub n: u64,
    /// Number of distinct patterns.
    pub distinct: u64,
    pub h_t: f64,
    /// Equal to `h_t`: the network is deterministic and X uniform over the samples.
    pub i_xt: f64,
    pub h_t_given_y: f64,
    pub i_yt: f64,
    pub h_y: f64,
}

fn xlog2x(count: u64) -> f64 {
    if count <= 1 {
        0.0
    } else {
        let c = count as f64;
        c * c.log2()
    }
}

impl Estimate {
    /// From per-pattern label-count vectors.
    pub fn from_rows<'a>(n_labels: usize, rows: impl Iterator<Item = &'a [u64]>) -> Result<Estimate, MeasureError> {
        Estimate::from_weighted_rows(n_labels, rows.map(|row| (row, 1)))
    }

    /// From (label-count vector, number of patterns with exactly that vector) pairs, which is
    /// how a finalized histogram is stored (see [`super::CountProfile`]).
    ///
    /// Every count may come from the wire, so the sums are checked: a set of counts whose
    /// total does not fit in 64 bits is an error, never a wrapped-around number.
    pub fn from_weighted_rows<'a>(
        n_labels: usize,
        rows: impl Iterator<Item = (&'a [u64], u64)>,
    ) -> Result<Estimate, MeasureError> {
        let mut per_label = vec![0u64; n_labels];
        let mut sum_pattern = 0.0; // sum over patterns of c_t log2 c_t
        let mut sum_joint = 0.0; // sum over patterns and labels of c_ty log2 c_ty
        let mut distinct = 0u64;
        for (row, patterns) in rows {
            let weight = patterns as f64;
            let mut total = 0u64;
            let mut joint = 0.0;
            for (slot, &count) in per_label.iter_mut().zip(row) {
                *slot =
                    count.checked_mul(patterns).and_then(|c| slot.checked_add(c)).ok_or(MeasureError::CountOverflow)?;
                total = total.checked_add(count).ok_or(MeasureError::CountOverflow)?;
                joint += xlog2x(count);
            }
            if total > 0 {
                distinct = distinct.checked_add(patterns).ok_or(MeasureError::CountOverflow)?;
            }
            sum_pattern += weight * xlog2x(total);
            sum_joint += weight * joint;
        }
        let n = per_label.iter().try_fold(0u64, |acc, &c| acc.checked_add(c)).ok_or(MeasureError::CountOverflow)?;
        if n == 0 {
            return Ok(Estimate { n: 0, distinct: 0, h_t: 0.0, i_xt: 0.0, h_t_given_y: 0.0, i_yt: 0.0, h_y: 0.0 });
        }
        let nf = n as f64;
        let log_n = nf.log2();
        let sum_label: f64 = per_label.iter().map(|&c| xlog2x(c)).sum();
        // Rounding can put a quantity a few ulps outside its mathematical range (a single
        // pattern gives log2 N - (N log2 N) / N = -1e-16); clamp to the range, nothing more.
        let h_t = (log_n - sum_pattern / nf).clamp(0.0, log_n);
        let h_y = (log_n - sum_label / nf).clamp(0.0, log_n);
        // sum_y p(y) H(T|Y=y) with H(T|Y=y) = log2 N_y - (1/N_y) sum_t c_ty log2 c_ty
        let h_t_given_y = ((sum_label - sum_joint) / nf).clamp(0.0, h_t);
        let i_yt = (h_t - h_t_given_y).min(h_y);
        Ok(Estimate { n, distinct, h_t, i_xt: h_t, h_t_given_y, i_yt, h_y })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(rows: &[&[u64]]) -> Estimate {
        Estimate::from_rows(rows[0].len(), rows.iter().copied()).unwrap()
    }

    #[test]
    fn hand_computed_case() {
        // Patterns A: labels (2, 0), B: (1, 1). N = 4.
        // H(T) = -(1/2 log 1/2 + 1/2 log 1/2) = 1; H(Y) = -(3/4 log 3/4 + 1/4 log 1/4) = 0.811278...
        // H(T|Y=0) over (2, 1): 0.918296...; H(T|Y=1) = 0; H(T|Y) = 3/4 * 0.918296 = 0.688722
        let e = estimate(&[&[2, 0], &[1, 1]]);
        assert_eq!((e.n, e.distinct), (4, 2));
        assert!((e.h_t - 1.0).abs() < 1e-12);
        let h_y = -(0.75f64 * 0.75f64.log2() + 0.25 * 0.25f64.log2());
        assert!((e.h_y - h_y).abs() < 1e-12);
        let h_t_y0 = -(2.0 / 3.0 * (2.0f64 / 3.0).log2() + 1.0 / 3.0 * (1.0f64 / 3.0).log2());
        assert!((e.h_t_given_y - 0.75 * h_t_y0).abs() < 1e-12);
        assert!((e.i_yt - (1.0 - 0.75 * h_t_y0)).abs() < 1e-12);
    }

    #[test]
    fn identities() {
        // All distinct: I(X;T) = log2 N, I(Y;T) = H(Y).
        let rows: Vec<Vec<u64>> = (0..10_000)
            .map(|i| {
                let mut r = vec![0; 10];
                r[(i * 7) % 10] = 1;
                r
            })
            .collect();
        let e = Estimate::from_rows(10, rows.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(e.h_t, 10_000f64.log2());
        assert!((e.h_t - 13.287712379549449).abs() < 1e-12);
        assert!((e.i_yt - e.h_y).abs() < 1e-12);
        // All equal: both 0.
        let e = estimate(&[&[3, 5, 0, 9]]);
        assert!(e.h_t == 0.0 && e.i_yt == 0.0, "{e:?}");
        // Empty.
        assert_eq!(estimate(&[&[0, 0]]).n, 0);
    }

    #[test]
    fn weighted_rows_equal_repeated_rows() {
        let plain = estimate(&[&[1, 0], &[1, 0], &[1, 0], &[0, 2]]);
        let weighted = Estimate::from_weighted_rows(2, [(&[1u64, 0][..], 3), (&[0, 2][..], 1)].into_iter()).unwrap();
        assert!(Estimate::from_weighted_rows(2, [(&[u64::MAX, 0][..], 2)].into_iter()).is_err());
        assert!(Estimate::from_rows(2, [&[u64::MAX, 1][..]].into_iter()).is_err());
        assert_eq!(plain, weighted);
    }
}

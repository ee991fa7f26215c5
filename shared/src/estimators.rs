//! The `measure.estimators` section: which estimators beyond binning a job computes at
//! each measured epoch, with their parameters.
//!
//! ```yaml
//! measure:
//!   estimators:
//!     kde: {noise_variance: [0.1], relative_noise: [0.1, 0.5], samples: 2000}
//!     renyi: {alpha: [1.01, 2], sigma: [median], samples: 2000}
//!     sliced: {projections: 256, k: 3}
//! ```
//!
//! Absent, the section is empty and left out of the canonical job form, so the IDs of
//! grids without it do not change.

use serde::{Deserialize, Serialize};

use crate::results::{EstimateColumns, Estimator, SigmaRule};

/// Classes in both data sets; a stratified sample takes `samples / CLASSES` of each.
const CLASSES: u32 = 10;

/// Largest sample of the O(M²) estimators: a 10,000 x 10,000 f64 matrix is 800 MB.
pub const MAX_SAMPLES: u32 = 10_000;
/// Most values of one list parameter (noise variances, α, σ).
pub const MAX_VALUES: usize = 16;
/// Most projections of sliced MI.
pub const MAX_PROJECTIONS: u32 = 4096;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimatorsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kde: Option<KdeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renyi: Option<RenyiSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliced: Option<SlicedSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<ActivationsSpec>,
}

/// Each layer's distribution of activation values over the whole split: a fixed-range
/// histogram, the saturation view Saxe et al. used to explain compression. The range is
/// the activation's own unless given: [-1, 1] for tanh, [0, 1] for the softmax output, and
/// [0, 4] for ReLU, which has no upper bound (values outside are counted apart, never
/// dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationsSpec {
    #[serde(default = "default_bins")]
    pub bins: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
}

fn default_bins() -> u32 {
    50
}

/// Kolchinsky–Tracey bounds at absolute noise variances and at variances relative to the
/// layer's median nearest-neighbour squared distance (at the first measured epoch, then
/// held fixed for the job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdeSpec {
    #[serde(default = "default_noise")]
    pub noise_variance: Vec<f64>,
    #[serde(default)]
    pub relative_noise: Vec<f64>,
    #[serde(default = "default_samples")]
    pub samples: u32,
}

/// Matrix-based Rényi entropies at each α and kernel width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenyiSpec {
    #[serde(default = "default_alpha")]
    pub alpha: Vec<f64>,
    #[serde(default = "default_sigma")]
    pub sigma: Vec<SigmaSpec>,
    /// The kernel width on the input images.
    #[serde(default = "default_input_sigma")]
    pub input_sigma: SigmaSpec,
    #[serde(default = "default_samples")]
    pub samples: u32,
}

/// A kernel width: a positive number, the median pairwise distance of the sample at the
/// first measured epoch (held fixed for the job), or `alignment` (chosen at every measured
/// epoch, smoothed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged, try_from = "RawSigma")]
pub enum SigmaSpec {
    Fixed(f64),
    Named(SigmaName),
}

impl SigmaSpec {
    /// How a row records this choice of width.
    pub fn rule(self) -> SigmaRule {
        match self {
            SigmaSpec::Fixed(_) => SigmaRule::Fixed,
            SigmaSpec::Named(SigmaName::Median) => SigmaRule::Median,
            SigmaSpec::Named(SigmaName::Alignment) => SigmaRule::Alignment,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigmaName {
    Median,
    /// Wickstrøm et al.'s choice: the width whose kernel best aligns with the label
    /// kernel, taken again at every measured epoch and smoothed over epochs (a layer's
    /// width only; the inputs' kernel has no epochs to smooth over).
    Alignment,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSigma {
    Number(f64),
    Name(String),
}

impl TryFrom<RawSigma> for SigmaSpec {
    type Error = String;

    fn try_from(raw: RawSigma) -> Result<SigmaSpec, String> {
        match raw {
            RawSigma::Number(v) => Ok(SigmaSpec::Fixed(v)),
            RawSigma::Name(name) if name == "median" => Ok(SigmaSpec::Named(SigmaName::Median)),
            RawSigma::Name(name) if name == "alignment" => Ok(SigmaSpec::Named(SigmaName::Alignment)),
            RawSigma::Name(name) => {
                Err(format!("sigma must be a positive number, `median` or `alignment`, got `{name}`"))
            }
        }
    }
}

/// Sliced MI over seeded random projections of the whole split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlicedSpec {
    #[serde(default = "default_projections")]
    pub projections: u32,
    #[serde(default = "default_k")]
    pub k: u32,
}

fn default_noise() -> Vec<f64> {
    vec![0.1]
}
fn default_samples() -> u32 {
    2000
}
fn default_alpha() -> Vec<f64> {
    vec![1.01, 2.0]
}
fn default_sigma() -> Vec<SigmaSpec> {
    vec![SigmaSpec::Named(SigmaName::Median)]
}
fn default_input_sigma() -> SigmaSpec {
    SigmaSpec::Named(SigmaName::Median)
}
fn default_projections() -> u32 {
    256
}
fn default_k() -> u32 {
    3
}

/// One result row a layer gets per measured epoch and split from one estimator setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpectedRow {
    pub estimator: Estimator,
    /// KDE: the absolute variance, or (`relative`) the factor of the median
    /// nearest-neighbour squared distance.
    pub noise: Option<(f64, bool)>,
    pub alpha: Option<f64>,
    pub sigma: Option<SigmaSpec>,
    pub input_sigma: Option<SigmaSpec>,
    /// Sliced MI: projections and k.
    pub sliced: Option<(u32, u32)>,
}

impl EstimatorsSpec {
    pub fn is_empty(&self) -> bool {
        self.kde.is_none() && self.renyi.is_none() && self.sliced.is_none() && self.activations.is_none()
    }

    /// Every row one layer gets per measured epoch and split, in the order the worker
    /// sends them: KDE's variances (absolute, then relative), upper then lower bound for
    /// each; Rényi's σ, each with every α; sliced MI. Activation histograms are not rows.
    pub fn expected_rows(&self) -> Vec<ExpectedRow> {
        let blank = |estimator| ExpectedRow {
            estimator,
            noise: None,
            alpha: None,
            sigma: None,
            input_sigma: None,
            sliced: None,
        };
        let mut out = Vec::new();
        if let Some(kde) = &self.kde {
            let noises =
                kde.noise_variance.iter().map(|&v| (v, false)).chain(kde.relative_noise.iter().map(|&r| (r, true)));
            for noise in noises {
                for estimator in [Estimator::KdeUpper, Estimator::KdeLower] {
                    out.push(ExpectedRow { noise: Some(noise), ..blank(estimator) });
                }
            }
        }
        if let Some(renyi) = &self.renyi {
            for &sigma in &renyi.sigma {
                for &alpha in &renyi.alpha {
                    out.push(ExpectedRow {
                        alpha: Some(alpha),
                        sigma: Some(sigma),
                        input_sigma: Some(renyi.input_sigma),
                        ..blank(Estimator::Renyi)
                    });
                }
            }
        }
        if let Some(sliced) = &self.sliced {
            out.push(ExpectedRow { sliced: Some((sliced.projections, sliced.k)), ..blank(Estimator::Sliced) });
        }
        out
    }

    /// Checks one layer's estimates (as a worker sent them for a split of `split_n`
    /// images) against what this section asks for, row by row; the error names the first
    /// row that does not fit and why.
    pub fn check_layer(&self, split_n: u64, got: &[EstimateColumns]) -> Result<(), String> {
        let expected = self.expected_rows();
        if got.len() != expected.len() {
            return Err(format!("{} estimates, but the job's estimators make {} per layer", got.len(), expected.len()));
        }
        let samples = u64::from(self.samples().unwrap_or(0));
        for (i, (e, c)) in expected.iter().zip(got).enumerate() {
            let bad = |why: String| Err(format!("estimate {} ({}): {why}", i + 1, c.estimator.as_str()));
            if c.estimator != e.estimator {
                return bad(format!("expected a {} estimate here", e.estimator.as_str()));
            }
            if let Some((name, v)) = c.numbers().find(|(_, v)| !v.is_finite()) {
                return bad(format!("{name} is {v}"));
            }
            let want_n = if e.estimator == Estimator::Sliced { split_n } else { samples };
            if c.n != want_n {
                return bad(format!("n is {}, expected {want_n}", c.n));
            }
            if (c.i_xt.is_some()) != e.estimator.has_i_xt() {
                return bad("i_xt must be given exactly when the estimator has one".into());
            }
            if e.estimator != Estimator::Sliced && c.sample_hash.as_deref().is_none_or(str::is_empty) {
                return bad("no sample hash".into());
            }
            let positive = |v: Option<f64>| v.is_some_and(|v| v > 0.0);
            if let Some((value, relative)) = e.noise {
                let fits = if relative {
                    c.relative_noise == Some(value) && positive(c.noise_variance)
                } else {
                    c.relative_noise.is_none() && c.noise_variance == Some(value)
                };
                if !fits {
                    return bad(format!(
                        "noise {:?} (relative {:?}) does not match the job's {value}{}",
                        c.noise_variance,
                        c.relative_noise,
                        if relative { " (relative)" } else { "" }
                    ));
                }
            }
            let sigma_fits = |spec: Option<SigmaSpec>, value: Option<f64>, rule: Option<SigmaRule>| match spec {
                None => value.is_none() && rule.is_none(),
                Some(spec) => {
                    rule == Some(spec.rule())
                        && match spec {
                            SigmaSpec::Fixed(s) => value == Some(s),
                            SigmaSpec::Named(_) => positive(value),
                        }
                }
            };
            if c.alpha != e.alpha
                || !sigma_fits(e.sigma, c.sigma, c.sigma_rule)
                || !sigma_fits(e.input_sigma, c.input_sigma, c.input_sigma_rule)
            {
                return bad("alpha or sigma does not match the job's".into());
            }
            if e.estimator == Estimator::Renyi && [c.h_t, c.h_y, c.h_x].iter().any(Option::is_none) {
                return bad("a Rényi estimate needs h_t, h_y and h_x".into());
            }
            if (c.projections.zip(c.k)) != e.sliced || (e.sliced.is_some() != c.i_yt_stderr.is_some()) {
                return bad("projections, k or the standard error do not match the job's".into());
            }
        }
        Ok(())
    }

    /// The subsample size the O(M²) estimators share ([`EstimatorsSpec::check`] makes
    /// KDE's and Rényi's equal when both are asked for).
    pub fn samples(&self) -> Option<u32> {
        [self.kde.as_ref().map(|k| k.samples), self.renyi.as_ref().map(|r| r.samples)].into_iter().flatten().max()
    }

    /// Checks every parameter. `smallest_split` is the fewest images a measured split
    /// has; the sample is drawn from each measured split.
    pub fn check(&self, smallest_split: u32) -> Result<(), String> {
        let positive_list = |name: &str, values: &[f64]| -> Result<(), String> {
            if values.len() > MAX_VALUES {
                return Err(format!("measure.estimators.{name} has {} values; at most {MAX_VALUES}", values.len()));
            }
            if let Some(v) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(format!("measure.estimators.{name} must be positive numbers, got {v}"));
            }
            if let Some((i, v)) = values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)) {
                let _ = i;
                return Err(format!("measure.estimators.{name} lists {v} twice"));
            }
            Ok(())
        };
        let samples = |name: &str, m: u32| -> Result<(), String> {
            if !(2 * CLASSES..=MAX_SAMPLES).contains(&m) || !m.is_multiple_of(CLASSES) {
                return Err(format!(
                    "measure.estimators.{name}.samples must be a multiple of {CLASSES} in {}..={MAX_SAMPLES} \
                     (a class-stratified sample), got {m}",
                    2 * CLASSES
                ));
            }
            if m > smallest_split {
                return Err(format!(
                    "measure.estimators.{name}.samples is {m}, more than the {smallest_split} images of a measured split"
                ));
            }
            Ok(())
        };
        if let Some(kde) = &self.kde {
            if kde.noise_variance.is_empty() && kde.relative_noise.is_empty() {
                return Err("measure.estimators.kde needs a noise_variance or a relative_noise".into());
            }
            positive_list("kde.noise_variance", &kde.noise_variance)?;
            positive_list("kde.relative_noise", &kde.relative_noise)?;
            samples("kde", kde.samples)?;
        }
        if let Some(renyi) = &self.renyi {
            if renyi.alpha.is_empty() || renyi.sigma.is_empty() {
                return Err("measure.estimators.renyi needs at least one alpha and one sigma".into());
            }
            positive_list("renyi.alpha", &renyi.alpha)?;
            let fixed: Vec<f64> = renyi
                .sigma
                .iter()
                .chain([&renyi.input_sigma])
                .filter_map(|s| match s {
                    SigmaSpec::Fixed(v) => Some(*v),
                    SigmaSpec::Named(_) => None,
                })
                .collect();
            if let Some(v) = fixed.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(format!(
                    "measure.estimators.renyi sigma must be positive, `median` or `alignment`, got {v}"
                ));
            }
            if renyi.input_sigma == SigmaSpec::Named(SigmaName::Alignment) {
                return Err("measure.estimators.renyi.input_sigma cannot be `alignment`: alignment picks a layer's \
                            width from its labels at every epoch, and the inputs have no epochs; give a number or \
                            `median`"
                    .into());
            }
            if renyi.sigma.len() > MAX_VALUES {
                return Err(format!("measure.estimators.renyi.sigma has more than {MAX_VALUES} values"));
            }
            if let Some(s) = renyi.sigma.iter().enumerate().find(|(i, s)| renyi.sigma[..*i].contains(s)).map(|p| p.1) {
                return Err(format!("measure.estimators.renyi.sigma lists {s:?} twice"));
            }
            samples("renyi", renyi.samples)?;
            if let Some(kde) = &self.kde
                && kde.samples != renyi.samples
            {
                return Err(format!(
                    "measure.estimators.kde.samples ({}) and renyi.samples ({}) must be equal: both see one sample",
                    kde.samples, renyi.samples
                ));
            }
        }
        if let Some(sliced) = &self.sliced {
            if !(2..=MAX_PROJECTIONS).contains(&sliced.projections) {
                return Err(format!(
                    "measure.estimators.sliced.projections must be 2..={MAX_PROJECTIONS}, got {}",
                    sliced.projections
                ));
            }
            if sliced.k == 0 || sliced.k > 100 {
                return Err(format!("measure.estimators.sliced.k must be 1..=100, got {}", sliced.k));
            }
        }
        if let Some(a) = &self.activations {
            if !(2..=10_000).contains(&a.bins) {
                return Err(format!("measure.estimators.activations.bins must be 2..=10000, got {}", a.bins));
            }
            if let Some([lo, hi]) = a.range
                && !(lo.is_finite() && hi.is_finite() && lo < hi)
            {
                return Err(format!(
                    "measure.estimators.activations.range must be [low, high] with low < high, got [{lo}, {hi}]"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<EstimatorsSpec, String> {
        let spec: EstimatorsSpec = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        spec.check(10_000).map(|()| spec)
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let spec = parse("{kde: {}, renyi: {sigma: [median, 3.5]}, sliced: {}}").unwrap();
        assert_eq!(spec.kde.as_ref().unwrap().noise_variance, vec![0.1]);
        assert_eq!(spec.renyi.as_ref().unwrap().alpha, vec![1.01, 2.0]);
        assert_eq!(
            spec.renyi.as_ref().unwrap().sigma,
            vec![SigmaSpec::Named(SigmaName::Median), SigmaSpec::Fixed(3.5)]
        );
        assert_eq!(spec.sliced.as_ref().unwrap().projections, 256);
        assert_eq!(spec.samples(), Some(2000));
        assert!(EstimatorsSpec::default().is_empty());
    }

    #[test]
    fn bad_parameters_are_refused_by_name() {
        for (yaml, needle) in [
            ("{kde: {noise_variance: [0]}}", "kde.noise_variance must be positive"),
            ("{kde: {noise_variance: [], relative_noise: []}}", "needs a noise_variance or a relative_noise"),
            ("{kde: {relative_noise: [0.5, 0.5]}}", "lists 0.5 twice"),
            ("{kde: {samples: 2005}}", "multiple of 10"),
            ("{kde: {samples: 20000}}", "multiple of 10 in 20..=10000"),
            ("{renyi: {sigma: [-1]}}", "sigma must be positive, `median` or `alignment`"),
            ("{renyi: {input_sigma: alignment}}", "input_sigma cannot be `alignment`"),
            ("{renyi: {sigma: [widest]}}", "`median` or `alignment`, got `widest`"),
            ("{sliced: {projections: 1}}", "projections must be 2..="),
            ("{sliced: {k: 0}}", "k must be 1..=100"),
            ("{binning: {}}", "binning"),
            ("{activations: {bins: 1}}", "bins must be 2..=10000"),
            ("{activations: {range: [1, -1]}}", "low < high"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}: expected `{needle}` in {err}");
        }
        let small = serde_saphyr::from_str::<EstimatorsSpec>("{kde: {samples: 2000}}").unwrap();
        assert!(small.check(1000).unwrap_err().contains("more than the 1000 images"));
    }

    #[test]
    fn a_layers_estimates_are_checked_row_by_row_against_the_spec() {
        let spec = parse("{kde: {noise_variance: [0.1], relative_noise: [0.5], samples: 200}, renyi: {alpha: [2], sigma: [median, 3], samples: 200}, sliced: {projections: 8}}").unwrap();
        let rows = spec.expected_rows();
        let names: Vec<&str> = rows.iter().map(|r| r.estimator.as_str()).collect();
        assert_eq!(names, ["kde-upper", "kde-lower", "kde-upper", "kde-lower", "renyi", "renyi", "sliced"]);
        let good: Vec<EstimateColumns> = rows
            .iter()
            .map(|r| {
                let mut c =
                    EstimateColumns::new(r.estimator, if r.estimator == Estimator::Sliced { 1000 } else { 200 }, 0.5);
                if r.estimator != Estimator::Sliced {
                    c.i_xt = Some(1.0);
                    c.sample_hash = Some("ab".into());
                }
                if let Some((v, relative)) = r.noise {
                    c.noise_variance = Some(if relative { v * 3.0 } else { v });
                    c.relative_noise = relative.then_some(v);
                }
                if r.estimator == Estimator::Renyi {
                    (c.h_t, c.h_y, c.h_x, c.alpha) = (Some(2.0), Some(3.3), Some(7.0), r.alpha);
                    (c.sigma, c.sigma_rule) = match r.sigma.unwrap() {
                        SigmaSpec::Fixed(s) => (Some(s), Some(SigmaRule::Fixed)),
                        SigmaSpec::Named(_) => (Some(1.5), Some(SigmaRule::Median)),
                    };
                    (c.input_sigma, c.input_sigma_rule) = (Some(9.0), Some(SigmaRule::Median));
                }
                if let Some((p, k)) = r.sliced {
                    (c.projections, c.k, c.i_yt_stderr) = (Some(p), Some(k), Some(0.01));
                }
                c
            })
            .collect();
        spec.check_layer(1000, &good).unwrap();
        assert!(spec.check_layer(1000, &good[1..]).unwrap_err().contains("6 estimates, but"));
        let mut bad = good.clone();
        bad[0].i_yt = f64::NAN;
        assert!(spec.check_layer(1000, &bad).unwrap_err().contains("estimate 1 (kde-upper): i_yt is NaN"));
        let mut bad = good.clone();
        bad[5].sigma = Some(4.0);
        assert!(spec.check_layer(1000, &bad).unwrap_err().contains("estimate 6 (renyi): alpha or sigma"));
        let mut bad = good.clone();
        bad[6].i_xt = Some(1.0);
        assert!(spec.check_layer(1000, &bad).unwrap_err().contains("i_xt must be given"));
        let mut bad = good.clone();
        bad[6].n = 200;
        assert!(spec.check_layer(1000, &bad).unwrap_err().contains("n is 200, expected 1000"));
        bad.swap(0, 4);
        assert!(spec.check_layer(1000, &bad).unwrap_err().contains("expected a kde-upper"));
        assert!(parse("{kde: {samples: 200}, renyi: {samples: 400}}").unwrap_err().contains("must be equal"));
    }
}

//! The shared vocabulary (`ibsweep_shared`) to and from its wire form, in one place for
//! every peer: the coordinator's services, its command line and the worker all convert
//! job specs, splits, measurements and result rows here, so a field added to one side
//! cannot be forgotten on the other.
//!
//! Domain to wire cannot fail. Wire to domain checks what protobuf cannot say (an enum
//! left unspecified, a missing message, a bin size that is not positive) and names the
//! field; a job spec is also validated as a whole, since it arrives from another process.

use std::fmt;

use ibsweep_shared::estimators::EstimatorsSpec;
use ibsweep_shared::job::{Activation, Dataset, EpochSchedule, JobSpec, MeasureSpec, Pooling, Sampling, Split};
use ibsweep_shared::measure::BinSize;
use ibsweep_shared::results::{EstimateColumns, Estimator, JobColumns, Measurement, MiRow, SigmaRule};

use crate::v1 as pb;

/// A message that does not describe a valid domain value; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

/// A protobuf enum field (an `i32`) as its domain value; unspecified and unknown values
/// are refused with the field's name.
fn enum_field<P, T>(field: &str, raw: i32, map: impl Fn(P) -> Option<T>) -> Result<T, WireError>
where
    P: TryFrom<i32>,
{
    P::try_from(raw).ok().and_then(map).ok_or_else(|| WireError(format!("{field}: unknown or unspecified value {raw}")))
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, WireError> {
    value.ok_or_else(|| WireError(format!("{field} is missing")))
}

impl From<Split> for pb::Split {
    fn from(split: Split) -> pb::Split {
        split_to(split)
    }
}

/// The split in field `field` of a message.
pub fn split(field: &str, raw: i32) -> Result<Split, WireError> {
    split_from(field, raw)
}

/// Both directions between a domain enum and its protobuf enum, variant by variant: to
/// the wire cannot fail; from it, unspecified and unknown values are refused by field.
macro_rules! enum_pair {
    ($to:ident, $from:ident, $domain:ty, $wire:ty, [$($d:path => $w:path),+ $(,)?]) => {
        fn $to(value: $domain) -> $wire {
            match value {
                $($d => $w),+
            }
        }

        fn $from(field: &str, raw: i32) -> Result<$domain, WireError> {
            enum_field(field, raw, |value: $wire| match value {
                $($w => Some($d),)+
                #[allow(unreachable_patterns)]
                _ => None,
            })
        }
    };
}

enum_pair!(dataset_to, dataset_from, Dataset, pb::Dataset, [
    Dataset::Mnist => pb::Dataset::Mnist,
    Dataset::FashionMnist => pb::Dataset::FashionMnist,
]);
enum_pair!(pooling_to, pooling_from, Pooling, pb::Pooling, [
    Pooling::None => pb::Pooling::None,
    Pooling::Max2 => pb::Pooling::Max2,
]);
enum_pair!(activation_to, activation_from, Activation, pb::Activation, [
    Activation::Tanh => pb::Activation::Tanh,
    Activation::Relu => pb::Activation::Relu,
]);
enum_pair!(sampling_to, sampling_from, Sampling, pb::Sampling, [
    Sampling::Random => pb::Sampling::Random,
    Sampling::PerClassWithReplacement => pb::Sampling::PerClassWithReplacement,
]);
enum_pair!(split_to, split_from, Split, pb::Split, [
    Split::Train => pb::Split::Train,
    Split::Test => pb::Split::Test,
]);

impl From<&EpochSchedule> for pb::EpochSchedule {
    fn from(schedule: &EpochSchedule) -> pb::EpochSchedule {
        use pb::epoch_schedule::{EpochList, Kind};
        let kind = match schedule {
            EpochSchedule::Every => Kind::Every(true),
            EpochSchedule::Log(n) => Kind::Log(*n),
            EpochSchedule::Paper => Kind::Paper(true),
            EpochSchedule::List(epochs) => Kind::List(EpochList { epochs: epochs.clone() }),
        };
        pb::EpochSchedule { kind: Some(kind) }
    }
}

impl TryFrom<pb::EpochSchedule> for EpochSchedule {
    type Error = WireError;
    fn try_from(schedule: pb::EpochSchedule) -> Result<Self, WireError> {
        use pb::epoch_schedule::Kind;
        Ok(match required("spec.measure.epochs", schedule.kind)? {
            Kind::Every(_) => EpochSchedule::Every,
            Kind::Log(n) => EpochSchedule::Log(n),
            Kind::Paper(_) => EpochSchedule::Paper,
            Kind::List(list) => EpochSchedule::List(list.epochs),
        })
    }
}

impl From<&MeasureSpec> for pb::MeasureSpec {
    fn from(m: &MeasureSpec) -> pb::MeasureSpec {
        pb::MeasureSpec {
            epochs: Some((&m.epochs).into()),
            splits: m.splits.iter().map(|&s| pb::Split::from(s) as i32).collect(),
            bin_sizes: m.bin_sizes.iter().map(|b| b.get()).collect(),
            keep_histograms: m.keep_histograms,
            estimators_json: if m.estimators.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&m.estimators).expect("estimators serialize")
            },
        }
    }
}

impl TryFrom<pb::MeasureSpec> for MeasureSpec {
    type Error = WireError;
    fn try_from(m: pb::MeasureSpec) -> Result<Self, WireError> {
        Ok(MeasureSpec {
            epochs: required("spec.measure.epochs", m.epochs)?.try_into()?,
            splits: m.splits.iter().map(|&s| split("spec.measure.splits", s)).collect::<Result<_, _>>()?,
            bin_sizes: m
                .bin_sizes
                .iter()
                .map(|&b| BinSize::new(b).map_err(|e| WireError(format!("spec.measure.bin_sizes: {e}"))))
                .collect::<Result<_, _>>()?,
            keep_histograms: m.keep_histograms,
            // Checked with the rest of the spec by `JobSpec::validate`.
            estimators: if m.estimators_json.is_empty() {
                EstimatorsSpec::default()
            } else {
                serde_json::from_str(&m.estimators_json)
                    .map_err(|e| WireError(format!("spec.measure.estimators_json: {e}")))?
            },
        })
    }
}

impl From<&JobSpec> for pb::JobSpec {
    fn from(s: &JobSpec) -> pb::JobSpec {
        pb::JobSpec {
            dataset: dataset_to(s.dataset) as i32,
            width: s.width,
            depth: s.depth,
            kernel: s.kernel,
            pooling: pooling_to(s.pooling) as i32,
            fc: s.fc.clone(),
            activation: activation_to(s.activation) as i32,
            seed: s.seed,
            epochs: s.epochs,
            batch_size: s.batch_size,
            lr: s.lr,
            train_size: s.train_size,
            test_size: s.test_size,
            sampling: sampling_to(s.sampling) as i32,
            measure: Some((&s.measure).into()),
            checkpoint_every: s.checkpoint_every,
            checkpoint_minutes: s.checkpoint_minutes,
            eval_every: s.eval_every,
        }
    }
}

impl TryFrom<pb::JobSpec> for JobSpec {
    type Error = WireError;
    fn try_from(s: pb::JobSpec) -> Result<Self, WireError> {
        let spec = JobSpec {
            dataset: dataset_from("spec.dataset", s.dataset)?,
            width: s.width,
            depth: s.depth,
            kernel: s.kernel,
            pooling: pooling_from("spec.pooling", s.pooling)?,
            fc: s.fc,
            activation: activation_from("spec.activation", s.activation)?,
            seed: s.seed,
            epochs: s.epochs,
            batch_size: s.batch_size,
            lr: s.lr,
            train_size: s.train_size,
            test_size: s.test_size,
            sampling: sampling_from("spec.sampling", s.sampling)?,
            measure: required("spec.measure", s.measure)?.try_into()?,
            checkpoint_every: s.checkpoint_every,
            checkpoint_minutes: s.checkpoint_minutes,
            eval_every: s.eval_every,
        };
        spec.validate().map_err(|e| WireError(format!("spec: {e}")))?;
        Ok(spec)
    }
}

impl From<&Measurement> for pb::Measurement {
    fn from(m: &Measurement) -> pb::Measurement {
        pb::Measurement {
            epoch: m.epoch,
            split: pb::Split::from(m.split) as i32,
            layer: m.layer,
            layer_name: m.layer_name.clone(),
            bin_size: m.bin_size,
            loss: m.loss,
            accuracy: m.accuracy,
        }
    }
}

impl TryFrom<pb::Measurement> for Measurement {
    type Error = WireError;
    fn try_from(m: pb::Measurement) -> Result<Self, WireError> {
        Ok(Measurement {
            epoch: m.epoch,
            split: split("measurement.split", m.split)?,
            layer: m.layer,
            layer_name: m.layer_name,
            bin_size: m.bin_size,
            loss: m.loss,
            accuracy: m.accuracy,
        })
    }
}

fn rule_to(rule: Option<SigmaRule>) -> String {
    match rule {
        None => String::new(),
        Some(SigmaRule::Fixed) => "fixed".into(),
        Some(SigmaRule::Median) => "median".into(),
        Some(SigmaRule::Alignment) => "alignment".into(),
    }
}

fn rule_from(field: &str, rule: &str) -> Result<Option<SigmaRule>, WireError> {
    match rule {
        "" => Ok(None),
        "fixed" => Ok(Some(SigmaRule::Fixed)),
        "median" => Ok(Some(SigmaRule::Median)),
        "alignment" => Ok(Some(SigmaRule::Alignment)),
        other => Err(WireError(format!("{field}: unknown sigma rule `{other}`"))),
    }
}

impl From<&EstimateColumns> for pb::EstimateColumns {
    fn from(c: &EstimateColumns) -> pb::EstimateColumns {
        pb::EstimateColumns {
            estimator: c.estimator.as_str().to_string(),
            n: c.n,
            h_t: c.h_t,
            i_xt: c.i_xt,
            i_yt: c.i_yt,
            h_y: c.h_y,
            h_x: c.h_x,
            i_yt_stderr: c.i_yt_stderr,
            noise_variance: c.noise_variance,
            relative_noise: c.relative_noise,
            alpha: c.alpha,
            sigma: c.sigma,
            sigma_rule: rule_to(c.sigma_rule),
            input_sigma: c.input_sigma,
            input_sigma_rule: rule_to(c.input_sigma_rule),
            projections: c.projections,
            k: c.k,
            sample_hash: c.sample_hash.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::EstimateColumns> for EstimateColumns {
    type Error = WireError;
    fn try_from(c: pb::EstimateColumns) -> Result<Self, WireError> {
        let estimator: Estimator = c.estimator.parse().map_err(|e| WireError(format!("estimate.estimator: {e}")))?;
        if estimator == Estimator::Binning {
            return Err(WireError("estimate.estimator: binning travels as histograms".into()));
        }
        Ok(EstimateColumns {
            estimator,
            n: c.n,
            h_t: c.h_t,
            i_xt: c.i_xt,
            i_yt: c.i_yt,
            h_y: c.h_y,
            h_x: c.h_x,
            i_yt_stderr: c.i_yt_stderr,
            noise_variance: c.noise_variance,
            relative_noise: c.relative_noise,
            alpha: c.alpha,
            sigma: c.sigma,
            sigma_rule: rule_from("estimate.sigma_rule", &c.sigma_rule)?,
            input_sigma: c.input_sigma,
            input_sigma_rule: rule_from("estimate.input_sigma_rule", &c.input_sigma_rule)?,
            projections: c.projections,
            k: c.k,
            sample_hash: Some(c.sample_hash).filter(|h| !h.is_empty()),
        })
    }
}

impl From<&MiRow> for pb::ResultRow {
    fn from(r: &MiRow) -> pb::ResultRow {
        let binning = r.binning();
        pb::ResultRow {
            sweep_id: r.sweep_id.clone(),
            job_id: r.job_id.clone(),
            dataset: dataset_to(r.dataset) as i32,
            width: r.width,
            depth: r.depth,
            kernel: r.kernel,
            pooling: pooling_to(r.pooling) as i32,
            // The row's `fc` is the CSV form, widths joined by `-`; it was made from the
            // spec's list, so it always parses back.
            fc: r.fc.split('-').filter(|w| !w.is_empty()).filter_map(|w| w.parse().ok()).collect(),
            activation: activation_to(r.activation) as i32,
            seed: r.seed,
            measurement: Some(pb::Measurement {
                epoch: r.epoch,
                split: pb::Split::from(r.split) as i32,
                layer: r.layer,
                layer_name: r.layer_name.clone(),
                bin_size: binning.map_or(0.0, |b| b.bin_size),
                loss: r.loss,
                accuracy: r.accuracy,
            }),
            n: r.n,
            distinct: binning.map_or(0, |b| b.distinct),
            h_t: binning.map_or(0.0, |b| b.h_t),
            i_xt: binning.map_or(0.0, |b| b.i_xt),
            h_t_given_y: binning.map_or(0.0, |b| b.h_t_given_y),
            i_yt: r.i_yt,
            h_y: binning.map_or(0.0, |b| b.h_y),
            estimate: r.estimate_columns().as_ref().map(pb::EstimateColumns::from),
        }
    }
}

impl TryFrom<pb::ResultRow> for MiRow {
    type Error = WireError;
    fn try_from(r: pb::ResultRow) -> Result<Self, WireError> {
        let m: Measurement = required("row.measurement", r.measurement)?.try_into()?;
        let job = JobColumns {
            sweep_id: r.sweep_id,
            job_id: r.job_id,
            dataset: dataset_from("row.dataset", r.dataset)?,
            width: r.width,
            depth: r.depth,
            kernel: r.kernel,
            pooling: pooling_from("row.pooling", r.pooling)?,
            fc: r.fc.iter().map(u32::to_string).collect::<Vec<_>>().join("-"),
            activation: activation_from("row.activation", r.activation)?,
            seed: r.seed,
        };
        Ok(match r.estimate {
            Some(c) => MiRow::estimate_of(job, &m, &c.try_into()?),
            None => {
                let e = ibsweep_shared::measure::Estimate {
                    n: r.n,
                    distinct: r.distinct,
                    h_t: r.h_t,
                    i_xt: r.i_xt,
                    h_t_given_y: r.h_t_given_y,
                    i_yt: r.i_yt,
                    h_y: r.h_y,
                };
                MiRow::binning_of(job, &m, &e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        let grid = "name: t\nparameters:\n  dataset: {value: fashion-mnist}\n  width: {value: 4}\n  depth: {value: 3}\n  kernel: {value: 5}\n  pooling: {value: max2}\n  fc: {value: [64, 32]}\n  seed: {value: 7}\nmeasure:\n  epochs: [0, 2, 5]\n  splits: [test]\n  bin_sizes: [0.67, 0.1]\ntrain:\n  epochs: 5\n  eval_every: 3\n  sampling: per-class-with-replacement\n";
        let grid = ibsweep_shared::grid::Grid::parse("t.yaml", grid).unwrap();
        grid.point(0).unwrap().unwrap()
    }

    #[test]
    fn a_job_spec_survives_the_wire() {
        let spec = spec();
        assert_eq!(JobSpec::try_from(pb::JobSpec::from(&spec)).unwrap(), spec);
        for schedule in [EpochSchedule::Every, EpochSchedule::Paper, EpochSchedule::Log(7)] {
            let spec = JobSpec { measure: MeasureSpec { epochs: schedule, ..spec.measure.clone() }, ..spec.clone() };
            assert_eq!(JobSpec::try_from(pb::JobSpec::from(&spec)).unwrap(), spec);
        }
    }

    #[test]
    fn every_enum_value_survives_the_wire() {
        for d in [Dataset::Mnist, Dataset::FashionMnist] {
            assert_eq!(dataset_from("d", dataset_to(d) as i32).unwrap(), d);
        }
        for p in [Pooling::None, Pooling::Max2] {
            assert_eq!(pooling_from("p", pooling_to(p) as i32).unwrap(), p);
        }
        for a in [Activation::Tanh, Activation::Relu] {
            assert_eq!(activation_from("a", activation_to(a) as i32).unwrap(), a);
        }
        for s in [Sampling::Random, Sampling::PerClassWithReplacement] {
            assert_eq!(sampling_from("s", sampling_to(s) as i32).unwrap(), s);
        }
        for s in [Split::Train, Split::Test] {
            assert_eq!(split("s", pb::Split::from(s) as i32).unwrap(), s);
        }
        assert!(pooling_from("spec.pooling", 0).unwrap_err().0.starts_with("spec.pooling"));
    }

    #[test]
    fn an_unspecified_enum_or_a_missing_message_names_its_field() {
        let wire = pb::JobSpec { dataset: 0, ..pb::JobSpec::from(&spec()) };
        assert!(JobSpec::try_from(wire).unwrap_err().0.starts_with("spec.dataset"));
        let wire = pb::JobSpec { measure: None, ..pb::JobSpec::from(&spec()) };
        assert_eq!(JobSpec::try_from(wire).unwrap_err().0, "spec.measure is missing");
        let wire = pb::JobSpec { width: 0, ..pb::JobSpec::from(&spec()) };
        assert!(JobSpec::try_from(wire).unwrap_err().0.starts_with("spec: "));
        assert!(split("chunk.split", 9).unwrap_err().0.starts_with("chunk.split"));
    }

    #[test]
    fn a_result_row_survives_the_wire() {
        let spec = spec();
        let key = Measurement {
            epoch: 2,
            split: Split::Test,
            layer: 3,
            layer_name: "fc1".into(),
            bin_size: 0.67,
            loss: 0.1 + 0.2,
            accuracy: 1.0 / 3.0,
        };
        let e = ibsweep_shared::measure::Estimate {
            n: 10,
            distinct: 9,
            h_t: 3.1,
            i_xt: 3.1,
            h_t_given_y: 0.2,
            i_yt: 2.9,
            h_y: 3.3,
        };
        for fc in [vec![], vec![64, 32]] {
            let spec = JobSpec { fc, ..spec.clone() };
            let row = MiRow::new("s", "j", &spec, &key, &e);
            assert_eq!(MiRow::try_from(pb::ResultRow::from(&row)).unwrap(), row);
        }
        let mut renyi = EstimateColumns::new(Estimator::Renyi, 200, 1.25);
        (renyi.h_t, renyi.i_xt, renyi.h_y, renyi.h_x) = (Some(5.0), Some(4.5), Some(3.3), Some(7.5));
        (renyi.alpha, renyi.sigma, renyi.sigma_rule) = (Some(2.0), Some(0.75), Some(SigmaRule::Median));
        (renyi.input_sigma, renyi.input_sigma_rule) = (Some(4.0), Some(SigmaRule::Fixed));
        renyi.sample_hash = Some("0123456789abcdef".into());
        let mut sliced = EstimateColumns::new(Estimator::Sliced, 10, 0.5);
        (sliced.i_yt_stderr, sliced.projections, sliced.k) = (Some(0.01), Some(16), Some(3));
        for c in [renyi, sliced] {
            let row = MiRow::estimate("s", "j", &spec, &key, &c);
            assert_eq!(MiRow::try_from(pb::ResultRow::from(&row)).unwrap(), row);
            let wire = pb::EstimateColumns::from(&c);
            assert_eq!(EstimateColumns::try_from(wire).unwrap(), c);
        }
        let wire = pb::EstimateColumns { estimator: "kde".into(), ..Default::default() };
        assert!(EstimateColumns::try_from(wire).unwrap_err().0.contains("unknown estimator `kde`"));
    }

    #[test]
    fn a_job_specs_estimators_survive_the_wire() {
        let mut spec = spec();
        spec.measure.estimators = serde_json::from_value(serde_json::json!({
            "kde": {"noise_variance": [0.1], "relative_noise": [0.5], "samples": 200},
            "renyi": {"alpha": [1.01, 2.0], "sigma": ["median", 2.5], "samples": 200},
            "sliced": {"projections": 16, "k": 3},
        }))
        .unwrap();
        assert_eq!(JobSpec::try_from(pb::JobSpec::from(&spec)).unwrap(), spec);
        let mut wire = pb::JobSpec::from(&spec);
        wire.measure.as_mut().unwrap().estimators_json = "{\"kde\": {\"noise\": 1}}".into();
        assert!(JobSpec::try_from(wire).unwrap_err().0.starts_with("spec.measure.estimators_json"));
    }
}

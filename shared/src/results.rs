//! One MI result row (design §1 "Estimator": what is reported per row), and its CSV form.
//! The same row type leaves `worker run` and `coordinator results`, so both export alike.
//!
//! Rows are in long form: one per (job, epoch, split, layer) and estimator setting. A
//! binning row fills the columns it always had; a row of another estimator (KDE bounds,
//! matrix-based Rényi, sliced MI) leaves empty what it has no value for (no bin size, no
//! distinct patterns, no I(X;T) for sliced MI) and names its parameters in columns of
//! their own, empty on binning rows.

use serde::{Deserialize, Serialize};

use crate::job::{Activation, Dataset, JobSpec, Pooling, Split};
use crate::measure::Estimate;

/// The CSV header, in order; the contract for `results --format csv`.
pub const CSV_HEADER: &str = "sweep_id,job_id,dataset,width,depth,kernel,pooling,fc,activation,seed,epoch,split,layer,layer_name,estimator,bin_size,n,distinct,h_t,i_xt,h_t_given_y,i_yt,h_y,loss,accuracy,h_x,i_yt_stderr,noise_variance,relative_noise,alpha,sigma,sigma_rule,input_sigma,input_sigma_rule,projections,k,sample_hash";

/// The header before estimators other than binning existed (binning rows only). Files with
/// it are still read: every column it lacks is empty, and every row is a binning row.
pub const CSV_HEADER_BINNING_ONLY: &str = "sweep_id,job_id,dataset,width,depth,kernel,pooling,fc,activation,seed,epoch,split,layer,layer_name,bin_size,n,distinct,h_t,i_xt,h_t_given_y,i_yt,h_y,loss,accuracy";

/// Which estimator a row is from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// `T = floor(h / bin)` over the whole split (the paper's estimator).
    #[default]
    Binning,
    /// Kolchinsky–Tracey upper bound (KL form) on a Gaussian-noise layer.
    KdeUpper,
    /// Kolchinsky–Tracey lower bound (Bhattacharyya form).
    KdeLower,
    /// Matrix-based Rényi α-entropy (Sánchez Giraldo–Rao–Príncipe).
    Renyi,
    /// Sliced MI SMI(T;Y) over random one-dimensional projections (Goldfeld & Greenewald).
    Sliced,
}

impl Estimator {
    pub const ALL: [Estimator; 5] =
        [Estimator::Binning, Estimator::KdeUpper, Estimator::KdeLower, Estimator::Renyi, Estimator::Sliced];

    /// The name in the `estimator` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Estimator::Binning => "binning",
            Estimator::KdeUpper => "kde-upper",
            Estimator::KdeLower => "kde-lower",
            Estimator::Renyi => "renyi",
            Estimator::Sliced => "sliced",
        }
    }

    /// Whether its rows have an I(X;T) (sliced MI estimates I(T;Y) only).
    pub fn has_i_xt(self) -> bool {
        self != Estimator::Sliced
    }
}

impl std::str::FromStr for Estimator {
    type Err = String;

    fn from_str(s: &str) -> Result<Estimator, String> {
        Estimator::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Estimator::ALL.iter().map(|e| e.as_str()).collect();
            format!("unknown estimator `{s}`; estimators are {}", names.join(", "))
        })
    }
}

/// How a kernel width was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigmaRule {
    /// Given in the grid.
    Fixed,
    /// The median pairwise distance of the sample at the job's first measured epoch.
    Median,
    /// The best-aligned width with the label kernel at this epoch, smoothed over epochs.
    Alignment,
}

/// What an estimator other than binning reports for one layer at one measured epoch and
/// split: the columns it fills in a result row. This is what travels from the worker with
/// the epoch's histograms and what the coordinator stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateColumns {
    pub estimator: Estimator,
    /// Rows the estimate saw: the sample size M for KDE and Rényi (ceiling log2 M), the
    /// split's N for sliced MI.
    pub n: u64,
    /// The layer's entropy (Rényi S_α(T)).
    pub h_t: Option<f64>,
    pub i_xt: Option<f64>,
    pub i_yt: f64,
    /// The labels' entropy (Rényi S_α(Y)).
    pub h_y: Option<f64>,
    /// The inputs' entropy (Rényi S_α(X)).
    pub h_x: Option<f64>,
    /// Standard error of sliced MI's mean over projections.
    pub i_yt_stderr: Option<f64>,
    /// KDE: the noise variance used, absolute (also when it was given relative).
    pub noise_variance: Option<f64>,
    /// KDE: the factor of the layer's median nearest-neighbour squared distance, when the
    /// variance was given relative.
    pub relative_noise: Option<f64>,
    pub alpha: Option<f64>,
    /// Rényi: the layer kernel's width used, and how it was chosen.
    pub sigma: Option<f64>,
    pub sigma_rule: Option<SigmaRule>,
    /// Rényi: the input kernel's width used, and how it was chosen.
    pub input_sigma: Option<f64>,
    pub input_sigma_rule: Option<SigmaRule>,
    pub projections: Option<u32>,
    pub k: Option<u32>,
    /// SHA-256 (first 16 hex digits) of the sample's indices, for KDE and Rényi.
    pub sample_hash: Option<String>,
}

impl EstimateColumns {
    /// Every column empty but the estimator and its `n` and `i_yt`.
    pub fn new(estimator: Estimator, n: u64, i_yt: f64) -> EstimateColumns {
        EstimateColumns {
            estimator,
            n,
            h_t: None,
            i_xt: None,
            i_yt,
            h_y: None,
            h_x: None,
            i_yt_stderr: None,
            noise_variance: None,
            relative_noise: None,
            alpha: None,
            sigma: None,
            sigma_rule: None,
            input_sigma: None,
            input_sigma_rule: None,
            projections: None,
            k: None,
            sample_hash: None,
        }
    }

    /// Every number present, in a fixed order: what must be finite.
    pub fn numbers(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        [
            ("h_t", self.h_t),
            ("i_xt", self.i_xt),
            ("i_yt", Some(self.i_yt)),
            ("h_y", self.h_y),
            ("h_x", self.h_x),
            ("i_yt_stderr", self.i_yt_stderr),
            ("noise_variance", self.noise_variance),
            ("relative_noise", self.relative_noise),
            ("alpha", self.alpha),
            ("sigma", self.sigma),
            ("input_sigma", self.input_sigma),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
    }
}

/// Result of one (job, epoch, split, layer, bin size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MiRow {
    /// Empty for a local `worker run`.
    pub sweep_id: String,
    /// Empty for a local `worker run`.
    pub job_id: String,
    pub dataset: Dataset,
    pub width: u32,
    pub depth: u32,
    pub kernel: u32,
    pub pooling: Pooling,
    /// Hidden FC widths joined by `-`, empty for none.
    pub fc: String,
    pub activation: Activation,
    pub seed: u64,
    pub epoch: u32,
    pub split: Split,
    /// 1-based index of the measured layer.
    pub layer: u32,
    pub layer_name: String,
    /// Absent in records and files from before other estimators: binning.
    #[serde(default)]
    pub estimator: Estimator,
    /// The binning columns: empty on other estimators' rows (`h_t`, `i_xt` and `h_y` are
    /// filled by those that have them).
    pub bin_size: Option<f64>,
    pub n: u64,
    pub distinct: Option<u64>,
    pub h_t: Option<f64>,
    pub i_xt: Option<f64>,
    pub h_t_given_y: Option<f64>,
    pub i_yt: f64,
    pub h_y: Option<f64>,
    /// Cross-entropy of this split at this epoch.
    pub loss: f64,
    pub accuracy: f64,
    /// The other estimators' columns ([`EstimateColumns`]), empty on binning rows.
    #[serde(default)]
    pub h_x: Option<f64>,
    #[serde(default)]
    pub i_yt_stderr: Option<f64>,
    #[serde(default)]
    pub noise_variance: Option<f64>,
    #[serde(default)]
    pub relative_noise: Option<f64>,
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub sigma: Option<f64>,
    #[serde(default)]
    pub sigma_rule: Option<SigmaRule>,
    #[serde(default)]
    pub input_sigma: Option<f64>,
    #[serde(default)]
    pub input_sigma_rule: Option<SigmaRule>,
    #[serde(default)]
    pub projections: Option<u32>,
    #[serde(default)]
    pub k: Option<u32>,
    #[serde(default)]
    pub sample_hash: Option<String>,
}

/// A binning row's numbers: what the paper's figures, the reproduction and the bin-size
/// plots read. Other estimators' rows have none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinningValues {
    pub bin_size: f64,
    pub distinct: u64,
    pub h_t: f64,
    pub i_xt: f64,
    pub h_t_given_y: f64,
    pub h_y: f64,
}

/// Which histogram of a job a number belongs to, with the split's loss and accuracy at that
/// epoch: what travels with every histogram chunk and what a result row is keyed by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub epoch: u32,
    pub split: Split,
    /// 1-based index of the measured layer.
    pub layer: u32,
    pub layer_name: String,
    pub bin_size: f64,
    pub loss: f64,
    pub accuracy: f64,
}

/// The network architecture a row belongs to, one axis per grid parameter that shapes it:
/// what plots group by and the reproduction compares. Seeds and training settings are not
/// axes: rows that differ only there are repeats of one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Axis {
    Dataset,
    Width,
    Depth,
    Kernel,
    Pooling,
    Fc,
    Activation,
}

impl Axis {
    pub const ALL: [Axis; 7] =
        [Axis::Dataset, Axis::Width, Axis::Depth, Axis::Kernel, Axis::Pooling, Axis::Fc, Axis::Activation];

    /// The grid parameter's name (also the CSV column).
    pub fn name(self) -> &'static str {
        match self {
            Axis::Dataset => "dataset",
            Axis::Width => "width",
            Axis::Depth => "depth",
            Axis::Kernel => "kernel",
            Axis::Pooling => "pooling",
            Axis::Fc => "fc",
            Axis::Activation => "activation",
        }
    }

    /// The row's value on this axis as people read it: `none` for no hidden FC layers.
    pub fn value(self, r: &MiRow) -> String {
        match self {
            Axis::Dataset => r.dataset.as_str().to_string(),
            Axis::Width => r.width.to_string(),
            Axis::Depth => r.depth.to_string(),
            Axis::Kernel => r.kernel.to_string(),
            Axis::Pooling => r.pooling.as_str().to_string(),
            Axis::Fc if r.fc.is_empty() => "none".into(),
            Axis::Fc => r.fc.clone(),
            Axis::Activation => r.activation.as_str().to_string(),
        }
    }
}

/// The job a row belongs to, as its row repeats it: the sweep and job IDs and the grid
/// parameters that identify the network. What a row needs of a [`JobSpec`], and all the
/// wire's result row carries of one.
#[derive(Debug, Clone, PartialEq)]
pub struct JobColumns {
    pub sweep_id: String,
    pub job_id: String,
    pub dataset: Dataset,
    pub width: u32,
    pub depth: u32,
    pub kernel: u32,
    pub pooling: Pooling,
    /// Hidden FC widths joined by `-`, empty for none.
    pub fc: String,
    pub activation: Activation,
    pub seed: u64,
}

impl JobColumns {
    pub fn of(sweep_id: &str, job_id: &str, spec: &JobSpec) -> JobColumns {
        JobColumns {
            sweep_id: sweep_id.to_string(),
            job_id: job_id.to_string(),
            dataset: spec.dataset,
            width: spec.width,
            depth: spec.depth,
            kernel: spec.kernel,
            pooling: spec.pooling,
            fc: spec.fc.iter().map(u32::to_string).collect::<Vec<_>>().join("-"),
            activation: spec.activation,
            seed: spec.seed,
        }
    }
}

impl MiRow {
    /// A binning row.
    pub fn new(sweep_id: &str, job_id: &str, spec: &JobSpec, key: &Measurement, e: &Estimate) -> MiRow {
        MiRow::binning_of(JobColumns::of(sweep_id, job_id, spec), key, e)
    }

    /// A binning row of `job`.
    pub fn binning_of(job: JobColumns, key: &Measurement, e: &Estimate) -> MiRow {
        let mut row = MiRow::blank(job, key, Estimator::Binning, e.n, e.i_yt);
        row.bin_size = Some(key.bin_size);
        row.distinct = Some(e.distinct);
        row.h_t = Some(e.h_t);
        row.i_xt = Some(e.i_xt);
        row.h_t_given_y = Some(e.h_t_given_y);
        row.h_y = Some(e.h_y);
        row
    }

    /// A row of another estimator (`key.bin_size` is not used).
    pub fn estimate(sweep_id: &str, job_id: &str, spec: &JobSpec, key: &Measurement, c: &EstimateColumns) -> MiRow {
        MiRow::estimate_of(JobColumns::of(sweep_id, job_id, spec), key, c)
    }

    /// A row of another estimator of `job`.
    pub fn estimate_of(job: JobColumns, key: &Measurement, c: &EstimateColumns) -> MiRow {
        MiRow::blank(job, key, c.estimator, c.n, c.i_yt).with_estimate(c)
    }

    /// This row's identity (job, epoch, split, layer, loss) with another estimator's
    /// columns instead of its own.
    pub fn with_estimate(self, c: &EstimateColumns) -> MiRow {
        MiRow {
            estimator: c.estimator,
            bin_size: None,
            n: c.n,
            distinct: None,
            h_t: c.h_t,
            i_xt: c.i_xt,
            h_t_given_y: None,
            i_yt: c.i_yt,
            h_y: c.h_y,
            h_x: c.h_x,
            i_yt_stderr: c.i_yt_stderr,
            noise_variance: c.noise_variance,
            relative_noise: c.relative_noise,
            alpha: c.alpha,
            sigma: c.sigma,
            sigma_rule: c.sigma_rule,
            input_sigma: c.input_sigma,
            input_sigma_rule: c.input_sigma_rule,
            projections: c.projections,
            k: c.k,
            sample_hash: c.sample_hash.clone(),
            ..self
        }
    }

    /// The estimator columns of a row that is not a binning row.
    pub fn estimate_columns(&self) -> Option<EstimateColumns> {
        (self.estimator != Estimator::Binning).then(|| EstimateColumns {
            estimator: self.estimator,
            n: self.n,
            h_t: self.h_t,
            i_xt: self.i_xt,
            i_yt: self.i_yt,
            h_y: self.h_y,
            h_x: self.h_x,
            i_yt_stderr: self.i_yt_stderr,
            noise_variance: self.noise_variance,
            relative_noise: self.relative_noise,
            alpha: self.alpha,
            sigma: self.sigma,
            sigma_rule: self.sigma_rule,
            input_sigma: self.input_sigma,
            input_sigma_rule: self.input_sigma_rule,
            projections: self.projections,
            k: self.k,
            sample_hash: self.sample_hash.clone(),
        })
    }

    /// The binning numbers, when this is a binning row with all of them.
    pub fn binning(&self) -> Option<BinningValues> {
        if self.estimator != Estimator::Binning {
            return None;
        }
        Some(BinningValues {
            bin_size: self.bin_size?,
            distinct: self.distinct?,
            h_t: self.h_t?,
            i_xt: self.i_xt?,
            h_t_given_y: self.h_t_given_y?,
            h_y: self.h_y?,
        })
    }

    /// The estimator's setting as one label, e.g. `binning 0.67`, `kde-upper var=0.1`
    /// (absolute), `kde-lower rel=0.5` (times the median nearest-neighbour squared distance),
    /// `renyi a=1.01 sigma=median`: what plots name a series by.
    pub fn setting(&self) -> String {
        let mut out = self.estimator.as_str().to_string();
        let num = |v: f64| format!("{v}");
        match self.estimator {
            Estimator::Binning => out += &format!(" {}", self.bin_size.map_or_else(String::new, num)),
            Estimator::KdeUpper | Estimator::KdeLower => match (self.relative_noise, self.noise_variance) {
                (Some(r), _) => out += &format!(" rel={r}"),
                (None, Some(v)) => out += &format!(" var={v}"),
                (None, None) => {}
            },
            Estimator::Renyi => {
                if let Some(a) = self.alpha {
                    out += &format!(" a={a}");
                }
                match (self.sigma_rule, self.sigma) {
                    (Some(SigmaRule::Median), _) => out += " sigma=median",
                    (Some(SigmaRule::Alignment), _) => out += " sigma=alignment",
                    (_, Some(s)) => out += &format!(" sigma={s}"),
                    _ => {}
                }
            }
            Estimator::Sliced => {
                if let (Some(p), Some(k)) = (self.projections, self.k) {
                    out += &format!(" P={p} k={k}");
                }
            }
        }
        out
    }

    fn blank(job: JobColumns, key: &Measurement, estimator: Estimator, n: u64, i_yt: f64) -> MiRow {
        MiRow {
            sweep_id: job.sweep_id,
            job_id: job.job_id,
            dataset: job.dataset,
            width: job.width,
            depth: job.depth,
            kernel: job.kernel,
            pooling: job.pooling,
            fc: job.fc,
            activation: job.activation,
            seed: job.seed,
            epoch: key.epoch,
            split: key.split,
            layer: key.layer,
            layer_name: key.layer_name.clone(),
            estimator,
            bin_size: None,
            n,
            distinct: None,
            h_t: None,
            i_xt: None,
            h_t_given_y: None,
            i_yt,
            h_y: None,
            loss: key.loss,
            accuracy: key.accuracy,
            h_x: None,
            i_yt_stderr: None,
            noise_variance: None,
            relative_noise: None,
            alpha: None,
            sigma: None,
            sigma_rule: None,
            input_sigma: None,
            input_sigma_rule: None,
            projections: None,
            k: None,
            sample_hash: None,
        }
    }
}

/// Writes rows as CSV with [`CSV_HEADER`].
#[derive(Debug)]
pub struct CsvWriter<W: std::io::Write> {
    inner: csv::Writer<W>,
}

impl<W: std::io::Write> CsvWriter<W> {
    pub fn new(out: W) -> CsvWriter<W> {
        CsvWriter { inner: csv::WriterBuilder::new().has_headers(true).from_writer(out) }
    }

    pub fn write(&mut self, row: &MiRow) -> std::io::Result<()> {
        self.inner.serialize(row).map_err(std::io::Error::other)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads rows written by [`CsvWriter`] (an export of `coordinator results`), so figures and
/// tables can be made again from a file without a coordinator. The header must be
/// [`CSV_HEADER`] (or [`CSV_HEADER_BINNING_ONLY`], from before other estimators): a file
/// from another tool or version is refused rather than misread.
pub fn read_csv<R: std::io::Read>(input: R) -> Result<Vec<MiRow>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let header = reader.headers().map_err(|e| format!("cannot read the CSV header: {e}"))?;
    let header = header.iter().collect::<Vec<_>>().join(",");
    if header != CSV_HEADER && header != CSV_HEADER_BINNING_ONLY {
        return Err(format!(
            "unexpected CSV header {header:?}; expected the `coordinator results` header {CSV_HEADER:?}"
        ));
    }
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| format!("row {} (line {}): {e}", i + 1, i + 2)))
        .collect()
}

/// [`read_csv`] of a file; errors name the file.
pub fn read_csv_file(path: &std::path::Path) -> Result<Vec<MiRow>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    read_csv(std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_axis_is_a_grid_parameter_and_a_csv_column() {
        let columns: Vec<&str> = CSV_HEADER.split(',').collect();
        for axis in Axis::ALL {
            assert!(crate::grid::PARAMETERS.contains(&axis.name()), "{axis:?} is no grid parameter");
            assert!(columns.contains(&axis.name()), "{axis:?} is no CSV column");
        }
    }

    #[test]
    fn csv_header_matches_the_contract() {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "dataset": "fashion-mnist", "width": 3, "depth": 5, "kernel": 3, "fc": [500, 1024, 500], "epochs": 1,
        }))
        .unwrap();
        let e = Estimate { n: 4, distinct: 2, h_t: 1.0, i_xt: 1.0, h_t_given_y: 0.5, i_yt: 0.5, h_y: 1.0 };
        let key = Measurement {
            epoch: 1,
            split: Split::Test,
            layer: 2,
            layer_name: "conv2".into(),
            bin_size: 0.67,
            loss: 0.3,
            accuracy: 0.9,
        };
        let mut out = Vec::new();
        let mut w = CsvWriter::new(&mut out);
        w.write(&MiRow::new("s", "j", &spec, &key, &e)).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(out).unwrap();
        let back = read_csv(text.as_bytes()).unwrap();
        assert_eq!(back, vec![MiRow::new("s", "j", &spec, &key, &e)]);
        assert!(read_csv("a,b\n1,2\n".as_bytes()).unwrap_err().contains("unexpected CSV header"));
        let bad = format!("{CSV_HEADER}\n{}", text.lines().nth(1).unwrap().replace("fashion-mnist", "cifar"));
        assert!(read_csv(bad.as_bytes()).unwrap_err().starts_with("row 1 (line 2)"));
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), CSV_HEADER);
        assert_eq!(
            lines.next().unwrap(),
            "s,j,fashion-mnist,3,5,3,none,500-1024-500,tanh,0,1,test,2,conv2,binning,0.67,4,2,1.0,1.0,0.5,0.5,1.0,0.3,0.9,,,,,,,,,,,,"
        );
        // A file from before other estimators reads as binning rows.
        let old = format!(
            "{CSV_HEADER_BINNING_ONLY}\ns,j,fashion-mnist,3,5,3,none,500-1024-500,tanh,0,1,test,2,conv2,0.67,4,2,1.0,1.0,0.5,0.5,1.0,0.3,0.9\n"
        );
        assert_eq!(read_csv(old.as_bytes()).unwrap(), vec![MiRow::new("s", "j", &spec, &key, &e)]);
    }

    #[test]
    fn estimator_rows_leave_what_they_lack_empty_and_read_back() {
        let spec: JobSpec = serde_json::from_value(
            serde_json::json!({"dataset": "mnist", "width": 2, "depth": 1, "kernel": 3, "epochs": 3}),
        )
        .unwrap();
        let key = Measurement {
            epoch: 3,
            split: Split::Train,
            layer: 1,
            layer_name: "conv1".into(),
            bin_size: 0.0,
            loss: 0.5,
            accuracy: 0.8,
        };
        let mut sliced = EstimateColumns::new(Estimator::Sliced, 10_000, 0.25);
        sliced.i_yt_stderr = Some(0.01);
        sliced.projections = Some(256);
        sliced.k = Some(3);
        let mut renyi = EstimateColumns::new(Estimator::Renyi, 2000, 1.5);
        renyi.h_t = Some(9.0);
        renyi.i_xt = Some(8.0);
        renyi.h_y = Some(3.3);
        renyi.h_x = Some(10.0);
        renyi.alpha = Some(1.01);
        renyi.sigma = Some(4.5);
        renyi.sigma_rule = Some(SigmaRule::Median);
        renyi.input_sigma = Some(9.5);
        renyi.input_sigma_rule = Some(SigmaRule::Fixed);
        renyi.sample_hash = Some("00ff".into());
        let rows: Vec<MiRow> = [&sliced, &renyi].iter().map(|c| MiRow::estimate("s", "j", &spec, &key, c)).collect();
        assert_eq!(rows[0].estimate_columns().as_ref(), Some(&sliced));
        assert_eq!(rows[0].binning(), None);
        assert_eq!(rows[0].setting(), "sliced P=256 k=3");
        assert_eq!(rows[1].setting(), "renyi a=1.01 sigma=median");
        let mut out = Vec::new();
        let mut w = CsvWriter::new(&mut out);
        for r in &rows {
            w.write(r).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(out).unwrap();
        let sliced_line = text.lines().nth(1).unwrap();
        assert_eq!(
            sliced_line,
            "s,j,mnist,2,1,3,none,,tanh,0,3,train,1,conv1,sliced,,10000,,,,,0.25,,0.5,0.8,,0.01,,,,,,,,256,3,"
        );
        assert_eq!(read_csv(text.as_bytes()).unwrap(), rows);
        assert_eq!("kde-upper".parse::<Estimator>().unwrap(), Estimator::KdeUpper);
        assert!("kde".parse::<Estimator>().unwrap_err().contains("binning, kde-upper"));
    }
}

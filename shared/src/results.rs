//! One MI result row (design §1 "Estimator": what is reported per row), and its CSV form.
//! The same row type leaves `worker run` and `coordinator results`, so both export alike.

use serde::{Deserialize, Serialize};

use crate::job::{Activation, Dataset, JobSpec, Pooling, Split};
use crate::measure::Estimate;

/// The CSV header, in order; the contract for `results --format csv`.
pub const CSV_HEADER: &str = "sweep_id,job_id,dataset,width,depth,kernel,pooling,fc,activation,seed,epoch,split,layer,layer_name,bin_size,n,distinct,h_t,i_xt,h_t_given_y,i_yt,h_y,loss,accuracy";

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
    pub bin_size: f64,
    pub n: u64,
    pub distinct: u64,
    pub h_t: f64,
    pub i_xt: f64,
    pub h_t_given_y: f64,
    pub i_yt: f64,
    pub h_y: f64,
    /// Cross-entropy of this split at this epoch.
    pub loss: f64,
    pub accuracy: f64,
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

impl MiRow {
    pub fn new(sweep_id: &str, job_id: &str, spec: &JobSpec, key: &Measurement, e: &Estimate) -> MiRow {
        MiRow {
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
            epoch: key.epoch,
            split: key.split,
            layer: key.layer,
            layer_name: key.layer_name.clone(),
            bin_size: key.bin_size,
            n: e.n,
            distinct: e.distinct,
            h_t: e.h_t,
            i_xt: e.i_xt,
            h_t_given_y: e.h_t_given_y,
            i_yt: e.i_yt,
            h_y: e.h_y,
            loss: key.loss,
            accuracy: key.accuracy,
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
/// [`CSV_HEADER`]: a file from another tool or version is refused rather than misread.
pub fn read_csv<R: std::io::Read>(input: R) -> Result<Vec<MiRow>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let header = reader.headers().map_err(|e| format!("cannot read the CSV header: {e}"))?;
    let header = header.iter().collect::<Vec<_>>().join(",");
    if header != CSV_HEADER {
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
            "s,j,fashion-mnist,3,5,3,none,500-1024-500,tanh,0,1,test,2,conv2,0.67,4,2,1.0,1.0,0.5,0.5,1.0,0.3,0.9"
        );
    }
}

//! `worker estimate`: the estimator on activations saved by any tool as npy files, so results
//! can be checked against other pipelines (and ours against dumps of our own layers).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ibsweep_shared::measure::{BinSize, Estimate, LayerAccumulator};
use npyz::{NpyFile, Order, TypeChar};
use serde::Serialize;

use crate::error::{Error, Result};

/// One result line of `worker estimate --json`; the key names (`bin_size`, then the
/// estimate's `n, distinct, h_t, i_xt, h_t_given_y, i_yt, h_y`) are part of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EstimateRow {
    pub bin_size: f64,
    #[serde(flatten)]
    pub estimate: Estimate,
}

fn open(path: &Path) -> Result<NpyFile<BufReader<File>>> {
    let file = File::open(path).map_err(Error::io(path))?;
    let npy = NpyFile::new(BufReader::new(file))
        .map_err(|e| Error::InvalidInput(format!("{}: not a readable npy file: {e}", path.display())))?;
    if npy.order() == Order::Fortran && npy.shape().len() > 1 {
        return Err(Error::InvalidInput(format!(
            "{}: Fortran-order arrays are not supported; save with np.ascontiguousarray",
            path.display()
        )));
    }
    Ok(npy)
}

fn type_of(npy: &NpyFile<BufReader<File>>) -> Option<(TypeChar, u64)> {
    match npy.dtype() {
        npyz::DType::Plain(ts) => Some((ts.type_char(), ts.size_field())),
        _ => None,
    }
}

/// Activations: f32 or f64, shape `[N, ...]`, flattened per sample.
#[derive(Debug)]
pub enum Activations {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

pub fn read_activations(path: &Path) -> Result<(Activations, usize, usize)> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    let Some((&n, rest)) = shape.split_first() else {
        return Err(Error::InvalidInput(format!("{}: a scalar, expected shape [N, ...]", path.display())));
    };
    let features: u64 = rest.iter().product();
    if n == 0 || features == 0 {
        return Err(Error::InvalidInput(format!("{}: empty array of shape {shape:?}", path.display())));
    }
    let bad = |e: std::io::Error| Error::InvalidInput(format!("{}: {e}", path.display()));
    let data = match type_of(&npy) {
        Some((TypeChar::Float, 4)) => Activations::F32(npy.into_vec().map_err(bad)?),
        Some((TypeChar::Float, 8)) => Activations::F64(npy.into_vec().map_err(bad)?),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{}: dtype {} is not supported for activations; use float32 or float64",
                path.display(),
                npy.dtype().descr()
            )));
        }
    };
    Ok((data, n as usize, features as usize))
}

/// Labels: N integers of any integer dtype, non-negative.
pub fn read_labels(path: &Path) -> Result<Vec<u32>> {
    let npy = open(path)?;
    if npy.shape().len() != 1 && !(npy.shape().len() == 2 && npy.shape()[1] == 1) {
        return Err(Error::InvalidInput(format!(
            "{}: labels must have shape [N], got {:?}",
            path.display(),
            npy.shape()
        )));
    }
    let bad = |e: std::io::Error| Error::InvalidInput(format!("{}: {e}", path.display()));
    let descr = npy.dtype().descr();
    let wide: Vec<i128> = match type_of(&npy) {
        Some((TypeChar::Int, 1)) => npy.into_vec::<i8>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Int, 2)) => npy.into_vec::<i16>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Int, 4)) => npy.into_vec::<i32>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Int, 8)) => npy.into_vec::<i64>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Uint, 1)) => npy.into_vec::<u8>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Uint, 2)) => npy.into_vec::<u16>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Uint, 4)) => npy.into_vec::<u32>().map_err(bad)?.into_iter().map(i128::from).collect(),
        Some((TypeChar::Uint, 8)) => npy.into_vec::<u64>().map_err(bad)?.into_iter().map(i128::from).collect(),
        _ => {
            return Err(Error::InvalidInput(format!(
                "{}: dtype {descr} is not supported for labels; use an integer dtype",
                path.display()
            )));
        }
    };
    wide.into_iter()
        .enumerate()
        .map(|(i, l)| {
            u32::try_from(l).ok().filter(|&l| l < 1 << 16).ok_or_else(|| {
                Error::InvalidInput(format!("{}: label {l} at index {i} is not in 0..65536", path.display()))
            })
        })
        .collect()
}

/// Bins every sample once for all `bin_sizes` and returns one row per bin size.
pub fn estimate(activations: &Path, labels: &Path, bin_sizes: &[f64]) -> Result<Vec<EstimateRow>> {
    let bins = bin_sizes
        .iter()
        .map(|&b| BinSize::new(b).map_err(|e| Error::InvalidInput(format!("--bin-size: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    if bins.is_empty() {
        return Err(Error::InvalidInput("give at least one --bin-size".into()));
    }
    let (data, n, features) = read_activations(activations)?;
    let labels_vec = read_labels(labels)?;
    if labels_vec.len() != n {
        return Err(Error::InvalidInput(format!(
            "{} has {n} samples but {} has {} labels",
            activations.display(),
            labels.display(),
            labels_vec.len()
        )));
    }
    let n_labels = labels_vec.iter().max().map_or(1, |&m| m as usize + 1);
    let mut acc = LayerAccumulator::new(bins, n_labels);
    // Chunks bound the temporary hash buffers; the result does not depend on the chunking.
    const CHUNK: usize = 4096;
    for (start, chunk_labels) in (0..n).step_by(CHUNK).zip(labels_vec.chunks(CHUNK)) {
        let range = start * features..(start + chunk_labels.len()) * features;
        match &data {
            Activations::F32(v) => acc.add_batch(&v[range], features, chunk_labels),
            Activations::F64(v) => acc.add_batch(&v[range], features, chunk_labels),
        }
        .map_err(|e| match e {
            ibsweep_shared::measure::MeasureError::NonFinite { sample, feature, value } => {
                Error::InvalidInput(format!(
                    "{}: non-finite value {value} at sample {}, feature {feature}",
                    activations.display(),
                    start + sample
                ))
            }
            other => other.into(),
        })?;
    }
    acc.finish().into_iter().map(|(bin, h)| Ok(EstimateRow { bin_size: bin.get(), estimate: h.estimate()? })).collect()
}

/// The human-readable table of `worker estimate` without `--json`.
pub fn table(rows: &[EstimateRow]) -> String {
    let mut out = format!(
        "{:>9} {:>8} {:>8} {:>9} {:>9} {:>11} {:>9} {:>9}\n",
        "bin_size", "n", "distinct", "H(T)", "I(X;T)", "H(T|Y)", "I(Y;T)", "H(Y)"
    );
    for r in rows {
        let e = &r.estimate;
        out += &format!(
            "{:>9} {:>8} {:>8} {:>9.5} {:>9.5} {:>11.5} {:>9.5} {:>9.5}\n",
            r.bin_size, e.n, e.distinct, e.h_t, e.i_xt, e.h_t_given_y, e.i_yt, e.h_y
        );
    }
    out + "(bits)\n"
}

/// Writes a C-order npy array (used to dump activations for cross-checks).
pub fn write_npy<T: npyz::AutoSerialize>(path: &Path, shape: &[u64], data: &[T]) -> Result<()> {
    use npyz::WriterBuilder;
    let file = std::io::BufWriter::new(File::create(path).map_err(Error::io(path))?);
    let mut writer =
        npyz::WriteOptions::new().default_dtype().shape(shape).writer(file).begin_nd().map_err(Error::io(path))?;
    writer.extend(data.iter()).map_err(Error::io(path))?;
    writer.finish().map_err(Error::io(path))
}

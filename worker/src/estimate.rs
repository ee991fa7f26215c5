//! `worker estimate`: the estimators on activations saved by any tool as npy files, so
//! results can be checked against other pipelines (and ours against dumps of our own
//! layers). Binning streams the rows; the kernel estimators ([`crate::estimators`]) use all
//! N rows given at once, with no subsample.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ibsweep_shared::measure::{BinSize, Estimate, LayerAccumulator};
use npyz::{NpyFile, Order, TypeChar};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::estimators::{Sample, kde, renyi, sliced};

/// `--estimator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Estimator {
    Binning,
    Kde,
    Renyi,
    Sliced,
}

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
    let labels_vec = read_labels_of(activations, n, labels)?;
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

/// What `worker estimate` is asked: the command line's flags in the library's own types.
#[derive(Debug, Clone)]
pub struct Request {
    pub estimator: Estimator,
    pub activations: std::path::PathBuf,
    pub labels: std::path::PathBuf,
    pub bin_sizes: Vec<f64>,
    pub noise_variances: Vec<f64>,
    pub inputs: Option<std::path::PathBuf>,
    pub alphas: Vec<f64>,
    pub sigma: renyi::Sigma,
    pub input_sigma: renyi::Sigma,
    pub projections: Option<std::path::PathBuf>,
    pub k: usize,
    pub precision: crate::estimators::Precision,
}

/// `worker estimate`: one JSON object per parameter value, in the order given, each with
/// its keys in the order of its row type.
pub fn run(args: &Request) -> Result<Vec<String>> {
    fn json<T: Serialize>(rows: Vec<T>) -> Result<Vec<String>> {
        rows.iter().map(|r| serde_json::to_string(r).map_err(|e| Error::InvalidInput(e.to_string()))).collect()
    }
    if args.estimator == Estimator::Binning {
        return json(estimate(&args.activations, &args.labels, &args.bin_sizes)?);
    }
    let layer = read_sample(&args.activations, &args.labels)?;
    let name = format!("{:?}", args.estimator).to_lowercase();
    layer
        .check_not_constant(match args.estimator {
            Estimator::Kde => "kde",
            Estimator::Renyi => "renyi",
            _ => "sliced",
        })
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", args.activations.display())))?;
    let needs = |flag: &str, path: &Option<std::path::PathBuf>| {
        path.clone().ok_or_else(|| Error::InvalidInput(format!("--estimator {name} needs {flag}")))
    };
    match args.estimator {
        Estimator::Binning => unreachable!("handled above"),
        Estimator::Kde => json(kde::kde(&layer, &layer.squared_distances(args.precision), &args.noise_variances)?),
        Estimator::Renyi => {
            let inputs_path = needs("--inputs X.npy", &args.inputs)?;
            let (x, n, features) = read_f64(&inputs_path)?;
            if n != layer.len() {
                return Err(Error::InvalidInput(format!(
                    "{} has {n} samples but {} has {}",
                    inputs_path.display(),
                    args.activations.display(),
                    layer.len()
                )));
            }
            let inputs = Sample::new(&x, features, layer.labels())?;
            let (layer_d, inputs_d) =
                (layer.squared_distances(args.precision), inputs.squared_distances(args.precision));
            let sigma = args.sigma.resolve(&layer_d, layer.labels())?;
            let input_sigma = args.input_sigma.resolve(&inputs_d, layer.labels())?;
            json(renyi::renyi(&layer, &layer_d, &inputs_d, &args.alphas, sigma, input_sigma)?)
        }
        Estimator::Sliced => {
            let path = needs("--projections P.npy", &args.projections)?;
            let (p, rows, cols) = read_f64(&path)?;
            let projections = tch::Tensor::from_slice(&p).view([rows as i64, cols as i64]);
            json(vec![sliced::sliced(&layer, &projections, args.k, args.precision)?])
        }
    }
}

/// The labels of `activations`' `n` samples, refused when there are not exactly `n`.
fn read_labels_of(activations: &Path, n: usize, labels: &Path) -> Result<Vec<u32>> {
    let labels_vec = read_labels(labels)?;
    if labels_vec.len() != n {
        return Err(Error::InvalidInput(format!(
            "{} has {n} samples but {} has {} labels",
            activations.display(),
            labels.display(),
            labels_vec.len()
        )));
    }
    Ok(labels_vec)
}

/// Activations as f64 rows with their labels, checked against each other.
fn read_sample(activations: &Path, labels: &Path) -> Result<Sample> {
    let (values, n, features) = read_f64(activations)?;
    let labels_vec = read_labels_of(activations, n, labels)?;
    Sample::new(&values, features, &labels_vec)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", activations.display())))
}

/// A float npy file as f64, with its rows and the product of its other dimensions.
fn read_f64(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let (data, n, features) = read_activations(path)?;
    let values = match data {
        Activations::F32(v) => v.into_iter().map(f64::from).collect(),
        Activations::F64(v) => v,
    };
    Ok((values, n, features))
}

/// A JSON object's entries in the order they were written (serde_json's own map sorts).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Ordered, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Ordered;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The human-readable table of `worker estimate` without `--json`: one column per key of
/// the JSON lines, numbers to five decimals.
pub fn table(lines: &[String]) -> String {
    let rows: Vec<Vec<(String, serde_json::Value)>> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Ordered>(l).ok())
        .map(|o| o.0.into_iter().filter(|(k, _)| k != "estimator").collect())
        .collect();
    let Some(first) = rows.first() else { return String::new() };
    // The JSON keys as people read them: `i_xt_upper` is `I(X;T)_upper`.
    let heading = |key: &str| {
        let names = [
            ("h_t_given_y", "H(T|Y)"),
            ("i_xt", "I(X;T)"),
            ("i_yt", "I(Y;T)"),
            ("h_t", "H(T)"),
            ("h_y", "H(Y)"),
            ("s_t", "S(T)"),
            ("s_x", "S(X)"),
            ("s_y", "S(Y)"),
        ];
        names
            .iter()
            .find_map(|(k, name)| key.strip_prefix(k).map(|rest| format!("{name}{rest}")))
            .unwrap_or_else(|| key.to_string())
    };
    let headings: Vec<String> = first.iter().map(|(k, _)| heading(k)).collect();
    let keys: Vec<&str> = headings.iter().map(String::as_str).collect();
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Number(n) if n.is_f64() => format!("{:.5}", n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|(_, v)| cell(v)).collect()).collect();
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| cells.iter().map(|c| c[i].len()).chain([k.len()]).max().unwrap_or(0))
        .collect();
    let line = |items: Vec<&str>| {
        items.iter().zip(&widths).map(|(s, w)| format!("{s:>w$}")).collect::<Vec<_>>().join(" ") + "\n"
    };
    let mut out = line(keys.clone());
    for c in &cells {
        out += &line(c.iter().map(String::as_str).collect());
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

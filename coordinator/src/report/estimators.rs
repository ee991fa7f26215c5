//! The tables of `docs/estimators.md`: the reduced reproduction's Fig. 4 and Fig. 7 grids
//! measured with every estimator, computed from their exported rows
//! (`docs/estimators/results.csv`, `sweeps.csv`), as [`super::reproduction`] does for the
//! paper's figures: the `estimators_report` example writes them between `generated`
//! markers, and a test fails when the committed document differs from its data.
//!
//! Every number is per estimator *setting* (`binning 0.67`, `kde-upper rel=0.5`,
//! `renyi a=2 sigma=median`, ...), over hidden layers only (the softmax output is not a
//! hidden layer), so that each conclusion can be read against the noise variance, α and σ
//! it was drawn with.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ibsweep_shared::job::Split;
use ibsweep_shared::results::{Estimator, MiRow};

use super::reproduction::{SweepEntry, binning_ceilings, fall_from_peak, read_table, table_header, table_row};

/// Within this of its ceiling (or of H(Y)) a measurement counts as "at" it, as in the
/// reproduction.
const AT: f64 = 0.01;

/// A layer compresses when its I(X;T) falls at least this far from its peak by the last
/// measured epoch (and the peak comes before the last epoch).
pub const COMPRESSION: f64 = 0.05;

/// The report's inputs.
#[derive(Debug)]
pub struct Inputs {
    pub rows: Vec<MiRow>,
    pub sweeps: Vec<SweepEntry>,
}

impl Inputs {
    /// `results.csv` and `sweeps.csv` of `dir`.
    pub fn load(dir: &std::path::Path) -> Result<Inputs, String> {
        Ok(Inputs {
            rows: ibsweep_shared::results::read_csv_file(&dir.join("results.csv"))?,
            sweeps: read_table(&dir.join("sweeps.csv"))?,
        })
    }

    pub fn tables(&self) -> BTreeMap<String, String> {
        tables(&self.rows, &self.sweeps)
    }
}

/// A setting's rows sort by estimator, then by its label.
type Setting = (Estimator, String);

fn setting(r: &MiRow) -> Setting {
    (r.estimator, r.setting())
}

fn is_hidden(r: &MiRow) -> bool {
    r.layer_name != "softmax"
}

/// Every generated table by block name.
pub fn tables(rows: &[MiRow], sweeps: &[SweepEntry]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("estimators-ceiling".into(), ceiling_table(rows));
    out.insert("estimators-movement".into(), movement_table(rows));
    out.insert("estimators-compression".into(), compression_table(rows, sweeps));
    out
}

/// The ceilings a row is judged by: its I(X;T) ceiling (binning: the job's largest I(X;T)
/// on the split, as in the reproduction; KDE and Rényi: log2 of the sample size; sliced:
/// none) and H(Y) (binning and sliced see the whole split, whose H(Y) the binning rows
/// carry; the stratified sample's is log2 10).
struct Ceilings<'a> {
    binning_i_xt: BTreeMap<(&'a str, Split), f64>,
    h_y: BTreeMap<(&'a str, Split), f64>,
}

impl<'a> Ceilings<'a> {
    fn of(rows: &'a [MiRow]) -> Ceilings<'a> {
        let h_y = rows.iter().filter_map(|r| Some(((r.job_id.as_str(), r.split), r.binning()?.h_y))).collect();
        Ceilings { binning_i_xt: binning_ceilings(rows), h_y }
    }

    fn i_xt(&self, r: &MiRow) -> Option<f64> {
        match r.estimator {
            Estimator::Binning => self.binning_i_xt.get(&(r.job_id.as_str(), r.split)).copied(),
            Estimator::Sliced => None,
            _ => Some((r.n as f64).log2()),
        }
    }

    fn h_y(&self, r: &MiRow) -> f64 {
        match r.estimator {
            Estimator::Binning | Estimator::Sliced => {
                self.h_y.get(&(r.job_id.as_str(), r.split)).copied().unwrap_or(std::f64::consts::LOG2_10)
            }
            _ => std::f64::consts::LOG2_10,
        }
    }
}

/// Per setting: how many hidden-layer measurements (every network, split and measured
/// epoch) sit below their I(X;T) ceiling, and below H(Y).
fn ceiling_table(rows: &[MiRow]) -> String {
    let ceilings = Ceilings::of(rows);
    // setting -> (measurements, I(X;T) below, I(Y;T) below)
    let mut per: BTreeMap<Setting, (usize, Option<usize>, usize)> = BTreeMap::new();
    for r in rows.iter().filter(|r| is_hidden(r)) {
        let e = per.entry(setting(r)).or_insert((0, None, 0));
        e.0 += 1;
        if let (Some(ceiling), Some(i_xt)) = (ceilings.i_xt(r), r.i_xt) {
            *e.1.get_or_insert(0) += usize::from(i_xt < ceiling - AT);
        }
        e.2 += usize::from(r.i_yt < ceilings.h_y(r) - AT);
    }
    let mut t = String::new();
    table_header(
        &mut t,
        &["estimator setting", "hidden-layer measurements", "I(X;T) below its ceiling", "I(Y;T) below H(Y)"]
            .map(String::from),
    );
    for ((_, name), (n, below_x, below_y)) in &per {
        let pct = |k: usize| format!("{k} ({:.0} %)", 100.0 * k as f64 / *n as f64);
        table_row(&mut t, &[name.clone(), n.to_string(), below_x.map_or("-".into(), pct), pct(*below_y)]);
    }
    let _ = writeln!(
        t,
        "\nEvery network of both grids, every measured epoch, the test split; hidden layers only. The I(X;T) ceiling \
         is the job's largest binning I(X;T) on the split (as in the reproduction) for binning, log2 of the \
         sample for KDE and Rényi (log2 1,000 = 9.97); sliced MI has no I(X;T). \"Below\" means by more than \
         {AT} bit."
    );
    t
}

/// Per (job, split, layer): its I(X;T) and I(Y;T) by epoch, in epoch order.
fn paths<'a>(rows: &[&'a MiRow]) -> BTreeMap<(String, Split, u32), Vec<&'a MiRow>> {
    let mut out: BTreeMap<(String, Split, u32), Vec<&MiRow>> = BTreeMap::new();
    for r in rows {
        out.entry((r.job_id.clone(), r.split, r.layer)).or_default().push(r);
    }
    for path in out.values_mut() {
        path.sort_by_key(|r| r.epoch);
    }
    out
}

fn range(values: impl Iterator<Item = f64>) -> f64 {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    hi - lo
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// Per setting: how far hidden layers move in the information plane over training (the
/// range of each layer's I(X;T) and I(Y;T) over its measured epochs), median and largest.
fn movement_table(rows: &[MiRow]) -> String {
    let mut by_setting: BTreeMap<Setting, Vec<&MiRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| is_hidden(r)) {
        by_setting.entry(setting(r)).or_default().push(r);
    }
    let mut t = String::new();
    table_header(
        &mut t,
        &[
            "estimator setting",
            "hidden-layer paths",
            "I(X;T) range, median",
            "I(X;T) range, largest",
            "I(Y;T) range, median",
            "I(Y;T) range, largest",
        ]
        .map(String::from),
    );
    for ((_, name), rows) in &by_setting {
        let paths = paths(rows);
        let x: Vec<f64> = paths
            .values()
            .filter_map(|p| Some(range(p.iter().map(|r| r.i_xt).collect::<Option<Vec<_>>>()?.into_iter())))
            .collect();
        let y: Vec<f64> = paths.values().map(|p| range(p.iter().map(|r| r.i_yt))).collect();
        let largest = |v: &[f64]| v.iter().copied().reduce(f64::max);
        let bits = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        table_row(
            &mut t,
            &[
                name.clone(),
                paths.len().to_string(),
                bits(median(x.clone())),
                bits(largest(&x)),
                bits(median(y.clone())),
                bits(largest(&y)),
            ],
        );
    }
    let _ = writeln!(
        t,
        "\nA path is one hidden layer of one network over its 8 measured epochs (0 to 20); its range is \
         the largest minus the smallest value, in bits. Binning's I(X;T) range is 0 where a layer sits at the \
         ceiling from the start."
    );
    t
}

/// Per (figure, data set, setting), on the test split: how many hidden layers show a
/// compression phase (I(X;T) peaks before the last measured epoch and falls at least
/// [`COMPRESSION`] bits by it), and the largest fall.
fn compression_table(rows: &[MiRow], sweeps: &[SweepEntry]) -> String {
    let mut t = String::new();
    table_header(
        &mut t,
        &["grid", "data set", "estimator setting", "hidden layers", "compressing", "largest fall (peak → last)"]
            .map(String::from),
    );
    for sweep in sweeps {
        // (data set, setting) -> test-split hidden rows
        let mut groups: BTreeMap<(String, Setting), Vec<&MiRow>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.sweep_id == sweep.sweep_id && r.split == Split::Test && is_hidden(r)) {
            if r.i_xt.is_some() {
                groups.entry((r.dataset.as_str().to_string(), setting(r))).or_default().push(r);
            }
        }
        for ((dataset, (_, name)), rows) in &groups {
            let paths = paths(rows);
            let mut compressing = 0;
            let mut largest: Option<(f64, String)> = None;
            for path in paths.values() {
                let values: Vec<(u32, f64)> = path.iter().filter_map(|r| Some((r.epoch, r.i_xt?))).collect();
                let Some(f) = fall_from_peak(&values) else { continue };
                let (peak_epoch, peak, last_epoch, last) = (f.peak_epoch, f.peak, f.last_epoch, f.last);
                let fall = peak - last;
                if peak_epoch < last_epoch && fall >= COMPRESSION {
                    compressing += 1;
                }
                if largest.as_ref().is_none_or(|(f, _)| fall > *f) {
                    let r = path[0];
                    let network = match r.pooling.as_str() {
                        "none" => format!("w{} d{}", r.width, r.depth),
                        p => format!("w{} d{} {p}", r.width, r.depth),
                    };
                    largest = Some((
                        fall,
                        format!(
                            "{network} {}: {peak:.3} → {last:.3} (epoch {peak_epoch} → {last_epoch})",
                            r.layer_name
                        ),
                    ));
                }
            }
            let figure = sweep.figure.trim_start_matches("estimators-").to_string();
            let largest = largest.filter(|(f, _)| *f > 0.0).map_or("none".into(), |(_, text)| text);
            table_row(
                &mut t,
                &[figure, dataset.clone(), name.clone(), paths.len().to_string(), compressing.to_string(), largest],
            );
        }
    }
    let _ = writeln!(
        t,
        "\nTest split, hidden layers, every network. A layer compresses when its \
         I(X;T) peaks before epoch 20 and falls at least {COMPRESSION} bit by then. Sliced MI has no I(X;T) and is \
         left out."
    );
    t
}

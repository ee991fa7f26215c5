//! The tables of the paper reproduction (`docs/reproduction.md`), computed from exported rows.
//!
//! The report's numbers must come from its data and stay that way: the tables live in the
//! document between `<!-- generated:NAME -->` and `<!-- end generated -->` markers, the
//! `reproduction` example rewrites them from `docs/reproduction/results.csv`, and a test
//! regenerates them and fails when the committed document differs. The prose verdicts quote
//! these tables.
//!
//! Inputs: the rows (`coordinator results` CSV of every sweep), which sweep is which figure
//! (`sweeps.csv`: `figure,grid,sweep_id`, written by `deploy/reproduce.sh`), and the reference
//! code's published measures (`reference.csv`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ibsweep_shared::job::Split;
use ibsweep_shared::results::{Axis, MiRow};
use serde::Deserialize;

/// The bin size of the paper; the other sizes only feed the sensitivity table.
pub const PAPER_BIN: f64 = 0.67;

/// A layer counts as "at the ceiling" when its I(X;T) is within this of the ceiling, i.e. at
/// most a handful of the 10,000 samples share a pattern.
const AT_CEILING: f64 = 0.01;

/// One line of `sweeps.csv`.
#[derive(Debug, Clone, Deserialize)]
pub struct SweepEntry {
    /// The grid's `name`, e.g. `repro-fig6-depth`.
    pub figure: String,
    pub grid: String,
    pub sweep_id: String,
}

/// One line of `reference.csv`: a measure of the reference code at its 0-based epoch.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceRow {
    pub dataset: String,
    pub width: u32,
    pub depth: u32,
    pub kernel: u32,
    pub pooling: String,
    /// Hidden FC widths joined by `-` as in our CSV, empty for none.
    pub fc: String,
    pub split: String,
    /// The reference code's epoch k is our epoch k + 1 (design §"Measurement").
    pub ref_epoch: u32,
    /// 1-based; the last is the softmax layer.
    pub layer: u32,
    pub i_xt: f64,
    pub i_yt: f64,
    pub source: String,
}

/// Reads a CSV file with a header into `T`s; errors name the file and line.
pub fn read_table<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<Vec<T>, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, r)| r.map_err(|e| format!("{} line {}: {e}", path.display(), i + 2)))
        .collect()
}

/// What the report is made from: `results.csv`, `sweeps.csv` and `reference.csv` of one
/// directory (`docs/reproduction`).
#[derive(Debug)]
pub struct Inputs {
    pub rows: Vec<MiRow>,
    pub sweeps: Vec<SweepEntry>,
    pub reference: Vec<ReferenceRow>,
}

impl Inputs {
    pub fn load(dir: &std::path::Path) -> Result<Inputs, String> {
        Ok(Inputs {
            rows: ibsweep_shared::results::read_csv_file(&dir.join("results.csv"))?,
            sweeps: read_table(&dir.join("sweeps.csv"))?,
            reference: read_table(&dir.join("reference.csv"))?,
        })
    }

    /// Every generated table of the report, by block name.
    pub fn tables(&self) -> BTreeMap<String, String> {
        tables(&self.rows, &self.sweeps, &self.reference)
    }
}

/// A binning row with its numbers at hand: the reproduction reads the paper's estimator
/// only. Its fields shadow the row's optional ones; everything else reads through.
#[derive(Debug, Clone)]
struct Row {
    row: MiRow,
    bin_size: f64,
    i_xt: f64,
    h_y: f64,
}

impl Row {
    fn of(row: &MiRow) -> Option<Row> {
        let b = row.binning()?;
        Some(Row { row: row.clone(), bin_size: b.bin_size, i_xt: b.i_xt, h_y: b.h_y })
    }
}

impl std::ops::Deref for Row {
    type Target = MiRow;
    fn deref(&self) -> &MiRow {
        &self.row
    }
}

/// Every generated table by block name, in the order they are built.
pub fn tables(rows: &[MiRow], sweeps: &[SweepEntry], reference: &[ReferenceRow]) -> BTreeMap<String, String> {
    let rows: Vec<Row> = rows.iter().filter_map(Row::of).collect();
    let rows = rows.as_slice();
    let ceilings = Ceilings::of(rows);
    let mut out = BTreeMap::new();
    for sweep in sweeps {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.sweep_id == sweep.sweep_id).collect();
        if mine.is_empty() {
            continue;
        }
        out.insert(format!("summary-{}", sweep.figure), summary(&mine, &ceilings));
        if mine.iter().map(|r| r.bin_size.to_bits()).collect::<BTreeSet<_>>().len() > 1 {
            out.insert(format!("bins-{}", sweep.figure), bins(&mine));
        }
        if mine.iter().map(|r| r.seed).collect::<BTreeSet<_>>().len() > 1 {
            out.insert(format!("seeds-{}", sweep.figure), seeds(&mine, &ceilings));
        }
    }
    out.insert("reference".into(), reference_table(rows, reference, &ceilings));
    out.insert("ceiling".into(), ceiling_table(rows, &ceilings));
    out
}

/// Each (job, split)'s largest binning I(X;T) over layers, epochs and bin sizes: the
/// ceiling [`Ceilings`] and the estimator comparison judge binning rows by.
pub(crate) fn binning_ceilings<'a>(rows: impl IntoIterator<Item = &'a MiRow>) -> BTreeMap<(&'a str, Split), f64> {
    let mut ceilings = BTreeMap::new();
    for r in rows {
        if let Some(b) = r.binning() {
            let c = ceilings.entry((r.job_id.as_str(), r.split)).or_insert(0.0_f64);
            *c = c.max(b.i_xt);
        }
    }
    ceilings
}

/// Each (job, split)'s ceiling: its largest I(X;T) over layers, epochs and bin sizes
/// (log2 10,000 = 13.2877 on the test split; the drawn multiset's entropy on the training
/// split). Every table judges "at the ceiling" by this one definition.
struct Ceilings<'a>(BTreeMap<(&'a str, Split), f64>);

impl<'a> Ceilings<'a> {
    fn of(rows: &'a [Row]) -> Ceilings<'a> {
        Ceilings(binning_ceilings(rows.iter().map(|r| &r.row)))
    }

    /// Whether `r` is within [`AT_CEILING`] of its job's ceiling on its split.
    fn holds(&self, r: &'a Row) -> bool {
        self.0.get(&(r.job_id.as_str(), r.split)).is_some_and(|c| c - r.i_xt <= AT_CEILING)
    }
}

/// How many hidden-layer measurements (every network, split, epoch) sit at the ceiling, per
/// bin size, and every one that does not: the whole evidence behind "hidden layers keep all
/// the information".
fn ceiling_table<'a>(rows: &'a [Row], ceilings: &Ceilings<'a>) -> String {
    let hidden: Vec<&Row> = rows.iter().filter(|r| r.layer_name != "softmax").collect();
    let mut per_bin: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    // (dataset, width, depth, kernel, bin, layer) -> (epochs below, lowest I(X;T))
    type Where = (String, u32, u32, u32, u64, u32, String);
    let mut exceptions: BTreeMap<Where, (BTreeSet<u32>, f64)> = BTreeMap::new();
    for r in &hidden {
        let e = per_bin.entry(r.bin_size.to_bits()).or_default();
        e.0 += 1;
        if !ceilings.holds(r) {
            e.1 += 1;
            let key = (
                r.dataset.as_str().to_string(),
                r.width,
                r.depth,
                r.kernel,
                r.bin_size.to_bits(),
                r.layer,
                r.layer_name.clone(),
            );
            let x = exceptions.entry(key).or_insert((BTreeSet::new(), f64::INFINITY));
            x.0.insert(r.epoch);
            x.1 = x.1.min(r.i_xt);
        }
    }
    let mut t = String::new();
    table_header(&mut t, &["bin size", "hidden-layer measurements", "at the ceiling", "below"].map(String::from));
    for (bin, (n, below)) in &per_bin {
        table_row(
            &mut t,
            &[f64::from_bits(*bin).to_string(), n.to_string(), (n - below).to_string(), below.to_string()],
        );
    }
    t.push('\n');
    table_header(
        &mut t,
        &["network", "bin size", "layer", "epochs below the ceiling (either split)", "lowest I(X;T)"].map(String::from),
    );
    for ((dataset, width, depth, kernel, bin, _, layer), (epochs, lowest)) in &exceptions {
        let epochs: Vec<String> = epochs.iter().map(u32::to_string).collect();
        table_row(
            &mut t,
            &[
                format!("{dataset} w{width} d{depth} k{kernel}"),
                f64::from_bits(*bin).to_string(),
                layer.clone(),
                epochs.join(", "),
                format!("{lowest:.3}"),
            ],
        );
    }
    let _ = writeln!(
        t,
        "\nEvery network, both splits, every measured epoch. The ceiling is the job's largest I(X;T) on that split \
         (log2 10,000 = 13.2877 on the test split); \"at\" means within {AT_CEILING} bit."
    );
    t
}

/// Where `filled` (a document with its tables regenerated) first differs from the
/// committed `doc`, for a test that fails when a report has drifted from its data; `None`
/// when they are equal. `regenerate` says how to fix it.
pub fn drift(path: &str, doc: &str, filled: &str, regenerate: &str) -> Option<String> {
    if doc == filled {
        return None;
    }
    let first = doc.lines().zip(filled.lines()).position(|(a, b)| a != b).unwrap_or(0);
    Some(format!(
        "{path} differs from its data from line {} on:\n  committed: {:?}\n  from data: {:?}\nregenerate with `{regenerate}`",
        first + 1,
        doc.lines().nth(first),
        filled.lines().nth(first)
    ))
}

/// Replaces every generated block of `doc` with its table. Fails if the document has a block
/// no table fills, or lacks a table: a report cannot silently drop one.
pub fn fill(doc: &str, tables: &BTreeMap<String, String>) -> Result<String, String> {
    const END: &str = "<!-- end generated -->";
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    let mut seen = BTreeSet::new();
    while let Some(start) = rest.find("<!-- generated:") {
        let open_end = rest[start..].find("-->").map(|i| start + i + 3).ok_or("unterminated generated marker")?;
        let name = rest[start + "<!-- generated:".len()..open_end - 3].trim().to_string();
        let close = rest[open_end..].find(END).map(|i| open_end + i).ok_or(format!("block {name}: no `{END}`"))?;
        let table = tables.get(&name).ok_or(format!("block {name}: no such table (tables: {:?})", tables.keys()))?;
        out.push_str(&rest[..open_end]);
        out.push('\n');
        out.push_str(table);
        rest = &rest[close..];
        seen.insert(name);
    }
    out.push_str(rest);
    let missing: Vec<&String> = tables.keys().filter(|k| !seen.contains(*k)).collect();
    if !missing.is_empty() {
        return Err(format!("the document has no block for {missing:?}"));
    }
    Ok(out)
}

/// Architecture axes that take more than one value among `rows`, besides dataset (always
/// a column) and activation (the paper's networks are all tanh).
fn varied(rows: &[&Row]) -> Vec<Axis> {
    [Axis::Width, Axis::Depth, Axis::Kernel, Axis::Pooling, Axis::Fc]
        .into_iter()
        .filter(|axis| rows.iter().map(|r| axis.value(r)).collect::<BTreeSet<_>>().len() > 1)
        .collect()
}

/// A configuration: dataset and the varied parameters, in an order that reads naturally
/// (numbers as numbers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Config(Vec<(u8, u64, String)>);

fn config(r: &Row, params: &[Axis]) -> Config {
    let mut key = vec![(0, 0, r.dataset.as_str().to_string())];
    for p in params {
        let v = p.value(r);
        key.push(match v.parse::<u64>() {
            Ok(n) => (1, n, v),
            Err(_) => (2, 0, v),
        });
    }
    Config(key)
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

/// Per configuration, at the paper's bin size: accuracies, how many hidden layers sit at the
/// ceiling, the softmax layer on both splits, and the largest fall of any layer's I(X;T) after
/// its peak (the compression the IB theory predicts; 0 means none). Means over seeds.
fn summary<'a>(rows: &[&'a Row], ceilings: &Ceilings<'a>) -> String {
    let params = varied(rows);
    let rows: Vec<&'a Row> = rows.iter().copied().filter(|r| r.bin_size == PAPER_BIN).collect();
    let last = rows.iter().map(|r| r.epoch).max().unwrap_or(0);
    let mut by_config: BTreeMap<Config, Vec<&'a Row>> = BTreeMap::new();
    for r in &rows {
        by_config.entry(config(r, &params)).or_default().push(r);
    }
    let mut t = String::new();
    let mut header = vec!["dataset".to_string()];
    header.extend(params.iter().map(|p| p.name().to_string()));
    header.extend(
        [
            "accuracy train / test",
            "hidden layers at the ceiling (test)",
            "last hidden layer I(X;T) / I(Y;T) (test)",
            "softmax at the first epoch I(X;T) / I(Y;T) (test)",
            "softmax I(X;T) train / test",
            "softmax I(Y;T) train / test",
            "softmax max I(Y;T) (test)",
            "largest fall of I(X;T) after its peak (test)",
        ]
        .map(String::from),
    );
    table_header(&mut t, &header);
    let first = rows.iter().map(|r| r.epoch).min().unwrap_or(0);
    let mut h_y: BTreeMap<&str, f64> = BTreeMap::new();
    for (config, rs) in &by_config {
        let at = |epoch: u32, split: Split, pick: &dyn Fn(&Row) -> bool| -> Vec<&'a Row> {
            rs.iter().copied().filter(|r| r.epoch == epoch && r.split == split && pick(r)).collect()
        };
        let acc = |split| mean(at(last, split, &|r| r.layer == 1).iter().map(|r| r.accuracy));
        let is_softmax = |r: &Row| r.layer_name == "softmax";
        let soft = |epoch, split, f: fn(&Row) -> f64| mean(at(epoch, split, &is_softmax).iter().map(|r| f(r)));
        let hidden = at(last, Split::Test, &|r| !is_softmax(r));
        // layer -> every seed's row of it at the ceiling
        let mut layers: BTreeMap<u32, bool> = BTreeMap::new();
        for r in &hidden {
            *layers.entry(r.layer).or_insert(true) &= ceilings.holds(r);
        }
        let at_ceiling = layers.values().filter(|&&held| held).count();
        let last_hidden = hidden.iter().map(|r| r.layer).max().unwrap_or(0);
        let lh: Vec<&&Row> = hidden.iter().filter(|r| r.layer == last_hidden).collect();
        let epochs: BTreeSet<u32> = rs.iter().map(|r| r.epoch).collect();
        let (max_epoch, max_iyt) = epochs
            .iter()
            .map(|&e| (e, soft(e, Split::Test, |r| r.i_yt)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f64::NAN));
        h_y.insert(rs[0].dataset.as_str(), soft(last, Split::Test, |r| r.h_y));
        let mut cells: Vec<String> = config.0.iter().map(|(_, _, v)| v.clone()).collect();
        cells.push(format!("{:.3} / {:.3}", acc(Split::Train), acc(Split::Test)));
        cells.push(format!("{at_ceiling} of {}", layers.len()));
        cells.push(format!(
            "{} {:.3} / {:.3}",
            lh.first().map_or("-", |r| r.layer_name.as_str()),
            mean(lh.iter().map(|r| r.i_xt)),
            mean(lh.iter().map(|r| r.i_yt))
        ));
        cells.push(format!(
            "{:.3} / {:.3}",
            soft(first, Split::Test, |r| r.i_xt),
            soft(first, Split::Test, |r| r.i_yt)
        ));
        cells.push(format!("{:.3} / {:.3}", soft(last, Split::Train, |r| r.i_xt), soft(last, Split::Test, |r| r.i_xt)));
        cells.push(format!("{:.3} / {:.3}", soft(last, Split::Train, |r| r.i_yt), soft(last, Split::Test, |r| r.i_yt)));
        cells.push(format!("{max_iyt:.3} (epoch {max_epoch})"));
        cells.push(match largest_fall(rs, Split::Test) {
            Some((name, drop, peak)) if drop > 0.0005 => format!("{drop:.3} ({name}, peak at epoch {peak})"),
            _ => "0 (none)".into(),
        });
        table_row(&mut t, &cells);
    }
    let h_y: Vec<String> = h_y.iter().map(|(d, h)| format!("{d} {h:.4}")).collect();
    let _ = writeln!(
        t,
        "\nLast epoch {last}, first measured epoch {first}, bin {PAPER_BIN}; means over seeds where there are several. \
         Ceiling of I(X;T) on the test split: log2 10,000 = 13.2877 bits; H(Y) of the test split: {}.",
        h_y.join(", ")
    );
    t
}

/// The largest `peak - final` of a layer's seed-mean I(X;T) over the measured epochs, with the
/// layer's name and the peak's epoch.
fn largest_fall(rows: &[&Row], split: Split) -> Option<(String, f64, u32)> {
    let mut paths: BTreeMap<(u32, &str), BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.split == split) {
        paths.entry((r.layer, r.layer_name.as_str())).or_default().entry(r.epoch).or_default().push(r.i_xt);
    }
    paths
        .into_iter()
        .filter_map(|((_, name), epochs)| {
            let path: Vec<(u32, f64)> = epochs.into_iter().map(|(e, v)| (e, mean(v))).collect();
            let f = fall_from_peak(&path)?;
            Some((name.to_string(), f.peak - f.last, f.peak_epoch))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// A path's highest point and its end: what "a layer compresses" is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fall {
    pub peak_epoch: u32,
    pub peak: f64,
    pub last_epoch: u32,
    pub last: f64,
}

/// The peak (the first of equal maxima) and the last point of an (epoch, value) path in
/// epoch order; `None` for an empty path.
pub(crate) fn fall_from_peak(path: &[(u32, f64)]) -> Option<Fall> {
    let &(last_epoch, last) = path.last()?;
    let &(peak_epoch, peak) = path.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(Fall { peak_epoch, peak, last_epoch, last })
}

/// Bin-size sensitivity at the last epoch (test split): I(X;T) / I(Y;T) of every layer at
/// every bin size measured in the one pass.
fn bins(rows: &[&Row]) -> String {
    let params = varied(rows);
    let last = rows.iter().map(|r| r.epoch).max().unwrap_or(0);
    let sizes: BTreeSet<u64> = rows.iter().map(|r| r.bin_size.to_bits()).collect();
    // (configuration, layer, name) -> bin size bits -> (I(X;T), I(Y;T)) of each seed
    type Cells = BTreeMap<(Config, u32, String), BTreeMap<u64, Vec<(f64, f64)>>>;
    let mut cells = Cells::new();
    for r in rows.iter().filter(|r| r.epoch == last && r.split == Split::Test) {
        cells
            .entry((config(r, &params), r.layer, r.layer_name.clone()))
            .or_default()
            .entry(r.bin_size.to_bits())
            .or_default()
            .push((r.i_xt, r.i_yt));
    }
    let mut t = String::new();
    let mut header = vec!["dataset".to_string()];
    header.extend(params.iter().map(|p| p.name().to_string()));
    header.push("layer".into());
    header.extend(sizes.iter().map(|b| format!("bin {}", f64::from_bits(*b))));
    table_header(&mut t, &header);
    for ((config, _, layer), per_bin) in &cells {
        let mut row: Vec<String> = config.0.iter().map(|(_, _, v)| v.clone()).collect();
        row.push(layer.clone());
        for b in &sizes {
            row.push(per_bin.get(b).map_or("-".into(), |v| {
                format!("{:.3} / {:.3}", mean(v.iter().map(|p| p.0)), mean(v.iter().map(|p| p.1)))
            }));
        }
        table_row(&mut t, &row);
    }
    let _ = writeln!(t, "\nI(X;T) / I(Y;T) in bits at epoch {last}, test split.");
    t
}

/// Seed spread of the softmax layer at every measured epoch (test split, paper bin size):
/// mean and [min, max] over seeds, and whether every hidden layer of every seed sat at the
/// ceiling throughout.
fn seeds<'a>(rows: &[&'a Row], ceilings: &Ceilings<'a>) -> String {
    let params = varied(rows);
    let n_seeds = rows.iter().map(|r| r.seed).collect::<BTreeSet<_>>();
    let test: Vec<&'a Row> =
        rows.iter().copied().filter(|r| r.split == Split::Test && r.bin_size == PAPER_BIN).collect();
    let mut cells: BTreeMap<(Config, u32), Vec<&Row>> = BTreeMap::new();
    for r in test.iter().filter(|r| r.layer_name == "softmax") {
        cells.entry((config(r, &params), r.epoch)).or_default().push(r);
    }
    let hidden: Vec<&'a Row> = test.iter().copied().filter(|r| r.layer_name != "softmax").collect();
    let at_ceiling = hidden.iter().filter(|r| ceilings.holds(r)).count();
    let spread = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.3} [{lo:.3}, {hi:.3}]", mean(v))
    };
    let mut t = String::new();
    let mut header = vec!["dataset".to_string()];
    header.extend(params.iter().map(|p| p.name().to_string()));
    header.extend(
        ["epoch", "softmax I(X;T) mean [min, max]", "softmax I(Y;T) mean [min, max]", "test accuracy mean [min, max]"]
            .map(String::from),
    );
    table_header(&mut t, &header);
    for ((config, epoch), rs) in &cells {
        let mut row: Vec<String> = config.0.iter().map(|(_, _, v)| v.clone()).collect();
        row.push(epoch.to_string());
        row.push(spread(rs.iter().map(|r| r.i_xt).collect()));
        row.push(spread(rs.iter().map(|r| r.i_yt).collect()));
        row.push(spread(rs.iter().map(|r| r.accuracy).collect()));
        table_row(&mut t, &row);
    }
    let _ = writeln!(
        t,
        "\nSeeds {n_seeds:?}, test split, bin {PAPER_BIN}. Hidden layers at the ceiling: {at_ceiling} of {} \
         (every layer, seed and epoch).",
        hidden.len()
    );
    t
}

/// Ours against the reference code's published measures at the epochs both measured: the
/// softmax layer per epoch, and how many hidden (conv and FC) layers sit at the ceiling on
/// each side.
fn reference_table<'a>(rows: &'a [Row], reference: &[ReferenceRow], ceilings: &Ceilings<'a>) -> String {
    type Key = (String, u32, u32, u32, String, String, String);
    let mut theirs: BTreeMap<Key, BTreeMap<u32, Vec<&ReferenceRow>>> = BTreeMap::new();
    for r in reference {
        let key = (r.dataset.clone(), r.width, r.depth, r.kernel, r.pooling.clone(), r.fc.clone(), r.split.clone());
        theirs.entry(key).or_default().entry(r.ref_epoch).or_default().push(r);
    }
    let mut t = String::new();
    table_header(
        &mut t,
        &[
            "configuration",
            "split",
            "epoch ours (theirs)",
            "softmax I(X;T) ours / theirs",
            "softmax I(Y;T) ours / theirs",
            "hidden layers at the ceiling ours / theirs",
        ]
        .map(String::from),
    );
    // (our epoch, softmax I(X;T) ours - theirs, I(Y;T) ours - theirs)
    let mut diffs: Vec<(u32, f64, f64)> = Vec::new();
    for ((dataset, width, depth, kernel, pooling, fc, split), epochs) in &theirs {
        // Ours: the first sweep's seed 0 at the paper's bin size with the same architecture.
        let ours: Vec<&'a Row> = rows
            .iter()
            .filter(|r| {
                r.dataset.as_str() == dataset
                    && r.width == *width
                    && r.depth == *depth
                    && r.kernel == *kernel
                    && r.pooling.as_str() == pooling
                    && r.fc == *fc
                    && r.split.as_str() == split
                    && r.seed == 0
                    && r.bin_size == PAPER_BIN
            })
            .collect();
        let Some(first_sweep) = ours.first().map(|r| r.sweep_id.clone()) else { continue };
        let ours: Vec<&'a Row> = ours.into_iter().filter(|r| r.sweep_id == first_sweep).collect();
        // Each side is held to its own ceiling: the test split is the same 10,000 images for
        // both, but the training draws differ (so do their entropies).
        let ceiling_theirs = epochs.values().flatten().map(|r| r.i_xt).fold(0.0, f64::max);
        let fc = if fc.is_empty() { String::new() } else { format!(" fc {fc}") };
        let name = format!("{dataset} w{width} d{depth} k{kernel} pooling {pooling}{fc}");
        for (&ref_epoch, layers) in epochs {
            let at: Vec<&'a Row> = ours.iter().copied().filter(|r| r.epoch == ref_epoch + 1).collect();
            if at.is_empty() {
                continue;
            }
            let softmax_layer = layers.iter().map(|r| r.layer).max().unwrap_or(0);
            let (Some(mine), Some(their)) =
                (at.iter().find(|r| r.layer_name == "softmax"), layers.iter().find(|r| r.layer == softmax_layer))
            else {
                continue;
            };
            let hidden = layers.iter().filter(|r| r.layer != softmax_layer).count();
            let at_ceiling_theirs =
                layers.iter().filter(|r| r.layer != softmax_layer && ceiling_theirs - r.i_xt <= AT_CEILING).count();
            let at_ceiling_ours = at.iter().filter(|r| r.layer_name != "softmax" && ceilings.holds(r)).count();
            diffs.push((ref_epoch + 1, mine.i_xt - their.i_xt, mine.i_yt - their.i_yt));
            table_row(
                &mut t,
                &[
                    name.clone(),
                    split.clone(),
                    format!("{} ({ref_epoch})", ref_epoch + 1),
                    format!("{:.3} / {:.3} ({:+.3})", mine.i_xt, their.i_xt, mine.i_xt - their.i_xt),
                    format!("{:.3} / {:.3} ({:+.3})", mine.i_yt, their.i_yt, mine.i_yt - their.i_yt),
                    format!("{at_ceiling_ours} / {at_ceiling_theirs} of {hidden}"),
                ],
            );
        }
    }
    let summary = |from: u32| {
        let d: Vec<&(u32, f64, f64)> = diffs.iter().filter(|d| d.0 >= from).collect();
        let (x, y) = (mean(d.iter().map(|d| d.1.abs())), mean(d.iter().map(|d| d.2.abs())));
        format!("{} pairs, mean |ours - theirs| softmax I(X;T) {x:.3} bits, I(Y;T) {y:.3} bits", d.len())
    };
    let _ = writeln!(t, "\nAll epochs: {}. From our epoch 5 on: {}.", summary(0), summary(5));
    t
}

pub(crate) fn table_header(t: &mut String, header: &[String]) {
    table_row(t, header);
    let _ = writeln!(t, "|{}", " --- |".repeat(header.len()));
}

pub(crate) fn table_row(t: &mut String, cells: &[String]) {
    let _ = writeln!(t, "| {} |", cells.join(" | "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_blocks_and_refuses_missing_or_unknown_ones() {
        let tables: BTreeMap<String, String> = [("a".to_string(), "| x |\n".to_string())].into();
        let doc = "intro\n<!-- generated:a -->\nold\n<!-- end generated -->\nafter\n";
        let filled = fill(doc, &tables).unwrap();
        assert_eq!(filled, "intro\n<!-- generated:a -->\n| x |\n<!-- end generated -->\nafter\n");
        assert_eq!(fill(&filled, &tables).unwrap(), filled, "filling is idempotent");
        assert!(fill("no blocks", &tables).unwrap_err().contains("no block for"));
        let unknown = "<!-- generated:b -->\n<!-- end generated -->";
        assert!(fill(unknown, &tables).unwrap_err().contains("block b: no such table"));
        assert!(fill("<!-- generated:a -->\n", &tables).unwrap_err().contains("no `<!-- end generated -->`"));
    }
}

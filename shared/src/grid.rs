//! Grid files (design §2 "Grid file"): W&B-style `parameters` with `value`/`values`, plus
//! `include`, `exclude`, `measure`, `train` and `limits`.
//!
//! Expansion is lazy: the product is a mixed-radix number, so point `i` is computed from `i`
//! alone and a million-point grid costs nothing until its jobs are leased. Validation walks
//! only what can interact (the structural parameters jointly, every other value once), so
//! every point is known valid before anything is written, in well under a second.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::job::{Activation, JobSpec, MeasureSpec, Sampling};

/// Keys a grid point may set.
pub const PARAMETERS: &[&str] = &[
    "dataset",
    "width",
    "depth",
    "kernel",
    "pooling",
    "fc",
    "activation",
    "seed",
    "epochs",
    "batch_size",
    "lr",
    "train_size",
    "test_size",
    "sampling",
];

/// Largest grid file accepted, in bytes.
pub const MAX_GRID_BYTES: usize = 1 << 20;
/// Most `include` entries, and most `exclude` entries.
pub const MAX_INCLUDES: usize = 10_000;
pub const MAX_EXCLUDES: usize = 1_000;
/// The coordinator's default `--max-points`.
pub const DEFAULT_MAX_POINTS: u64 = 1_000_000;

/// Keys of the `train` section, as validation messages start with them.
const TRAIN_KEYS: &[&str] = &[
    "epochs",
    "train_size",
    "test_size",
    "batch_size",
    "lr",
    "activation",
    "sampling",
    "checkpoint_every",
    "checkpoint_minutes",
    "eval_every",
];

/// Parameters whose validity depends on each other; their product is checked jointly.
const JOINT: &[&str] = &["width", "depth", "kernel", "pooling", "fc", "epochs", "train_size", "sampling"];

/// A grid that cannot be used, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {key}: {message}")]
pub struct GridError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The offending key (`parameters.kernel`, `include[2]`, ...).
    pub key: String,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    value: Option<Value>,
    values: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainSection {
    epochs: Option<u32>,
    train_size: Option<u32>,
    test_size: Option<u32>,
    batch_size: Option<u32>,
    lr: Option<f64>,
    activation: Option<Activation>,
    sampling: Option<Sampling>,
    checkpoint_every: Option<u32>,
    checkpoint_minutes: Option<f64>,
    /// Absent from the canonical form when unset, so grids written before it keep their IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eval_every: Option<u32>,
}

/// Per-sweep limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Attempts per job before it is marked failed.
    pub max_attempts: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_attempts: 3 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    parameters: Spanned<HashMap<Spanned<String>, Spanned<RawParam>>>,
    #[serde(default)]
    include: Vec<Spanned<BTreeMap<String, Value>>>,
    #[serde(default)]
    exclude: Vec<Spanned<BTreeMap<String, Value>>>,
    measure: Option<Spanned<MeasureSpec>>,
    train: Option<Spanned<TrainSection>>,
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, Clone, Serialize)]
struct Param {
    key: String,
    values: Vec<Value>,
    #[serde(skip)]
    line: u64,
    #[serde(skip)]
    column: u64,
}

/// A parsed, validated grid. Cheap to keep; points are computed on demand.
#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    pub name: String,
    pub description: String,
    params: Vec<Param>,
    include: Vec<BTreeMap<String, Value>>,
    exclude: Vec<BTreeMap<String, Value>>,
    train: TrainSection,
    measure: MeasureSpec,
    pub limits: Limits,
    #[serde(skip)]
    product: u64,
    #[serde(skip)]
    excluded: u64,
}

impl Grid {
    /// Parses and validates `text` (the contents of `file`) with the default point limit;
    /// nothing is expanded.
    pub fn parse(file: &str, text: &str) -> Result<Grid, GridError> {
        Grid::parse_limited(file, text, DEFAULT_MAX_POINTS)
    }

    /// [`Grid::parse`] refusing grids of more than `max_points` jobs. Every limit is checked
    /// before anything is allocated in proportion to it.
    pub fn parse_limited(file: &str, text: &str, max_points: u64) -> Result<Grid, GridError> {
        if text.len() > MAX_GRID_BYTES {
            return Err(GridError {
                file: file.into(),
                line: 1,
                column: 1,
                key: "grid".into(),
                message: format!("the file is {} bytes; grid files are at most {MAX_GRID_BYTES}", text.len()),
            });
        }
        let raw: RawGrid = serde_saphyr::from_str(text).map_err(|e| {
            let message = e.to_string();
            let (line, column) = locate(&message);
            let key = error_key(&message).or_else(|| key_at(text, line, column)).unwrap_or_else(|| "grid".into());
            let message = match first_line(&message) {
                m if m.starts_with("invalid u32") || m.starts_with("invalid u64") => {
                    format!("{m}: expected a whole number")
                }
                m if m.starts_with("invalid f64") => format!("{m}: expected a number"),
                m => m,
            };
            // "measure.epochs must be ..." under the key measure.epochs reads twice.
            let message = message.strip_prefix(&format!("{key} ")).map_or(message.clone(), str::to_string);
            GridError { file: file.into(), line, column, key, message }
        })?;
        let err = |line: u64, column: u64, key: &str, message: String| GridError {
            file: file.into(),
            line,
            column,
            key: key.into(),
            message,
        };
        let mut params = Vec::new();
        // File order: the last parameter varies fastest, like nested loops.
        let mut entries: Vec<_> = raw.parameters.value.into_iter().collect();
        entries.sort_by_key(|(key, _)| (key.referenced.line(), key.referenced.column()));
        for (key, param) in entries {
            let (line, column) = (key.referenced.line(), key.referenced.column());
            let name = format!("parameters.{}", key.value);
            if !PARAMETERS.contains(&key.value.as_str()) {
                return Err(err(
                    line,
                    column,
                    &name,
                    format!("unknown parameter; expected one of {}", PARAMETERS.join(", ")),
                ));
            }
            let values = match (param.value.value, param.value.values) {
                (Some(v), None) => vec![v],
                (None, Some(vs)) if !vs.is_empty() => vs,
                (None, Some(_)) => {
                    return Err(err(line, column, &name, "`values` is empty: the product would be empty".into()));
                }
                _ => {
                    return Err(err(
                        line,
                        column,
                        &name,
                        "give exactly one of `value: X` or `values: [X, Y, ...]`".into(),
                    ));
                }
            };
            let mut seen = HashSet::with_capacity(values.len());
            if let Some(dup) = values.iter().find(|v| !seen.insert(value_key(v))) {
                return Err(err(
                    line,
                    column,
                    &name,
                    format!("value {dup} is listed twice: two jobs would be identical"),
                ));
            }
            params.push(Param { key: key.value, values, line, column });
        }
        let product = params.iter().try_fold(1u64, |acc, p| acc.checked_mul(p.values.len() as u64));
        let too_many = |points: String| {
            err(
                raw.parameters.referenced.line(),
                raw.parameters.referenced.column(),
                "parameters",
                format!(
                    "the grid has {points} points, more than the {max_points} this coordinator accepts (--max-points)"
                ),
            )
        };
        let Some(product) = product else {
            return Err(too_many("more than 2^64".into()));
        };
        if product > max_points {
            return Err(too_many(product.to_string()));
        }
        if raw.include.len() > MAX_INCLUDES || raw.exclude.len() > MAX_EXCLUDES {
            return Err(err(
                1,
                1,
                if raw.include.len() > MAX_INCLUDES { "include" } else { "exclude" },
                format!("at most {MAX_INCLUDES} include and {MAX_EXCLUDES} exclude entries are accepted"),
            ));
        }
        let (measure, measure_line, measure_column) = match raw.measure {
            Some(m) => (m.value, m.referenced.line(), m.referenced.column()),
            None => (MeasureSpec::default(), 1, 1),
        };
        if let Err(message) = measure.check_distinct() {
            return Err(err(measure_line, measure_column, "measure", message));
        }
        let (train, train_line, train_column) = match raw.train {
            Some(t) => (t.value, t.referenced.line(), t.referenced.column()),
            None => (TrainSection::default(), 1, 1),
        };
        let mut grid = Grid {
            name: raw.name.value,
            description: raw.description,
            params,
            include: Vec::new(),
            exclude: Vec::new(),
            train,
            measure,
            limits: raw.limits,
            product,
            excluded: 0,
        };
        if grid.limits.max_attempts == 0 {
            return Err(err(1, 1, "limits.max_attempts", "must be at least 1".into()));
        }
        for (i, entry) in raw.exclude.iter().enumerate() {
            let key = format!("exclude[{i}]");
            if let Some(bad) = entry.value.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
                return Err(err(
                    entry.referenced.line(),
                    entry.referenced.column(),
                    &key,
                    format!("unknown parameter `{bad}`"),
                ));
            }
            grid.exclude.push(entry.value.clone());
        }
        // Every value of every parameter once, with the others at their first value: type
        // errors point at the parameter's own line.
        let first: Vec<usize> = vec![0; grid.params.len()];
        // The first point alone: an error here is about a fixed value, so it names the key
        // the message is about rather than whichever parameter happens to come first.
        if let Err(message) = grid.spec_at(&first).and_then(|s| s.validate().map_err(|e| e.0))
            && !message.contains("smaller than its kernel")
        {
            let starts =
                |key: &str| message.strip_prefix(key).is_some_and(|rest| rest.starts_with([' ', '[', '.', ':']));
            // A type error quotes the offending text: `invalid type: string "two", ...`.
            let quoted = |p: &&Param| p.values[0].is_string() && message.contains(&p.values[0].to_string());
            let located = if let Some(param) = grid.params.iter().find(|p| starts(&p.key) || quoted(p)) {
                err(param.line, param.column, &format!("parameters.{}", param.key), message.clone())
            } else if let Some(key) = TRAIN_KEYS.iter().find(|k| starts(k)) {
                err(train_line, train_column, &format!("train.{key}"), message.clone())
            } else if message.starts_with("measure.") || message.contains("histograms") {
                err(measure_line, measure_column, "measure", message.clone())
            } else {
                err(raw.parameters.referenced.line(), raw.parameters.referenced.column(), "parameters", message.clone())
            };
            return Err(located);
        }
        for (p, param) in grid.params.iter().enumerate() {
            for v in 1..param.values.len() {
                let mut digits = first.clone();
                digits[p] = v;
                if let Err(message) = grid.spec_at(&digits).and_then(|s| s.validate().map_err(|e| e.0)) {
                    if JOINT.contains(&param.key.as_str()) && message.contains("smaller than its kernel") {
                        continue; // judged jointly below, with the point named
                    }
                    return Err(err(
                        param.line,
                        param.column,
                        &format!("parameters.{}", param.key),
                        format!("value {}: {message}", param.values[v]),
                    ));
                }
            }
        }
        grid.validate_joint(file)?;
        let mut included: HashMap<String, usize> = HashMap::new();
        for (i, entry) in raw.include.iter().enumerate() {
            let key = format!("include[{i}]");
            let located = |message: String| err(entry.referenced.line(), entry.referenced.column(), &key, message);
            if let Some(bad) = entry.value.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
                return Err(located(format!("unknown parameter `{bad}`")));
            }
            if let Some(p) = grid.params.iter().find(|p| p.values.len() > 1 && !entry.value.contains_key(&p.key)) {
                return Err(located(format!("must set `{}`, which has several values in `parameters`", p.key)));
            }
            grid.include.push(entry.value.clone());
            let spec = grid.point(product + i as u64).expect("include index").map_err(&located)?;
            spec.validate().map_err(|e| located(e.0))?;
            let canonical = canonical_job(&spec);
            if let Some(j) = included.get(&canonical) {
                return Err(located(format!("the same job as include[{j}]")));
            }
            if let Some(index) = grid.product_index_of(&spec) {
                return Err(located(format!(
                    "the same job as product point {index} of `parameters`; drop it or `exclude` that point"
                )));
            }
            included.insert(canonical, i);
        }
        grid.excluded = grid.count_excluded();
        if grid.job_count() == 0 {
            return Err(err(1, 1, "parameters", "the grid has no points (everything is excluded)".into()));
        }
        Ok(grid)
    }

    fn validate_joint(&self, file: &str) -> Result<(), GridError> {
        let joint: Vec<usize> = (0..self.params.len())
            .filter(|&p| JOINT.contains(&self.params[p].key.as_str()) && self.params[p].values.len() > 1)
            .collect();
        let combos: u64 = joint.iter().map(|&p| self.params[p].values.len() as u64).product();
        let mut seen = HashSet::new();
        for c in 0..combos {
            let mut digits = vec![0; self.params.len()];
            let mut rest = c;
            for &p in &joint {
                let n = self.params[p].values.len() as u64;
                digits[p] = (rest % n) as usize;
                rest /= n;
            }
            if !seen.insert(digits.clone()) || self.is_excluded(&digits) {
                continue;
            }
            let spec = self.spec_at(&digits).map_err(|m| self.point_error(file, &digits, m))?;
            spec.validate().map_err(|e| self.point_error(file, &digits, e.0))?;
        }
        Ok(())
    }

    fn point_error(&self, file: &str, digits: &[usize], message: String) -> GridError {
        let point: Vec<String> = self
            .params
            .iter()
            .zip(digits)
            .filter(|(p, _)| p.values.len() > 1)
            .map(|(p, &d)| format!("{}={}", p.key, p.values[d]))
            .collect();
        // Point at the parameter the message is about ("kernel 11 with depth 5 ..."), else the
        // first jointly checked one that varies.
        let varying = || self.params.iter().zip(digits).filter(|(p, _)| p.values.len() > 1);
        let first = varying()
            .find(|&(p, &d)| message.contains(&format!("{} {}", p.key, p.values[d])))
            .or_else(|| varying().find(|(p, _)| JOINT.contains(&p.key.as_str())))
            .map(|(p, _)| p);
        GridError {
            file: file.into(),
            line: first.map_or(1, |p| p.line),
            column: first.map_or(1, |p| p.column),
            key: format!("point {{{}}}", point.join(", ")),
            message: format!("{message}; drop the combination with `exclude`"),
        }
    }

    /// Number of indices: the product's, then one per `include` entry. Some product
    /// indices are excluded ([`Grid::point`] returns `None` for them).
    pub fn index_len(&self) -> u64 {
        self.product + self.include.len() as u64
    }

    /// Number of jobs.
    pub fn job_count(&self) -> u64 {
        self.product - self.excluded + self.include.len() as u64
    }

    fn digits(&self, mut index: u64) -> Vec<usize> {
        // The last parameter varies fastest, like nested loops in file order.
        let mut digits = vec![0; self.params.len()];
        for (p, param) in self.params.iter().enumerate().rev() {
            let n = param.values.len() as u64;
            digits[p] = (index % n) as usize;
            index /= n;
        }
        digits
    }

    /// The product index whose job equals `spec`, if any (and not excluded).
    fn product_index_of(&self, spec: &JobSpec) -> Option<u64> {
        let value = serde_json::to_value(spec).ok()?;
        let mut digits = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let want = value.get(&p.key)?;
            digits.push(p.values.iter().position(|v| values_equal(v, want) || value_key(v) == value_key(want))?);
        }
        if self.is_excluded(&digits) {
            return None;
        }
        let index = digits.iter().zip(&self.params).fold(0u64, |acc, (&d, p)| acc * p.values.len() as u64 + d as u64);
        let point = self.spec_at(&digits).ok()?;
        (canonical_job(&point) == canonical_job(spec)).then_some(index)
    }

    /// How many product points the `exclude` entries remove, without walking the product.
    /// Each entry is a box (some parameters fixed to one value, the rest free); the union of
    /// boxes is counted by splitting on one parameter at a time.
    fn count_excluded(&self) -> u64 {
        let boxes: Vec<Vec<Option<usize>>> = self
            .exclude
            .iter()
            .filter_map(|entry| {
                let mut fixed = vec![None; self.params.len()];
                for (k, v) in entry {
                    // A key that no parameter has, or a value not in the list, matches nothing.
                    let p = self.params.iter().position(|p| &p.key == k)?;
                    fixed[p] = Some(self.params[p].values.iter().position(|x| values_equal(x, v))?);
                }
                Some(fixed)
            })
            .collect();
        let sizes: Vec<u64> = self.params.iter().map(|p| p.values.len() as u64).collect();
        let refs: Vec<&[Option<usize>]> = boxes.iter().map(Vec::as_slice).collect();
        union_size(&refs, &sizes, 0)
    }

    fn is_excluded(&self, digits: &[usize]) -> bool {
        self.exclude.iter().any(|entry| {
            entry.iter().all(|(k, v)| {
                self.params.iter().zip(digits).any(|(p, &d)| &p.key == k && values_equal(&p.values[d], v))
            })
        })
    }

    fn base(&self) -> serde_json::Map<String, Value> {
        let mut map = match serde_json::to_value(&self.train).expect("train section") {
            Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
            _ => serde_json::Map::new(),
        };
        map.insert("measure".into(), serde_json::to_value(&self.measure).expect("measure"));
        map
    }

    fn spec_at(&self, digits: &[usize]) -> Result<JobSpec, String> {
        let mut map = self.base();
        for (param, &d) in self.params.iter().zip(digits) {
            map.insert(param.key.clone(), param.values[d].clone());
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
    }

    /// The job at `index`: `None` when the product point is excluded, `Some(Err)` never
    /// after a successful parse.
    pub fn point(&self, index: u64) -> Option<Result<JobSpec, String>> {
        if index < self.product {
            let digits = self.digits(index);
            if self.is_excluded(&digits) {
                return None;
            }
            return Some(self.spec_at(&digits));
        }
        let entry = self.include.get((index - self.product) as usize)?;
        let mut map = self.base();
        for param in self.params.iter().filter(|p| p.values.len() == 1) {
            map.insert(param.key.clone(), param.values[0].clone());
        }
        for (k, v) in entry {
            map.insert(k.clone(), v.clone());
        }
        Some(serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string()))
    }

    /// The sweep's `measure.estimators` section (empty when it has none).
    pub fn estimators(&self) -> &crate::estimators::EstimatorsSpec {
        &self.measure.estimators
    }

    /// Whether the sweep keeps raw histograms (`measure.keep_histograms`).
    pub fn keep_histograms(&self) -> bool {
        self.measure.keep_histograms
    }

    /// A stable text of everything that defines the sweep: its UUIDv5 is the sweep ID.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("grid serializes")
    }
}

/// Points of the product covered by at least one box, over parameters `p..`.
fn union_size(boxes: &[&[Option<usize>]], sizes: &[u64], p: usize) -> u64 {
    let rest: u64 = sizes[p..].iter().product();
    if boxes.is_empty() {
        return 0;
    }
    if boxes.iter().any(|b| b[p..].iter().all(Option::is_none)) {
        return rest;
    }
    if let [single] = boxes {
        return single[p..].iter().zip(&sizes[p..]).map(|(d, &n)| if d.is_some() { 1 } else { n }).product();
    }
    let free: Vec<&[Option<usize>]> = boxes.iter().copied().filter(|b| b[p].is_none()).collect();
    let mut fixed: Vec<usize> = boxes.iter().filter_map(|b| b[p]).collect();
    fixed.sort_unstable();
    fixed.dedup();
    let mut total = (sizes[p] - fixed.len() as u64) * union_size(&free, sizes, p + 1);
    for d in fixed {
        let matching: Vec<&[Option<usize>]> = boxes.iter().copied().filter(|b| b[p].is_none_or(|x| x == d)).collect();
        total += union_size(&matching, sizes, p + 1);
    }
    total
}

/// A hashable identity of a value, equal for values [`values_equal`] calls equal.
fn value_key(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("n:{}", if x == 0.0 { 0.0f64 } else { x }.to_bits()),
        None => format!("j:{v}"),
    }
}

/// YAML `0.001` and `1e-3`, or `3` and `3.0`, are the same value.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The canonical parameters of a job (its identity within a sweep).
pub fn canonical_job(spec: &JobSpec) -> String {
    serde_json::to_string(&serde_json::to_value(spec).expect("spec serializes")).expect("json")
}

fn locate(message: &str) -> (u64, u64) {
    // serde-saphyr: "error: line L column C: ..."
    let grab = |word: &str| -> Option<u64> {
        let rest = &message[message.find(word)? + word.len()..];
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    (grab("line").unwrap_or(1), grab("column").unwrap_or(1))
}

fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    // Drop serde-saphyr's own "error: line L column C: " prefix; ours says the same.
    line = line.strip_prefix("error: ").unwrap_or(line);
    if line.starts_with("line ")
        && let Some(i) = line.find(": ")
    {
        line = &line[i + 2..];
    }
    line.to_string()
}

/// The key a parse error is about, where serde names it.
fn error_key(message: &str) -> Option<String> {
    message.split_once("unknown field `").and_then(|(_, rest)| rest.split_once('`')).map(|(key, _)| key.to_string())
}

/// The dotted path of the key whose value sits at `line`:`column` (1-based) of `text`, for
/// the type errors serde reports only by position ("invalid u32"): the last `key:` before
/// the column on that line, under the `section:` that opens a flow mapping earlier on the
/// line or, in block style, the nearest less-indented line above.
fn key_at(text: &str, line: u64, column: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = *lines.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let before: String = here.chars().take(usize::try_from(column).ok()?.saturating_sub(1)).collect();
    let keys: Vec<&str> = before
        .split([',', '{', '['])
        .filter_map(|part| {
            let (key, _) = part.split_once(':')?;
            let key = key.trim().trim_start_matches("- ");
            (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(key)
        })
        .collect();
    let key = *keys.last()?;
    let parent = if keys.len() > 1 {
        Some(keys[0].to_string())
    } else {
        let indent = here.len() - here.trim_start().len();
        lines[..usize::try_from(line).ok()? - 1]
            .iter()
            .rev()
            .find(|l| {
                !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.len() - l.trim_start().len() < indent
            })
            .and_then(|l| l.trim().strip_suffix(':').map(str::to_string))
    };
    Some(parent.map_or_else(|| key.to_string(), |p| format!("{p}.{key}")))
}

//! `GET /api/v1/sweeps/{id}/aggregate?by=AXIS&split=S&estimator=E&bin_size=B`: the
//! paper's comparison views from the server, never from the raw rows in the browser. For
//! every value of one grid axis (width, kernel, depth, pooling, data set, ...), every layer
//! and every epoch: the mean I(X;T) and I(Y;T) over the sweep's finished jobs.
//!
//! It reads the rows through the same paged results query as every export, and keeps the
//! answer until the sweep's count of finished jobs changes (only finished jobs have rows).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::response::Response;
use ibsweep_shared::results::{Estimator, MiRow};

use super::{Api, answer, json};
use crate::ids::SweepId;
use crate::scheduler::Scheduler;
use crate::service::{convert, lanes::blocking};
use crate::store::JobStore;

/// Rows per page of the scan.
const PAGE: usize = 8_192;

/// Answers kept at most, over all sweeps.
const MAX_CACHED: usize = 1_024;

/// Answers kept per sweep and question, with the finished-job count they were made at.
#[derive(Debug, Default)]
pub(super) struct Cache {
    answers: Mutex<HashMap<(SweepId, String), (u64, Arc<serde_json::Value>)>>,
}

/// The grid axes a comparison can be drawn along.
const AXES: [&str; 7] = ["width", "kernel", "depth", "pooling", "dataset", "fc", "activation"];

fn axis_value(row: &MiRow, axis: &str) -> String {
    match axis {
        "width" => row.width.to_string(),
        "kernel" => row.kernel.to_string(),
        "depth" => row.depth.to_string(),
        "pooling" => row.pooling.as_str().to_string(),
        "dataset" => row.dataset.as_str().to_string(),
        "fc" if row.fc.is_empty() => "none".to_string(),
        "fc" => row.fc.clone(),
        _ => row.activation.as_str().to_string(),
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Question {
    #[serde(default = "default_axis")]
    by: String,
    #[serde(default = "default_split")]
    split: String,
    #[serde(default = "default_estimator")]
    estimator: String,
    /// Binning rows only; the smallest bin size present when not given.
    bin_size: Option<f64>,
}

fn default_axis() -> String {
    "width".into()
}
fn default_split() -> String {
    "test".into()
}
fn default_estimator() -> String {
    "binning".into()
}

impl Question {
    fn check(&self) -> Result<Estimator, tonic::Status> {
        if !AXES.contains(&self.by.as_str()) {
            return Err(tonic::Status::invalid_argument(format!("by={}: compare by one of {}", self.by, AXES.join(", "))));
        }
        if !["train", "test"].contains(&self.split.as_str()) {
            return Err(tonic::Status::invalid_argument(format!("split={}: train or test", self.split)));
        }
        Estimator::ALL.into_iter().find(|e| e.as_str() == self.estimator).ok_or_else(|| {
            let names: Vec<&str> = Estimator::ALL.iter().map(|e| e.as_str()).collect();
            tonic::Status::invalid_argument(format!("estimator={}: one of {}", self.estimator, names.join(", ")))
        })
    }

    fn key(&self) -> String {
        format!("{}|{}|{}|{:?}", self.by, self.split, self.estimator, self.bin_size)
    }
}

/// Running sums of one (axis value, layer, epoch).
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    i_xt: f64,
    n_xt: u32,
    i_yt: f64,
    n_yt: u32,
}

/// The answer to `q` from every result row of `sweep`.
fn compute<S: JobStore>(s: &Scheduler<S>, sweep: SweepId, q: &Question, estimator: Estimator) -> crate::error::Result<serde_json::Value> {
    let (mut estimators, mut bin_sizes, mut splits) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    // Two passes would read the store twice; instead keep sums per bin size and pick after.
    let mut groups: BTreeMap<(u64, String, u32, String, u32), Sums> = BTreeMap::new();
    let mut jobs: HashMap<u64, HashSet<String>> = HashMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = s.results_page(sweep, &[], after.as_deref(), PAGE)?;
        for row in &page.rows {
            estimators.insert(row.estimator.as_str());
            splits.insert(row.split.as_str());
            let bin = row.bin_size.map_or(0, f64::to_bits);
            if let Some(b) = row.bin_size {
                bin_sizes.insert(b.to_bits());
            }
            if row.estimator != estimator || row.split.as_str() != q.split {
                continue;
            }
            if q.bin_size.is_some_and(|b| row.bin_size != Some(b)) {
                continue;
            }
            let key = (bin, axis_value(row, &q.by), row.layer, row.layer_name.clone(), row.epoch);
            let sums = groups.entry(key).or_default();
            if let Some(x) = row.i_xt {
                sums.i_xt += x;
                sums.n_xt += 1;
            }
            sums.i_yt += row.i_yt;
            sums.n_yt += 1;
            jobs.entry(bin).or_default().insert(row.job_id.clone());
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let bin_sizes: Vec<f64> = {
        let mut b: Vec<f64> = bin_sizes.into_iter().map(f64::from_bits).collect();
        b.sort_by(f64::total_cmp);
        b
    };
    // Binning answers one bin size: the one asked for, else the smallest present.
    let bin = match (estimator, q.bin_size) {
        (Estimator::Binning, Some(b)) => Some(b),
        (Estimator::Binning, None) => bin_sizes.first().copied(),
        _ => None,
    };
    let wanted = bin.map_or(0, f64::to_bits);
    let mut series: BTreeMap<(String, u32), (String, Vec<u32>, Vec<Option<f64>>, Vec<f64>, Vec<u32>)> = BTreeMap::new();
    for ((_, value, layer, name, epoch), sums) in groups.into_iter().filter(|((b, ..), _)| *b == wanted) {
        let entry = series.entry((value, layer)).or_insert_with(|| (name, Vec::new(), Vec::new(), Vec::new(), Vec::new()));
        entry.1.push(epoch);
        entry.2.push((sums.n_xt > 0).then(|| sums.i_xt / f64::from(sums.n_xt)));
        entry.3.push(sums.i_yt / f64::from(sums.n_yt.max(1)));
        entry.4.push(sums.n_yt);
    }
    // Numeric axis values in numeric order.
    let mut series: Vec<_> = series.into_iter().collect();
    series.sort_by(|((a, la), _), ((b, lb), _)| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y).then(la.cmp(lb)),
        _ => a.cmp(b).then(la.cmp(lb)),
    });
    Ok(serde_json::json!({
        "by": q.by, "split": q.split, "estimator": estimator.as_str(), "bin_size": bin,
        "jobs": jobs.get(&wanted).map_or(0, HashSet::len),
        "choices": {"estimators": estimators, "bin_sizes": bin_sizes, "splits": splits},
        "series": series.into_iter().map(|((value, layer), (name, epochs, i_xt, i_yt, rows))| serde_json::json!({
            "value": value, "layer": layer, "layer_name": name, "epochs": epochs, "i_xt": i_xt, "i_yt": i_yt, "rows": rows,
        })).collect::<Vec<_>>(),
    }))
}

pub(super) async fn route<S: JobStore>(
    State(api): State<Arc<Api<S>>>,
    Path(id): Path<String>,
    Query(q): Query<Question>,
) -> Response {
    let sweep = match convert::parse::<SweepId>(&id) {
        Ok(sweep) => sweep,
        Err(status) => return answer(status),
    };
    let estimator = match q.check() {
        Ok(e) => e,
        Err(status) => return answer(status),
    };
    let done = match blocking(&api.scheduler, move |s| s.status(Some(sweep))).await {
        Ok(status) => status.first().map_or(0, |s| s.record.counts.done),
        Err(status) => return answer(status),
    };
    let key = (sweep, q.key());
    let cached = api.aggregates.answers.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
    if let Some((_, value)) = cached.filter(|(at, _)| *at == done) {
        return json((*value).clone());
    }
    match blocking(&api.scheduler, move |s| compute(s, sweep, &q, estimator)).await {
        Ok(value) => {
            let value = Arc::new(value);
            let mut answers = api.aggregates.answers.lock().unwrap_or_else(|e| e.into_inner());
            if answers.len() >= MAX_CACHED {
                answers.clear(); // questions are few per sweep; this only bounds odd clients
            }
            answers.insert(key, (done, Arc::clone(&value)));
            json((*value).clone())
        }
        Err(status) => answer(status),
    }
}

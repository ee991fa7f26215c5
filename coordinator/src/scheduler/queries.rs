//! Read-only views: status, workers, jobs, results and count profiles. Counts come from
//! the maintained counters, never from a recount; results are read a page at a time.

use ibsweep_shared::grid::canonical_job;
use ibsweep_shared::job::JobSpec;
use ibsweep_shared::measure::CountProfile;
use ibsweep_shared::results::MiRow;

use super::Scheduler;
use super::staging::Area;
use crate::error::{Error, Result};
use crate::ids::{JobId, SweepId};
use crate::lifecycle::{Job, JobState, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

/// Failed jobs listed per sweep in `status`.
const FAILURES_SHOWN: usize = 50;

/// Running jobs listed per sweep in `status`.
const RUNNING_SHOWN: usize = 100;

/// What a sweep looks like now.
#[derive(Debug, Clone)]
pub struct SweepStatus {
    pub record: SweepRecord,
    /// (job id, spec, reasons) of failed jobs, at most 50.
    pub failures: Vec<(JobId, Option<JobSpec>, Vec<String>)>,
    /// Jobs under a lease now, at most 100, with their progress and checkpoint.
    pub running: Vec<Job>,
}

/// One page of result rows and where the next starts.
#[derive(Debug, Clone)]
pub struct ResultsPage {
    pub rows: Vec<MiRow>,
    /// Pass back as `after` for the next page; `None` when this was the last.
    pub next: Option<Vec<u8>>,
}

/// One job's rows now.
#[derive(Debug, Clone)]
pub struct JobRows {
    pub sweep_id: SweepId,
    pub state: StateKind,
    /// False only for a finished job's results; provisional rows are what a job has
    /// measured so far, which no export includes.
    pub provisional: bool,
    pub rows: Vec<MiRow>,
}

impl<S: JobStore> Scheduler<S> {
    /// Progress of one sweep or of all.
    pub fn status(&self, sweep: Option<SweepId>) -> Result<Vec<SweepStatus>> {
        let records: Vec<SweepRecord> = match sweep {
            Some(id) => vec![self.read_sweep(id)?],
            None => self.store.scan(Tree::Sweeps, &[])?.iter().map(|(_, v)| SWEEPS.decode(v)).collect::<Result<_>>()?,
        };
        let mut running = self.running_jobs()?;
        let mut out = Vec::new();
        for record in records {
            let failures = if record.counts.failed > 0 { self.failures(&record)? } else { Vec::new() };
            let mine = running.remove(&record.id).unwrap_or_default();
            out.push(SweepStatus { record, failures, running: mine });
        }
        out.sort_by_key(|s| (s.record.created_ms, s.record.id));
        Ok(out)
    }

    /// Live leases' jobs by sweep (the Active tree holds one key per live lease, so this
    /// reads as many records as there are busy workers).
    fn running_jobs(&self) -> Result<std::collections::HashMap<SweepId, Vec<Job>>> {
        let mut out: std::collections::HashMap<SweepId, Vec<Job>> = std::collections::HashMap::new();
        for (_, key) in self.store.scan(Tree::Active, &[])? {
            let job_key = JobKey::from_bytes(&key)?;
            let list = out.entry(job_key.sweep).or_default();
            if list.len() >= RUNNING_SHOWN {
                continue;
            }
            if let Some(job) = self.txn(&mut |txn| JOBS.get(txn, &key))?.filter(|j| j.kind() == StateKind::Running) {
                list.push(job);
            }
        }
        for list in out.values_mut() {
            list.sort_by_key(|j| j.index);
        }
        Ok(out)
    }

    fn failures(&self, record: &SweepRecord) -> Result<Vec<(JobId, Option<JobSpec>, Vec<String>)>> {
        let mut failures = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        while failures.len() < FAILURES_SHOWN {
            let page = self.store.scan_page(Tree::Jobs, record.id.as_bytes(), after.as_deref(), 256)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                let job: Job = JOBS.decode(value)?;
                if job.kind() == StateKind::Failed && failures.len() < FAILURES_SHOWN {
                    let spec = self.spec_of(JobKey::from_bytes(key)?).ok();
                    failures.push((job.job_id, spec, job.history.clone()));
                }
            }
        }
        Ok(failures)
    }

    /// Workers heard from within the worker timeout, oldest registration first.
    pub fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let cutoff = self.now_ms().saturating_sub(self.timing.worker_timeout_ms);
        let mut workers: Vec<WorkerRecord> = self
            .store
            .scan(Tree::Workers, &[])?
            .iter()
            .map(|(_, v)| WORKERS.decode(v))
            .filter(|w| w.as_ref().map_or(true, |w| w.last_seen_ms >= cutoff))
            .collect::<Result<_>>()?;
        workers.sort_by_key(|w| (w.registered_ms, w.id));
        Ok(workers)
    }

    /// Up to `limit` jobs of a sweep from expansion index `from` on, each with its spec:
    /// stored jobs as stored, the rest as the implicit pending (or, in a cancelled
    /// sweep, cancelled) jobs they are. Returns where the next page starts, `None` at the
    /// end. Excluded grid points are not jobs and are skipped.
    pub fn jobs_page(&self, sweep: SweepId, from: u64, limit: usize) -> Result<(Vec<(Job, JobSpec)>, Option<u64>)> {
        let record = self.read_sweep(sweep)?;
        let grid = self.grid(sweep)?;
        let mut points = Vec::new();
        let mut end = from;
        while end < record.index_len && points.len() < limit {
            if let Some(spec) = grid.point(end) {
                points.push((end, spec.map_err(|e| Error::Corrupt { tree: "sweeps", detail: e })?));
            }
            end += 1;
        }
        // The page's stored records in one ordered scan: only grid points are stored, so
        // there are at most as many as the page has points.
        let after = from.checked_sub(1).map(|index| JobKey { sweep, index }.to_bytes());
        let mut stored = std::collections::HashMap::new();
        if !points.is_empty() {
            for (key, value) in self.store.scan_page(Tree::Jobs, sweep.as_bytes(), after.as_deref(), points.len())? {
                let index = JobKey::from_bytes(&key)?.index;
                if index >= end {
                    break;
                }
                stored.insert(index, JOBS.decode(&value)?);
            }
        }
        let jobs = points
            .into_iter()
            .map(|(index, spec)| {
                let job = stored.remove(&index).unwrap_or_else(|| {
                    let mut job = Job::new(JobId::for_job(sweep, &canonical_job(&spec)), index);
                    if record.cancelled {
                        job.state = JobState::Cancelled;
                    }
                    job
                });
                (job, spec)
            })
            .collect();
        Ok((jobs, (end < record.index_len).then_some(end)))
    }

    /// The job behind an ID (state, attempts, history).
    pub fn job(&self, job_id: JobId) -> Result<Job> {
        self.txn(&mut |txn| self.locate(txn, job_id)).map(|(_, job)| job)
    }

    /// The job behind an ID, with its sweep and its spec.
    pub fn job_with_spec(&self, job_id: JobId) -> Result<(SweepId, Job, JobSpec)> {
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        Ok((key.sweep, job, self.spec_of(key)?))
    }

    /// Up to `limit` result rows of a sweep after `after`, in (job, epoch, split, layer,
    /// bin) order, filtered by column values as printed in CSV.
    pub fn results_page(
        &self,
        sweep: SweepId,
        filters: &[(String, String)],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ResultsPage> {
        if after.is_none() {
            self.read_sweep(sweep)?;
        }
        let page = self.store.scan_page(Tree::Results, sweep.as_bytes(), after, limit)?;
        let next = (page.len() == limit).then(|| page.last().map(|(k, _)| k.clone())).flatten();
        let mut rows = Vec::with_capacity(page.len());
        for (_, v) in &page {
            let (record, _profile): (ResultRecord, Vec<u8>) = split_blob(Tree::Results, v)?;
            if matches(&record.row, filters)? {
                rows.push(record.row);
            }
        }
        Ok(ResultsPage { rows, next })
    }

    /// A finished job's results; for any other job what it has measured so far: the
    /// histograms and estimates committed with its checkpoint, then the running attempt's,
    /// in (epoch, split, layer, estimator) order. What a live view of a running job shows.
    pub fn job_rows(&self, job_id: JobId) -> Result<JobRows> {
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        let (sweep_id, state) = (key.sweep, job.kind());
        if state == StateKind::Done {
            let rows = self.store.scan(Tree::Results, &key.to_bytes())?;
            let rows = rows
                .iter()
                .map(|(_, v)| split_blob::<ResultRecord>(Tree::Results, v).map(|(record, _)| record.row))
                .collect::<Result<_>>()?;
            return Ok(JobRows { sweep_id, state, provisional: false, rows });
        }
        let spec = self.spec_of(key)?;
        let (sweep, name) = (sweep_id.to_string(), job_id.to_string());
        let mut areas = vec![Area::committed(key)];
        if state == StateKind::Running {
            areas.push(Area::live(key, job.attempts));
        }
        let mut rows = Vec::new();
        for area in areas {
            for (k, v) in self.store.scan(Tree::Staged, area.as_bytes())? {
                if is_estimates_suffix(area.suffix(&k)) {
                    let (staged, _): (StagedEstimates, Vec<u8>) = split_blob(Tree::Staged, &v)?;
                    rows.extend(staged.values.iter().map(|c| MiRow::estimate(&sweep, &name, &spec, &staged.key, c)));
                } else {
                    let (staged, _): (StagedRecord, Vec<u8>) = split_blob(Tree::Staged, &v)?;
                    rows.push(MiRow::new(&sweep, &name, &spec, &staged.key, &staged.estimate));
                }
            }
        }
        rows.sort_by_key(|r| (r.epoch, r.split, r.layer, r.estimator));
        Ok(JobRows { sweep_id, state, provisional: true, rows })
    }

    /// Every result row of a sweep (tests and small sweeps; the service streams pages).
    pub fn results(&self, sweep: SweepId, filters: &[(String, String)]) -> Result<Vec<MiRow>> {
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = self.results_page(sweep, filters, after.as_deref(), 4096)?;
            rows.extend(page.rows);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(rows),
            }
        }
    }

    /// The stored count profiles of a sweep (the binning estimator's input), by binning
    /// result row; other estimators' rows have none.
    pub fn profiles(&self, sweep: SweepId) -> Result<Vec<(MiRow, CountProfile)>> {
        let mut out = Vec::new();
        for (_, v) in self.store.scan(Tree::Results, sweep.as_bytes())? {
            let (record, blob): (ResultRecord, Vec<u8>) = split_blob(Tree::Results, &v)?;
            if record.row.binning().is_none() {
                continue;
            }
            let profile = CountProfile::from_bytes(&blob)
                .map_err(|e| Error::Corrupt { tree: "results", detail: e.to_string() })?;
            out.push((record.row, profile));
        }
        Ok(out)
    }
}

/// Whether `row` matches every `key=value` filter (values compared as CSV prints them).
pub fn matches(row: &MiRow, filters: &[(String, String)]) -> Result<bool> {
    if filters.is_empty() {
        return Ok(true);
    }
    let value = serde_json::to_value(row).expect("rows serialize");
    for (key, want) in filters {
        let Some(field) = value.get(key) else {
            return Err(Error::InvalidArgument(format!(
                "--where {key}: unknown column; columns are {}",
                ibsweep_shared::results::CSV_HEADER.replace(',', ", ")
            )));
        };
        let got = match field {
            serde_json::Value::String(s) => s.clone(),
            // An empty CSV cell.
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        let equal = match (got.parse::<f64>(), want.parse::<f64>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => &got == want,
        };
        if !equal {
            return Ok(false);
        }
    }
    Ok(true)
}

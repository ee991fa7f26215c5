//! The coordinator's state machine (design §2 "Job lifecycle"), written once over any
//! [`JobStore`]: submission, leases with fencing, histogram ingest, completion, failure,
//! expiry, cancel and retry. Every state change is one store transaction; everything a
//! worker or user is told is durable first (`flush`) where the design says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ibsweep_shared::grid::{Grid, canonical_job};
use ibsweep_shared::job::JobSpec;
use ibsweep_shared::measure::{BinSize, CountProfile, LayerHistogram};
use ibsweep_shared::results::{Measurement, MiRow};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{JobId, LeaseToken, SweepId, WorkerId};
use crate::records::*;
use crate::store::{JobStore, Tree, Txn};

const FENCE_KEY: &[u8] = b"fence";

/// Timing the coordinator imposes on workers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A lease expires this long after the last heartbeat.
    pub lease_ttl_ms: u64,
    /// How often workers should heartbeat (well under the TTL).
    pub heartbeat_interval_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { lease_ttl_ms: 60_000, heartbeat_interval_ms: 10_000 }
    }
}

/// A granted lease, as the worker needs it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub job_id: JobId,
    pub sweep_id: SweepId,
    pub token: LeaseToken,
    pub attempt: u32,
    pub spec: JobSpec,
    pub deadline_ms: u64,
}

/// One incoming histogram piece (the domain form of the proto chunk).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub job_id: JobId,
    pub token: LeaseToken,
    pub sequence: u64,
    pub key: Measurement,
    pub histogram: Vec<u8>,
    pub piece: u32,
    pub pieces: u32,
}

/// What a sweep looks like now.
#[derive(Debug, Clone)]
pub struct SweepStatus {
    pub record: SweepRecord,
    pub pending: u64,
    /// (job id, params, reasons) of failed jobs, at most 50.
    pub failures: Vec<(JobId, String, Vec<String>)>,
}

/// The result of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub sweep_id: SweepId,
    pub jobs: u64,
    pub created: bool,
    pub name: String,
}

#[derive(Debug)]
pub struct Scheduler<S: JobStore> {
    store: S,
    clock: Arc<dyn Clock>,
    timing: Timing,
    grids: Mutex<HashMap<SweepId, Arc<Grid>>>,
}

fn get_json<T: serde::de::DeserializeOwned>(txn: &dyn Txn, tree: Tree, key: &[u8]) -> Result<Option<T>> {
    txn.get(tree, key)?.map(|v| from_json(tree, &v)).transpose()
}

fn put_json<T: serde::Serialize>(txn: &mut dyn Txn, tree: Tree, key: &[u8], value: &T) -> Result<()> {
    txn.insert(tree, key, &to_json(value))
}

impl<S: JobStore> Scheduler<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, timing: Timing) -> Scheduler<S> {
        Scheduler { store, clock, timing, grids: Mutex::new(HashMap::new()) }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn grid(&self, record: &SweepRecord) -> Result<Arc<Grid>> {
        let mut grids = self.grids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = grids.get(&record.id) {
            return Ok(Arc::clone(g));
        }
        let grid = Grid::parse(&record.file_name, &record.grid_yaml)
            .map_err(|e| Error::Corrupt { tree: "sweeps", detail: format!("stored grid no longer parses: {e}") })?;
        let grid = Arc::new(grid);
        grids.insert(record.id, Arc::clone(&grid));
        Ok(grid)
    }

    fn sweep(&self, sweep: SweepId) -> Result<SweepRecord> {
        let value = self.store.transaction(&mut |txn| txn.get(Tree::Sweeps, sweep.as_bytes()))?;
        value.map(|v| from_json(Tree::Sweeps, &v)).transpose()?.ok_or(Error::SweepNotFound(sweep))
    }

    fn spec_of(&self, record: &SweepRecord, index: u64) -> Result<JobSpec> {
        self.grid(record)?
            .point(index)
            .ok_or_else(|| Error::Corrupt {
                tree: "jobs",
                detail: format!("index {index} of sweep {} is excluded", record.id),
            })?
            .map_err(|e| Error::Corrupt { tree: "sweeps", detail: e })
    }

    // ---- submission ----

    /// Validates and stores a grid. The same content returns the existing sweep.
    pub fn submit(&self, file_name: &str, yaml: &str) -> Result<Submitted> {
        let grid = Grid::parse(file_name, yaml).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let id = SweepId::for_grid(&grid.canonical());
        let keep = grid.point(first_index(&grid)).and_then(|p| p.ok()).is_some_and(|s| s.measure.keep_histograms);
        let record = SweepRecord {
            id,
            name: grid.name.clone(),
            file_name: file_name.into(),
            grid_yaml: yaml.into(),
            created_ms: self.now_ms(),
            total: grid.job_count(),
            index_len: grid.index_len(),
            cursor: 0,
            max_attempts: grid.limits.max_attempts,
            keep_histograms: keep,
            cancelled: false,
            materialized: 0,
            running: 0,
            done: 0,
            failed: 0,
            cancelled_jobs: 0,
            done_seconds: 0.0,
        };
        let created = self.store.transaction(&mut |txn| {
            if txn.get(Tree::Sweeps, id.as_bytes())?.is_some() {
                return Ok(false);
            }
            put_json(txn, Tree::Sweeps, id.as_bytes(), &record)?;
            Ok(true)
        })?;
        self.store.flush()?;
        self.grids.lock().unwrap_or_else(|e| e.into_inner()).entry(id).or_insert_with(|| Arc::new(grid));
        Ok(Submitted { sweep_id: id, jobs: record.total, created, name: record.name })
    }

    // ---- workers ----

    pub fn register(&self, name: &str, threads: u32, device: &str) -> Result<WorkerId> {
        let id = WorkerId(uuid::Uuid::new_v4());
        let now = self.now_ms();
        let record = WorkerRecord {
            id,
            name: name.into(),
            threads,
            device: device.into(),
            registered_ms: now,
            last_seen_ms: now,
            job: None,
            epoch: 0,
        };
        self.store.transaction(&mut |txn| put_json(txn, Tree::Workers, id.as_bytes(), &record))?;
        Ok(id)
    }

    fn worker(&self, txn: &dyn Txn, worker: WorkerId) -> Result<WorkerRecord> {
        get_json(txn, Tree::Workers, worker.as_bytes())?.ok_or_else(|| Error::UnknownWorker(worker.to_string()))
    }

    /// Hands out the next pending job (re-queued ones first, then fresh indices, oldest sweep
    /// first), atomically: the grant, the fencing counter and the sweep's cursor move together.
    pub fn lease(&self, worker: WorkerId) -> Result<Option<Grant>> {
        self.expire_leases()?;
        let now = self.now_ms();
        let mut sweeps: Vec<SweepRecord> = self
            .store
            .scan(Tree::Sweeps, &[])?
            .into_iter()
            .map(|(_, v)| from_json(Tree::Sweeps, &v))
            .collect::<Result<_>>()?;
        sweeps.sort_by_key(|s| (s.created_ms, s.id));
        for sweep in sweeps.into_iter().filter(|s| !s.cancelled && s.pending() > 0) {
            let grid = self.grid(&sweep)?;
            let requeued = self.store.scan(Tree::Requeue, sweep.id.as_bytes())?;
            let grant = self.store.transaction(&mut |txn| {
                let mut record: SweepRecord =
                    get_json(txn, Tree::Sweeps, sweep.id.as_bytes())?.ok_or(Error::SweepNotFound(sweep.id))?;
                if record.cancelled {
                    return Ok(None);
                }
                let mut worker_record = self.worker(txn, worker)?;
                // A re-queued job still pending (another lease may have taken it since the scan).
                for (key, _) in &requeued {
                    if txn.get(Tree::Requeue, key)?.is_none() {
                        continue;
                    }
                    let job: JobRecord = get_json(txn, Tree::Jobs, key)?
                        .ok_or_else(|| Error::Corrupt { tree: "requeue", detail: "job without record".into() })?;
                    let (_, index) = split_job_key(key)
                        .ok_or_else(|| Error::Corrupt { tree: "requeue", detail: "bad key".into() })?;
                    return self.grant(txn, &mut record, &mut worker_record, &grid, index, Some(job), now).map(Some);
                }
                while record.cursor < record.index_len {
                    let index = record.cursor;
                    record.cursor += 1;
                    if grid.point(index).is_some() {
                        return self.grant(txn, &mut record, &mut worker_record, &grid, index, None, now).map(Some);
                    }
                }
                put_json(txn, Tree::Sweeps, sweep.id.as_bytes(), &record)?;
                Ok(None)
            })?;
            if let Some(grant) = grant {
                self.store.flush()?;
                return Ok(Some(grant));
            }
        }
        self.store.transaction(&mut |txn| {
            let mut w = self.worker(txn, worker)?;
            w.last_seen_ms = now;
            put_json(txn, Tree::Workers, worker.as_bytes(), &w)
        })?;
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &self,
        txn: &mut dyn Txn,
        sweep: &mut SweepRecord,
        worker: &mut WorkerRecord,
        grid: &Grid,
        index: u64,
        existing: Option<JobRecord>,
        now: u64,
    ) -> Result<Grant> {
        let spec =
            grid.point(index).expect("caller checked").map_err(|e| Error::Corrupt { tree: "sweeps", detail: e })?;
        let job_id = JobId::for_job(sweep.id, &canonical_job(&spec));
        let fence = txn.get(Tree::Meta, FENCE_KEY)?.map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
        let token = LeaseToken(fence + 1);
        txn.insert(Tree::Meta, FENCE_KEY, &token.0.to_be_bytes())?;
        let mut job = existing.unwrap_or_else(|| {
            sweep.materialized += 1;
            JobRecord {
                job_id,
                index,
                state: JobState::Pending,
                attempt: 0,
                failures: 0,
                lease: None,
                history: Vec::new(),
                cancel_requested: false,
                epoch: 0,
                finished_ms: None,
                train_indices_hash: String::new(),
                test_indices_hash: String::new(),
            }
        });
        job.attempt += 1;
        job.state = JobState::Running;
        job.epoch = 0;
        let deadline_ms = now + self.timing.lease_ttl_ms;
        job.lease = Some(LeaseRecord {
            worker: worker.id,
            worker_name: worker.name.clone(),
            token,
            granted_ms: now,
            deadline_ms,
        });
        let key = job_key(sweep.id, index);
        put_json(txn, Tree::Jobs, &key, &job)?;
        txn.insert(Tree::JobIndex, job_id.as_bytes(), &key)?;
        txn.insert(Tree::Active, &token.0.to_be_bytes(), &key)?;
        txn.remove(Tree::Requeue, &key)?;
        sweep.running += 1;
        put_json(txn, Tree::Sweeps, sweep.id.as_bytes(), sweep)?;
        worker.job = Some(job_id);
        worker.epoch = 0;
        worker.last_seen_ms = now;
        put_json(txn, Tree::Workers, worker.id.as_bytes(), worker)?;
        Ok(Grant { job_id, sweep_id: sweep.id, token, attempt: job.attempt, spec, deadline_ms })
    }

    /// The job behind a fenced call, or `StaleLease` when the token is not the live one.
    fn fenced(&self, txn: &dyn Txn, job_id: JobId, token: LeaseToken) -> Result<(Vec<u8>, JobRecord, SweepRecord)> {
        let key = txn.get(Tree::JobIndex, job_id.as_bytes())?.ok_or(Error::JobNotFound(job_id))?;
        let job: JobRecord = get_json(txn, Tree::Jobs, &key)?.ok_or(Error::JobNotFound(job_id))?;
        let live = job.lease.as_ref().map(|l| l.token);
        if job.state != JobState::Running || live != Some(token) {
            let detail = match live {
                Some(current) => format!("the current lease has token {current}"),
                None => format!("the job is {:?} now", job.state).to_lowercase(),
            };
            return Err(Error::StaleLease { job: job_id, token, detail });
        }
        let (sweep_id, _) =
            split_job_key(&key).ok_or_else(|| Error::Corrupt { tree: "job_index", detail: "bad key".into() })?;
        let sweep = get_json(txn, Tree::Sweeps, sweep_id.as_bytes())?.ok_or(Error::SweepNotFound(sweep_id))?;
        Ok((key, job, sweep))
    }

    /// Extends a lease; returns whether the job was cancelled and the new deadline.
    pub fn heartbeat(&self, worker: WorkerId, job_id: JobId, token: LeaseToken, epoch: u32) -> Result<(bool, u64)> {
        let now = self.now_ms();
        self.store.transaction(&mut |txn| {
            let (key, mut job, _) = self.fenced(txn, job_id, token)?;
            let deadline = now + self.timing.lease_ttl_ms;
            if let Some(lease) = job.lease.as_mut() {
                lease.deadline_ms = deadline;
            }
            job.epoch = epoch;
            put_json(txn, Tree::Jobs, &key, &job)?;
            let mut w = self.worker(txn, worker)?;
            w.last_seen_ms = now;
            w.epoch = epoch;
            w.job = Some(job_id);
            put_json(txn, Tree::Workers, worker.as_bytes(), &w)?;
            Ok((job.cancel_requested, deadline))
        })
    }

    // ---- histograms ----

    /// Adds one chunk; returns false for a chunk already counted (same sequence number).
    /// Not durable until [`Scheduler::flush`].
    pub fn ingest(&self, chunk: &Chunk) -> Result<bool> {
        if chunk.pieces == 0 || chunk.piece >= chunk.pieces {
            return Err(Error::InvalidArgument(format!(
                "chunk {} of job {}: piece {} of {}",
                chunk.sequence, chunk.job_id, chunk.piece, chunk.pieces
            )));
        }
        let histogram = LayerHistogram::from_bytes(&chunk.histogram)
            .map_err(|e| Error::InvalidArgument(format!("chunk {} of job {}: {e}", chunk.sequence, chunk.job_id)))?;
        self.store.transaction(&mut |txn| {
            let (key, job, sweep) = self.fenced(txn, chunk.job_id, chunk.token)?;
            let spec = self.spec_of(&sweep, job.index)?;
            check_chunk(&spec, chunk)?;
            let attempt = attempt_prefix(&key, job.attempt);
            let mut seen = attempt.clone();
            seen.extend_from_slice(&chunk.sequence.to_be_bytes());
            if txn.get(Tree::Seen, &seen)?.is_some() {
                return Ok(false);
            }
            txn.insert(Tree::Seen, &seen, &[])?;
            let mut hist_key = attempt.clone();
            let key_of = &chunk.key;
            hist_key.extend(measurement_suffix(key_of.epoch, key_of.split, key_of.layer, key_of.bin_size));
            let (mut partial, mut merged) = match txn.get(Tree::Partials, &hist_key)? {
                Some(bytes) => {
                    let (p, blob): (PartialRecord, Vec<u8>) = split_blob(Tree::Partials, &bytes)?;
                    let h = LayerHistogram::from_bytes(&blob).map_err(|e| Error::Corrupt { tree: "partials", detail: e.to_string() })?;
                    (p, h)
                }
                None => (
                    PartialRecord { pieces: chunk.pieces, received: 0 },
                    LayerHistogram::new(histogram.n_labels()),
                ),
            };
            if txn.get(Tree::Staged, &hist_key)?.is_some() || partial.pieces != chunk.pieces {
                return Err(Error::InvalidArgument(format!(
                    "chunk {} of job {}: histogram (epoch {}, {}, layer {}, bin {}) already complete or with another piece count",
                    chunk.sequence, chunk.job_id, key_of.epoch, key_of.split.as_str(), key_of.layer_name, key_of.bin_size
                )));
            }
            merged.merge(&histogram).map_err(|e| Error::InvalidArgument(format!("chunk {}: {e}", chunk.sequence)))?;
            partial.received += 1;
            if partial.received < partial.pieces {
                txn.insert(Tree::Partials, &hist_key, &with_blob(&partial, &merged.to_bytes()))?;
                return Ok(true);
            }
            txn.remove(Tree::Partials, &hist_key)?;
            let profile = CountProfile::from_histogram(&merged).to_bytes();
            let staged = StagedRecord {
                key: chunk.key.clone(),
                estimate: merged.estimate(),
                profile_len: profile.len() as u64,
            };
            let mut blob = profile;
            if sweep.keep_histograms {
                blob.extend(merged.to_bytes());
            }
            txn.insert(Tree::Staged, &hist_key, &with_blob(&staged, &blob))?;
            Ok(true)
        })
    }

    pub fn flush(&self) -> Result<()> {
        self.store.flush()
    }

    /// Publishes a finished attempt: every staged histogram becomes a result row, in one
    /// transaction, durable before this returns.
    pub fn complete(
        &self,
        worker: WorkerId,
        job_id: JobId,
        token: LeaseToken,
        hashes: (&str, &str),
        chunks: u64,
    ) -> Result<u64> {
        let now = self.now_ms();
        let (key, job, sweep) = self.store.transaction(&mut |txn| self.fenced(txn, job_id, token))?;
        let attempt = attempt_prefix(&key, job.attempt);
        let partial = self.store.scan(Tree::Partials, &attempt)?;
        if !partial.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id}: {} histograms are still missing pieces; resend them before completing",
                partial.len()
            )));
        }
        let seen = self.store.scan(Tree::Seen, &attempt)?;
        if seen.len() as u64 != chunks {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id}: the worker sent {chunks} chunks but {} arrived; resend the missing ones",
                seen.len()
            )));
        }
        let spec = self.spec_of(&sweep, job.index)?;
        let expected = spec.measured_epochs().len()
            * spec.measure.splits.len()
            * spec.layers().map_or(0, |l| l.len())
            * spec.measure.bin_sizes.len();
        let staged = self.store.scan(Tree::Staged, &attempt)?;
        if staged.len() != expected {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id}: expected {expected} histograms (epochs x splits x layers x bin sizes), received {}",
                staged.len()
            )));
        }
        let mut results = Vec::with_capacity(staged.len());
        for (k, v) in &staged {
            let (record, blob): (StagedRecord, Vec<u8>) = split_blob(Tree::Staged, v)?;
            let key_suffix = &k[attempt.len()..];
            let mut result_key = key.clone();
            result_key.extend_from_slice(key_suffix);
            let row = MiRow::new(&sweep.id.to_string(), &job_id.to_string(), &spec, &record.key, &record.estimate);
            let profile_len = record.profile_len as usize;
            let raw = blob.get(profile_len..).filter(|r| !r.is_empty()).map(<[u8]>::to_vec);
            results.push((k.clone(), result_key, with_blob(&ResultRecord { row }, &blob[..profile_len]), raw));
        }
        let rows = results.len() as u64;
        self.store.transaction(&mut |txn| {
            let (_, mut job, mut sweep) = self.fenced(txn, job_id, token)?;
            for (staged_key, result_key, value, raw) in &results {
                txn.insert(Tree::Results, result_key, value)?;
                if let Some(raw) = raw {
                    txn.insert(Tree::Histograms, result_key, raw)?;
                }
                txn.remove(Tree::Staged, staged_key)?;
            }
            for (seen_key, _) in &seen {
                txn.remove(Tree::Seen, seen_key)?;
            }
            let lease = job.lease.take().expect("fenced jobs have a lease");
            txn.remove(Tree::Active, &lease.token.0.to_be_bytes())?;
            job.state = JobState::Done;
            job.finished_ms = Some(now);
            job.train_indices_hash = hashes.0.into();
            job.test_indices_hash = hashes.1.into();
            put_json(txn, Tree::Jobs, &key, &job)?;
            sweep.running -= 1;
            sweep.done += 1;
            sweep.done_seconds += now.saturating_sub(lease.granted_ms) as f64 / 1000.0;
            put_json(txn, Tree::Sweeps, sweep.id.as_bytes(), &sweep)?;
            if let Ok(mut w) = self.worker(txn, worker) {
                w.job = None;
                w.last_seen_ms = now;
                put_json(txn, Tree::Workers, worker.as_bytes(), &w)?;
            }
            Ok(())
        })?;
        self.store.flush()?;
        Ok(rows)
    }

    /// Ends an attempt without results: discards its partial histograms, then re-queues the
    /// job, or marks it failed (attempts used up) or cancelled. `release` hands the job back
    /// without counting a failure (a worker shutting down).
    pub fn fail(&self, job_id: JobId, token: LeaseToken, reason: &str, release: bool) -> Result<()> {
        let (key, job, _) = self.store.transaction(&mut |txn| self.fenced(txn, job_id, token))?;
        self.end_attempt(&key, job.attempt, token, reason, release)?;
        self.store.flush()
    }

    fn end_attempt(&self, key: &[u8], attempt: u32, token: LeaseToken, reason: &str, release: bool) -> Result<()> {
        let prefix = attempt_prefix(key, attempt);
        let mut garbage = Vec::new();
        for tree in [Tree::Partials, Tree::Staged, Tree::Seen] {
            garbage.extend(self.store.scan(tree, &prefix)?.into_iter().map(|(k, _)| (tree, k)));
        }
        let now = self.now_ms();
        self.store.transaction(&mut |txn| {
            let mut job: JobRecord = get_json(txn, Tree::Jobs, key)?
                .ok_or_else(|| Error::Corrupt { tree: "jobs", detail: "missing".into() })?;
            if job.lease.as_ref().map(|l| l.token) != Some(token) || job.state != JobState::Running {
                return Ok(()); // ended by someone else meanwhile
            }
            let (sweep_id, _) =
                split_job_key(key).ok_or_else(|| Error::Corrupt { tree: "jobs", detail: "bad key".into() })?;
            let mut sweep: SweepRecord =
                get_json(txn, Tree::Sweeps, sweep_id.as_bytes())?.ok_or(Error::SweepNotFound(sweep_id))?;
            for (tree, k) in &garbage {
                txn.remove(*tree, k)?;
            }
            let lease = job.lease.take().expect("checked above");
            txn.remove(Tree::Active, &token.0.to_be_bytes())?;
            job.history.push(format!("attempt {} on {}: {reason}", job.attempt, lease.worker_name));
            sweep.running -= 1;
            if job.cancel_requested || sweep.cancelled {
                job.state = JobState::Cancelled;
                sweep.cancelled_jobs += 1;
            } else {
                if !release {
                    job.failures += 1;
                }
                if job.failures >= sweep.max_attempts {
                    job.state = JobState::Failed;
                    job.finished_ms = Some(now);
                    sweep.failed += 1;
                } else {
                    job.state = JobState::Pending;
                    txn.insert(Tree::Requeue, key, &[])?;
                }
            }
            put_json(txn, Tree::Jobs, key, &job)?;
            put_json(txn, Tree::Sweeps, sweep_id.as_bytes(), &sweep)?;
            if let Some(mut w) = get_json::<WorkerRecord>(txn, Tree::Workers, lease.worker.as_bytes())?
                && w.job == Some(job.job_id)
            {
                w.job = None;
                put_json(txn, Tree::Workers, lease.worker.as_bytes(), &w)?;
            }
            Ok(())
        })
    }

    /// Returns every job whose lease passed its deadline to pending (or failed). Returns how
    /// many expired.
    pub fn expire_leases(&self) -> Result<usize> {
        let now = self.now_ms();
        let mut expired = 0;
        for (token_bytes, key) in self.store.scan(Tree::Active, &[])? {
            let token = LeaseToken(u64::from_be_bytes(token_bytes.as_slice().try_into().unwrap_or([0; 8])));
            let job: Option<JobRecord> = self.store.transaction(&mut |txn| get_json(txn, Tree::Jobs, &key))?;
            let Some(job) = job else { continue };
            let Some(lease) = job.lease.as_ref().filter(|l| l.token == token && l.deadline_ms < now) else { continue };
            let silent = (now - lease.deadline_ms + self.timing.lease_ttl_ms) / 1000;
            let reason = format!("lease expired: no heartbeat for {silent} s");
            tracing::warn!(job = %job.job_id, worker = %lease.worker_name, "{reason}");
            self.end_attempt(&key, job.attempt, token, &reason, false)?;
            expired += 1;
        }
        if expired > 0 {
            self.store.flush()?;
        }
        Ok(expired)
    }

    // ---- users ----

    /// Cancels every unfinished job: pending ones at once, running ones at their next heartbeat.
    pub fn cancel(&self, sweep_id: SweepId) -> Result<u64> {
        self.sweep(sweep_id)?;
        let jobs = self.store.scan(Tree::Jobs, sweep_id.as_bytes())?;
        let cancelled = self.store.transaction(&mut |txn| {
            let mut sweep: SweepRecord =
                get_json(txn, Tree::Sweeps, sweep_id.as_bytes())?.ok_or(Error::SweepNotFound(sweep_id))?;
            if sweep.cancelled {
                return Ok(0);
            }
            let mut count = sweep.total - sweep.materialized;
            for (key, _) in &jobs {
                let Some(mut job) = get_json::<JobRecord>(txn, Tree::Jobs, key)? else { continue };
                match job.state {
                    JobState::Pending => {
                        job.state = JobState::Cancelled;
                        txn.remove(Tree::Requeue, key)?;
                        count += 1;
                    }
                    JobState::Running => {
                        job.cancel_requested = true;
                        count += 1;
                    }
                    _ => continue,
                }
                put_json(txn, Tree::Jobs, key, &job)?;
            }
            // Running jobs are counted as cancelled when their workers stop.
            sweep.cancelled_jobs += count - sweep.running;
            sweep.cancelled = true;
            put_json(txn, Tree::Sweeps, sweep_id.as_bytes(), &sweep)?;
            Ok(count)
        })?;
        self.store.flush()?;
        Ok(cancelled)
    }

    /// Re-queues the failed jobs of a sweep with a fresh set of attempts.
    pub fn retry_failed(&self, sweep_id: SweepId) -> Result<u64> {
        let sweep = self.sweep(sweep_id)?;
        if sweep.cancelled {
            return Err(Error::FailedPrecondition(format!("sweep {sweep_id} is cancelled; submit it again to rerun")));
        }
        let jobs = self.store.scan(Tree::Jobs, sweep_id.as_bytes())?;
        let requeued = self.store.transaction(&mut |txn| {
            let mut sweep: SweepRecord =
                get_json(txn, Tree::Sweeps, sweep_id.as_bytes())?.ok_or(Error::SweepNotFound(sweep_id))?;
            let mut count = 0;
            for (key, _) in &jobs {
                let Some(mut job) = get_json::<JobRecord>(txn, Tree::Jobs, key)? else { continue };
                if job.state != JobState::Failed {
                    continue;
                }
                job.state = JobState::Pending;
                job.failures = 0;
                job.finished_ms = None;
                job.history.push("re-queued by `retry --failed`".into());
                put_json(txn, Tree::Jobs, key, &job)?;
                txn.insert(Tree::Requeue, key, &[])?;
                count += 1;
            }
            sweep.failed -= count;
            put_json(txn, Tree::Sweeps, sweep_id.as_bytes(), &sweep)?;
            Ok(count)
        })?;
        self.store.flush()?;
        Ok(requeued)
    }

    /// Progress of one sweep or of all.
    pub fn status(&self, sweep: Option<SweepId>) -> Result<Vec<SweepStatus>> {
        let records: Vec<SweepRecord> = match sweep {
            Some(id) => vec![self.sweep(id)?],
            None => self
                .store
                .scan(Tree::Sweeps, &[])?
                .iter()
                .map(|(_, v)| from_json(Tree::Sweeps, v))
                .collect::<Result<_>>()?,
        };
        let mut out = Vec::new();
        for record in records {
            let mut failures = Vec::new();
            if record.failed > 0 {
                for (_, v) in self.store.scan(Tree::Jobs, record.id.as_bytes())? {
                    let job: JobRecord = from_json(Tree::Jobs, &v)?;
                    if job.state == JobState::Failed && failures.len() < 50 {
                        let params = self.spec_of(&record, job.index).map(|s| canonical_job(&s)).unwrap_or_default();
                        failures.push((job.job_id, params, job.history.clone()));
                    }
                }
            }
            out.push(SweepStatus { pending: record.pending(), record, failures });
        }
        out.sort_by_key(|s| (s.record.created_ms, s.record.id));
        Ok(out)
    }

    pub fn workers(&self) -> Result<Vec<WorkerRecord>> {
        let mut workers: Vec<WorkerRecord> = self
            .store
            .scan(Tree::Workers, &[])?
            .iter()
            .map(|(_, v)| from_json(Tree::Workers, v))
            .collect::<Result<_>>()?;
        workers.sort_by_key(|w| (w.registered_ms, w.id));
        Ok(workers)
    }

    /// The job behind an ID (state, attempts, history).
    pub fn job(&self, job_id: JobId) -> Result<JobRecord> {
        self.store.transaction(&mut |txn| {
            let key = txn.get(Tree::JobIndex, job_id.as_bytes())?.ok_or(Error::JobNotFound(job_id))?;
            get_json(txn, Tree::Jobs, &key)?.ok_or(Error::JobNotFound(job_id))
        })
    }

    /// Result rows of a sweep, in (job, epoch, split, layer, bin) order, filtered by column
    /// values as printed in CSV.
    pub fn results(&self, sweep: SweepId, filters: &[(String, String)]) -> Result<Vec<MiRow>> {
        self.sweep(sweep)?;
        let mut rows = Vec::new();
        for (_, v) in self.store.scan(Tree::Results, sweep.as_bytes())? {
            let (record, _profile): (ResultRecord, Vec<u8>) = split_blob(Tree::Results, &v)?;
            if matches(&record.row, filters)? {
                rows.push(record.row);
            }
        }
        Ok(rows)
    }

    /// The stored count profiles of a sweep (the estimator's input), by result row.
    pub fn profiles(&self, sweep: SweepId) -> Result<Vec<(MiRow, CountProfile)>> {
        self.store
            .scan(Tree::Results, sweep.as_bytes())?
            .iter()
            .map(|(_, v)| {
                let (record, blob): (ResultRecord, Vec<u8>) = split_blob(Tree::Results, v)?;
                let profile = CountProfile::from_bytes(&blob)
                    .map_err(|e| Error::Corrupt { tree: "results", detail: e.to_string() })?;
                Ok((record.row, profile))
            })
            .collect()
    }
}

fn first_index(grid: &Grid) -> u64 {
    (0..grid.index_len()).find(|&i| grid.point(i).is_some()).unwrap_or(0)
}

fn check_chunk(spec: &JobSpec, chunk: &Chunk) -> Result<()> {
    let bad =
        |what: String| Err(Error::InvalidArgument(format!("chunk {} of job {}: {what}", chunk.sequence, chunk.job_id)));
    if spec.measured_epochs().binary_search(&chunk.key.epoch).is_err() {
        return bad(format!("epoch {} is not a measured epoch of this job", chunk.key.epoch));
    }
    if !spec.measure.splits.contains(&chunk.key.split) {
        return bad(format!("split {} is not measured", chunk.key.split.as_str()));
    }
    let layers = spec.layers().map_err(|e| Error::InvalidArgument(e.0))?;
    match layers.get((chunk.key.layer as usize).wrapping_sub(1)) {
        Some(l) if l.name == chunk.key.layer_name => {}
        _ => {
            return bad(format!("layer {} `{}` is not a layer of this network", chunk.key.layer, chunk.key.layer_name));
        }
    }
    if !BinSize::new(chunk.key.bin_size).is_ok_and(|b| spec.measure.bin_sizes.contains(&b)) {
        return bad(format!("bin size {} is not one of the job's", chunk.key.bin_size));
    }
    Ok(())
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

//! The coordinator's scheduler: the [`crate::lifecycle`] state machine applied to a
//! [`JobStore`], one transaction per transition, with an in-memory index so the hot paths
//! never scan the store.
//!
//! # Layout
//! - this module: the [`Scheduler`] itself, its settings, recovery at start, and the index
//!   (open sweeps, re-queued jobs, live leases by deadline) rebuilt from the store.
//! - [`control`]: what users do to sweeps: submit, cancel, retry.
//! - [`leasing`]: what workers do to leases: register, lease, heartbeat, fail or release;
//!   and lease expiry.
//! - [`ingest`]: histogram pieces in, results out: ingest and complete.
//! - [`queries`]: read-only views: status, workers, jobs, results, count profiles.
//! - [`staging`]: the staging area's vocabulary (the committed attempt, the histograms a
//!   job owes, the completeness check), shared by ingest and checkpoints.
//! - [`checkpoints`], [`audit`], [`commit`]: checkpoint commits, the cross-record audit,
//!   group-committed flushes.
//! - [`events`]: what each transition changed, published for live views.
//!
//! Concurrency: every transition that moves the index (grant, heartbeat, end, expiry,
//! cancel, retry, completion) runs under the index lock, so the index and the store move
//! together. Ingest only touches per-attempt staging and runs without it; the store's
//! transactions keep it consistent with a concurrent heartbeat.

mod audit;
mod checkpoints;
mod commit;
mod control;
mod events;
mod ingest;
mod leasing;
mod queries;
mod staging;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ibsweep_shared::grid::Grid;
use ibsweep_shared::job::JobSpec;

pub use audit::RecordCheck;
pub use checkpoints::CheckpointHeader;
pub use commit::deferring;
pub use control::Submitted;
pub use events::{Event, EventBus};
pub use ingest::Chunk;
pub use leasing::{Grant, Registration};
pub use queries::{JobRows, SweepStatus, matches};

use crate::checkpoints::CheckpointDir;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids::{JobId, LeaseToken, SweepId};
use crate::lifecycle::Job;
use crate::metrics::Metrics;
use crate::records::*;
use crate::store::{JobStore, Tree, Txn};

/// Timing the coordinator imposes on workers.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A lease expires this long after the last heartbeat.
    pub lease_ttl_ms: u64,
    /// How often workers should heartbeat (well under the TTL).
    pub heartbeat_interval_ms: u64,
    /// A worker not heard from for this long drops out of `status` and `workers`.
    pub worker_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { lease_ttl_ms: 60_000, heartbeat_interval_ms: 10_000, worker_timeout_ms: 600_000 }
    }
}

/// Limits on what users may submit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most jobs one sweep may have (`serve --max-points`).
    pub max_points: u64,
    /// Most worker records at once (`serve --max-workers`).
    pub max_workers: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_points: 1_000_000, max_workers: 10_000 }
    }
}

/// What the lease path needs without touching the store: which sweeps may have work, which
/// materialized jobs wait to be re-run, and when each live lease expires.
#[derive(Debug, Default)]
struct Index {
    /// Sweeps with fresh indices left, oldest first.
    open: BTreeSet<(u64, SweepId)>,
    /// Re-queued job indices per sweep (expired, released, retried).
    requeued: BTreeMap<(u64, SweepId), BTreeSet<u64>>,
    /// Live leases ordered by deadline.
    deadlines: BTreeSet<(u64, LeaseToken, JobKey)>,
}

impl Index {
    fn requeue(&mut self, sweep: &SweepRecord, index: u64) {
        self.requeued.entry((sweep.created_ms, sweep.id)).or_default().insert(index);
    }

    fn unqueue(&mut self, sweep: &SweepRecord, index: u64) {
        let key = (sweep.created_ms, sweep.id);
        if let Some(set) = self.requeued.get_mut(&key) {
            set.remove(&index);
            if set.is_empty() {
                self.requeued.remove(&key);
            }
        }
    }

    fn forget_sweep(&mut self, sweep: &SweepRecord) {
        self.open.remove(&(sweep.created_ms, sweep.id));
        self.requeued.remove(&(sweep.created_ms, sweep.id));
    }
}

/// The job lifecycle over a store. See the module docs for the layout.
#[derive(Debug)]
pub struct Scheduler<S: JobStore> {
    store: S,
    clock: Arc<dyn Clock>,
    timing: Timing,
    limits: Limits,
    index: Mutex<Index>,
    grids: Mutex<HashMap<SweepId, Arc<Grid>>>,
    /// When a store write last failed (0: never). Leases that lapse while the store cannot
    /// write are not held against their workers.
    last_store_error_ms: AtomicU64,
    metrics: Arc<Metrics>,
    /// Where checkpoints are kept; without it, uploads are refused.
    checkpoints: Option<CheckpointDir>,
    /// Concurrent transitions share flushes.
    commit: commit::GroupCommit,
    events: EventBus,
}

const FENCE_KEY: &[u8] = b"fence";

impl<S: JobStore> Scheduler<S> {
    /// Opens the scheduler over `store`: rebuilds the index and gives every live lease a
    /// fresh TTL, so time the coordinator was down never counts against a worker.
    pub fn open(store: S, clock: Arc<dyn Clock>, timing: Timing) -> Result<Scheduler<S>> {
        let scheduler = Scheduler { clock, timing, ..Scheduler::inspect(store) };
        scheduler.recover()?;
        Ok(scheduler)
    }

    /// The scheduler over `store` without recovery: no lease renewed, nothing written.
    /// For offline inspection (`coordinator verify`, `backup --data-dir`), never for serving.
    pub fn inspect(store: S) -> Scheduler<S> {
        Scheduler {
            store,
            clock: Arc::new(crate::clock::SystemClock),
            timing: Timing::default(),
            limits: Limits::default(),
            index: Mutex::new(Index::default()),
            grids: Mutex::new(HashMap::new()),
            last_store_error_ms: AtomicU64::new(0),
            metrics: Metrics::new(),
            checkpoints: None,
            commit: commit::GroupCommit::default(),
            events: EventBus::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Scheduler<S> {
        self.limits = limits;
        self
    }

    /// Keeps checkpoints in `dir`, and removes the files no job references any more.
    pub fn with_checkpoints(mut self, dir: CheckpointDir) -> Result<Scheduler<S>> {
        self.checkpoints = Some(dir);
        let removed = self.collect_checkpoints()?;
        if removed > 0 {
            tracing::info!("removed {removed} checkpoint files no job references");
        }
        Ok(self)
    }

    /// Rebuilds the index from the store, and renews every live lease.
    fn recover(&self) -> Result<()> {
        let now = self.now_ms();
        let mut index = self.lock();
        *index = Index::default();
        let mut sweeps = HashMap::new();
        for (_, value) in self.store.scan(Tree::Sweeps, &[])? {
            let sweep = SWEEPS.decode(&value)?;
            if sweep.has_fresh_indices() {
                index.open.insert((sweep.created_ms, sweep.id));
            }
            sweeps.insert(sweep.id, sweep);
        }
        for (key, _) in self.store.scan(Tree::Requeue, &[])? {
            let key = JobKey::from_bytes(&key)?;
            if let Some(sweep) = sweeps.get(&key.sweep).filter(|s| !s.cancelled) {
                index.requeue(sweep, key.index);
            }
        }
        let active = self.store.scan(Tree::Active, &[])?;
        let ttl = self.timing.lease_ttl_ms;
        for (_, key) in &active {
            let job_key = JobKey::from_bytes(key)?;
            let refreshed = self.txn(&mut |txn| {
                let Some(job) = JOBS.get(txn, key)? else { return Ok(None) };
                let fresh = job.refresh(now, ttl);
                JOBS.put(txn, key, &fresh)?;
                Ok(fresh.lease().map(|l| (l.deadline_ms, l.token)))
            })?;
            if let Some((deadline, token)) = refreshed {
                index.deadlines.insert((deadline, token, job_key));
            }
        }
        drop(index);
        if !active.is_empty() {
            self.store.flush()?;
            tracing::info!(leases = active.len(), "live leases renewed for {} s", ttl / 1000);
        }
        Ok(())
    }

    /// Why writes are refused at the moment (a full disk, a store that could not be
    /// reopened), if they are; reads work meanwhile.
    pub fn write_refusal(&self) -> Option<Error> {
        self.store.write_refusal()
    }

    /// After writes failed for lack of space: reopens the store and, if it takes writes
    /// again, rebuilds the index from what is durable (a refused commit may have reached
    /// the old handle's memory and must not linger in the index) and renews every lease,
    /// so the outage costs no worker its job. `Ok(false)`: still no space, try later;
    /// `Err`: the store is lost to this process ([`Error::StoreLost`]).
    pub fn recover_storage(&self) -> Result<bool> {
        if self.store.write_refusal().is_none() {
            return Ok(true);
        }
        match self.store.reopen() {
            Ok(()) => {}
            Err(Error::StorageFull { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.recover()?;
        self.metrics.store_recoveries.inc();
        Ok(true)
    }

    /// The counters this scheduler moves (exported by `serve --metrics-listen`).
    /// Where live views hear what changed.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store back, for a scheduler made with [`Scheduler::inspect`].
    pub fn into_store(self) -> S {
        self.store
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Durable on return: everything this thread committed before the call is on disk. Callers
    /// that flush at the same time share one flush ([`commit::GroupCommit`]).
    /// Inside [`deferring`] it only notes that a flush is needed; the caller then awaits
    /// [`Scheduler::durable`].
    pub fn flush(&self) -> Result<()> {
        if commit::defer() {
            return Ok(());
        }
        self.flush_now()
    }

    /// A flush even inside [`deferring`] (before removing a file the store no longer
    /// references).
    fn flush_now(&self) -> Result<()> {
        self.commit.wait_durable(|| self.store.flush()).inspect_err(|_| self.note_store_error())
    }

    /// Waits, without parking a thread, until everything committed before the call is durable;
    /// the flush itself runs on a blocking thread, shared by every caller waiting at the time.
    pub async fn durable(self: &Arc<Self>) -> Result<()> {
        self.commit
            .wait_durable_async(|| {
                let scheduler = Arc::clone(self);
                async move {
                    tokio::task::spawn_blocking(move || scheduler.store.flush())
                        .await
                        .map_err(|e| Error::Store(format!("flush task failed: {e}")))?
                }
            })
            .await
            .inspect_err(|_| self.note_store_error())
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_store_error(&self) {
        self.last_store_error_ms.store(self.now_ms().max(1), Ordering::SeqCst);
    }

    /// One store transaction; a storage failure is remembered (see `last_store_error_ms`).
    fn txn<R>(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<R>) -> Result<R> {
        self.store.transaction(body).inspect_err(|e| {
            if matches!(e, Error::Store(_) | Error::StorageFull { .. }) {
                self.note_store_error();
            }
        })
    }

    fn sweep(&self, txn: &dyn Txn, sweep: SweepId) -> Result<SweepRecord> {
        SWEEPS.get(txn, sweep.as_bytes())?.ok_or(Error::SweepNotFound(sweep))
    }

    fn read_sweep(&self, sweep: SweepId) -> Result<SweepRecord> {
        self.txn(&mut |txn| self.sweep(txn, sweep))
    }

    /// The parsed grid of a sweep, parsed once per coordinator run.
    fn grid(&self, sweep: SweepId) -> Result<Arc<Grid>> {
        if let Some(grid) = self.grids.lock().unwrap_or_else(|e| e.into_inner()).get(&sweep) {
            return Ok(Arc::clone(grid));
        }
        let (file, text) = self.txn(&mut |txn| {
            let record = self.sweep(txn, sweep)?;
            let text = txn
                .get(GRIDS, sweep.as_bytes())?
                .ok_or(Error::Corrupt { tree: GRIDS.name(), detail: format!("sweep {sweep} has no grid") })?;
            Ok((record.file_name, text))
        })?;
        let text = String::from_utf8(text)
            .map_err(|_| Error::Corrupt { tree: GRIDS.name(), detail: format!("grid of {sweep} is not UTF-8") })?;
        let grid = Grid::parse(&file, &text)
            .map_err(|e| Error::Corrupt { tree: GRIDS.name(), detail: format!("stored grid no longer parses: {e}") })?;
        let grid = Arc::new(grid);
        self.grids.lock().unwrap_or_else(|e| e.into_inner()).insert(sweep, Arc::clone(&grid));
        Ok(grid)
    }

    fn spec_of(&self, key: JobKey) -> Result<JobSpec> {
        self.grid(key.sweep)?
            .point(key.index)
            .ok_or_else(|| Error::Corrupt {
                tree: "jobs",
                detail: format!("index {} of sweep {} is excluded", key.index, key.sweep),
            })?
            .map_err(|e| Error::Corrupt { tree: "sweeps", detail: e })
    }

    /// The job behind an ID.
    fn locate(&self, txn: &dyn Txn, job_id: JobId) -> Result<(JobKey, Job)> {
        let key = txn.get(Tree::JobIndex, job_id.as_bytes())?.ok_or(Error::JobNotFound(job_id))?;
        let job = JOBS.get(txn, &key)?.ok_or(Error::JobNotFound(job_id))?;
        Ok((JobKey::from_bytes(&key)?, job))
    }

    fn next_token(&self, txn: &mut dyn Txn) -> Result<LeaseToken> {
        let fence = match txn.get(Tree::Meta, FENCE_KEY)? {
            Some(v) => u64::from_be_bytes(
                v.try_into().map_err(|_| Error::Corrupt { tree: "meta", detail: "bad fencing counter".into() })?,
            ),
            None => 0,
        };
        let token = LeaseToken(fence + 1);
        txn.insert(Tree::Meta, FENCE_KEY, &token.0.to_be_bytes())?;
        Ok(token)
    }
}

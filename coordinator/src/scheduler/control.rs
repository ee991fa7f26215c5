//! What users do to sweeps: submit a grid, cancel a sweep, retry its failed jobs.

use ibsweep_shared::grid::Grid;

use super::{Event, Scheduler};
use crate::error::{Error, Result};
use crate::ids::SweepId;
use crate::lifecycle::{Counts, Job, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

/// What [`Scheduler::for_each_job`] applies to each job: (transaction, job key, job, the
/// sweep's record for the page) -> whether it counted.
type JobVisitor<'a> = dyn FnMut(&mut dyn crate::store::Txn, &[u8], &Job, &mut SweepRecord) -> Result<bool> + 'a;

/// Jobs handled per store transaction by cancel and retry.
const PAGE: usize = 512;

/// The result of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub sweep_id: SweepId,
    pub jobs: u64,
    pub created: bool,
    pub name: String,
}

impl<S: JobStore> Scheduler<S> {
    /// Validates and stores a grid. The same content returns the existing sweep. A rejected
    /// grid writes nothing.
    pub fn submit(&self, file_name: &str, yaml: &str) -> Result<Submitted> {
        let grid = Grid::parse_limited(file_name, yaml, self.limits.max_points)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        // Activation histograms are not MI rows and have no place in the store yet, so a
        // sweep would silently drop them: refused until they travel.
        if grid.estimators().activations.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{file_name}: measure.estimators.activations is not supported in sweeps yet (kde, renyi and sliced \
                 are); remove it, or compute activation histograms for one job with `worker run`"
            )));
        }
        let id = SweepId::for_grid(&grid.canonical());
        let record = SweepRecord {
            id,
            name: grid.name.clone(),
            file_name: file_name.into(),
            created_ms: self.now_ms(),
            index_len: grid.index_len(),
            cursor: 0,
            max_attempts: grid.limits.max_attempts,
            keep_histograms: grid.keep_histograms(),
            cancelled: false,
            materialized: 0,
            counts: Counts { total: grid.job_count(), ..Counts::default() },
            done_seconds: 0.0,
        };
        let mut index = self.lock();
        let created = self.txn(&mut |txn| {
            if txn.get(Tree::Sweeps, id.as_bytes())?.is_some() {
                return Ok(false);
            }
            SWEEPS.put(txn, id.as_bytes(), &record)?;
            txn.insert(GRIDS, id.as_bytes(), yaml.as_bytes())?;
            Ok(true)
        })?;
        if created {
            index.open.insert((record.created_ms, id));
        }
        drop(index);
        self.flush()?;
        self.grids.lock().unwrap_or_else(|e| e.into_inner()).entry(id).or_insert_with(|| grid.into());
        if created {
            self.events.publish(Event::Sweep { sweep_id: id });
        }
        Ok(Submitted { sweep_id: id, jobs: record.counts.total, created, name: record.name })
    }

    /// Cancels every unfinished job: pending ones at once, running ones at their workers'
    /// next heartbeat. The flag and the lease path are serialized, so no job is granted
    /// after this returns. Returns how many jobs it cancelled or flagged.
    pub fn cancel(&self, sweep_id: SweepId) -> Result<u64> {
        let mut index = self.lock();
        let (sweep, implicit) = self.txn(&mut |txn| {
            let mut sweep = self.sweep(txn, sweep_id)?;
            if sweep.cancelled {
                return Ok((sweep, None));
            }
            // Jobs never materialized are pending implicitly and can no longer be granted.
            let implicit = sweep.counts.total - sweep.materialized;
            sweep.counts.apply(StateKind::Pending, StateKind::Cancelled, implicit)?;
            sweep.cancelled = true;
            SWEEPS.put(txn, sweep_id.as_bytes(), &sweep)?;
            Ok((sweep, Some(implicit)))
        })?;
        let Some(mut cancelled) = implicit else {
            return Ok(0);
        };
        index.forget_sweep(&sweep);
        let mut retired = Vec::new();
        cancelled += self.for_each_job(sweep_id, &mut |txn, key, job, record| {
            let mut next = job.cancel();
            if next == *job {
                return Ok(false); // finished jobs stay as they are
            }
            if next.kind() == StateKind::Cancelled && job.checkpoint.is_some() {
                retired.push((JobKey::from_bytes(key)?, self.retire_checkpoint(&mut next)));
            }
            record.counts.apply(job.kind(), next.kind(), 1)?;
            if job.kind() == StateKind::Pending {
                txn.remove(Tree::Requeue, key)?;
            }
            JOBS.put(txn, key, &next)?;
            Ok(true)
        })?;
        drop(index);
        self.flush()?;
        // A transaction rerun on conflict may have listed a job twice.
        retired.sort();
        retired.dedup();
        for (key, file) in retired {
            self.forget_retired(key, file, false)?;
        }
        self.events.publish(Event::Sweep { sweep_id });
        Ok(cancelled)
    }

    /// Re-queues the failed jobs of a sweep with a fresh set of tries.
    pub fn retry_failed(&self, sweep_id: SweepId) -> Result<u64> {
        let mut index = self.lock();
        let sweep = self.read_sweep(sweep_id)?;
        if sweep.cancelled {
            return Err(Error::FailedPrecondition(format!("sweep {sweep_id} is cancelled; submit it again to rerun")));
        }
        if sweep.counts.failed == 0 {
            return Ok(0);
        }
        let mut requeued = std::collections::BTreeSet::new();
        self.for_each_job(sweep_id, &mut |txn, key, job, record| {
            let Ok(next) = job.retry() else { return Ok(false) };
            record.counts.apply(StateKind::Failed, StateKind::Pending, 1)?;
            JOBS.put(txn, key, &next)?;
            txn.insert(Tree::Requeue, key, &[])?;
            requeued.insert(job.index);
            Ok(true)
        })?;
        for &i in &requeued {
            index.requeue(&sweep, i);
        }
        drop(index);
        self.flush()?;
        self.events.publish(Event::Sweep { sweep_id });
        Ok(requeued.len() as u64)
    }

    /// Applies `body` to every materialized job of a sweep, a page per transaction (the
    /// sweep record read and written once per page); counts the calls that returned true.
    /// Callers hold the index lock, so no transition of the lease path interleaves.
    fn for_each_job(&self, sweep_id: SweepId, body: &mut JobVisitor<'_>) -> Result<u64> {
        let mut after: Option<Vec<u8>> = None;
        let mut count = 0;
        loop {
            let page = self.store.scan_page(Tree::Jobs, sweep_id.as_bytes(), after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else { return Ok(count) };
            after = Some(last.clone());
            count += self.txn(&mut |txn| {
                let mut record = self.sweep(txn, sweep_id)?;
                let mut n = 0;
                for (key, _) in &page {
                    // Re-read inside the transaction: the page was read outside it.
                    let Some(job) = JOBS.get(txn, key)? else { continue };
                    n += u64::from(body(txn, key, &job, &mut record)?);
                }
                if n > 0 {
                    SWEEPS.put(txn, sweep_id.as_bytes(), &record)?;
                }
                Ok(n)
            })?;
        }
    }
}

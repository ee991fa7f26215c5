//! A full check of the store's cross-record invariants: what every transition keeps true
//! together (a job record, its index entry, its live lease, its place in the re-queue, its
//! sweep's counters). A commit is all or nothing, so these hold after any crash; the check
//! is how tests (and anyone in doubt after one) see that they do. It reads every job
//! record: an offline check, not a query for the serving path.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Scheduler;
use crate::error::Result;
use crate::ids::SweepId;
use crate::lifecycle::{Counts, Job, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

impl<S: JobStore> Scheduler<S> {
    /// Every inconsistency found, one line each; empty when the store is consistent.
    pub fn audit(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let jobs: BTreeMap<JobKey, Job> = self
            .store
            .scan(Tree::Jobs, &[])?
            .into_iter()
            .map(|(k, v)| Ok((JobKey::from_bytes(&k)?, JOBS.decode(&v)?)))
            .collect::<Result<_>>()?;
        let index: HashMap<Vec<u8>, Vec<u8>> = self.store.scan(Tree::JobIndex, &[])?.into_iter().collect();
        let active: HashMap<Vec<u8>, Vec<u8>> = self.store.scan(Tree::Active, &[])?.into_iter().collect();
        let requeued: HashSet<Vec<u8>> = self.store.scan(Tree::Requeue, &[])?.into_iter().map(|(k, _)| k).collect();

        // Per sweep: running, done, failed, records, as the job records say.
        let mut seen: HashMap<SweepId, (Counts, u64)> = HashMap::new();
        for (key, job) in &jobs {
            let key_bytes = key.to_bytes();
            let at = format!("job {} (sweep {}, index {})", job.job_id, key.sweep, key.index);
            if index.get(job.job_id.as_bytes().as_slice()) != Some(&key_bytes) {
                problems.push(format!("{at}: its job-index entry is missing or points elsewhere"));
            }
            // Only a running job has a lease.
            if let Some(lease) = job.lease()
                && active.get(token_key(lease.token).as_slice()) != Some(&key_bytes)
            {
                problems.push(format!("{at}: running under lease {} with no live-lease entry", lease.token));
            }
            let queued = requeued.contains(&key_bytes);
            if (job.kind() == StateKind::Pending) != queued {
                problems.push(format!(
                    "{at}: {} but {}in the re-queue",
                    job.kind().as_str(),
                    if queued { "" } else { "not " }
                ));
            }
            let (counts, records) = seen.entry(key.sweep).or_default();
            *records += 1;
            match job.kind() {
                StateKind::Running => counts.running += 1,
                StateKind::Done => counts.done += 1,
                StateKind::Failed => counts.failed += 1,
                StateKind::Pending | StateKind::Cancelled => {}
            }
        }
        for (token, key) in &active {
            let live = JobKey::from_bytes(key).ok().and_then(|k| jobs.get(&k)).and_then(Job::lease);
            if live.is_none_or(|l| token_key(l.token).as_slice() != token.as_slice()) {
                problems.push(format!("live-lease entry {token:02x?} names no job running under it"));
            }
        }
        for key in &requeued {
            if JobKey::from_bytes(key).ok().and_then(|k| jobs.get(&k)).is_none() {
                problems.push(format!("re-queue entry {key:02x?} names no job record"));
            }
        }
        for (_, value) in self.store.scan(Tree::Sweeps, &[])? {
            let sweep = SWEEPS.decode(&value)?;
            let (counts, records) = seen.remove(&sweep.id).unwrap_or_default();
            let kept = sweep.counts;
            if (kept.running, kept.done, kept.failed) != (counts.running, counts.done, counts.failed) {
                problems.push(format!(
                    "sweep {}: counters say {} running, {} done, {} failed; its job records {}, {}, {}",
                    sweep.id, kept.running, kept.done, kept.failed, counts.running, counts.done, counts.failed
                ));
            }
            if sweep.materialized != records {
                problems
                    .push(format!("sweep {}: {} job records counted, {records} found", sweep.id, sweep.materialized));
            }
        }
        for sweep in seen.keys() {
            problems.push(format!("job records of sweep {sweep}, which has no record"));
        }
        Ok(problems)
    }
}

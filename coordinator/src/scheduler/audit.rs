//! A full check of the store's cross-record invariants: what every transition keeps true
//! together (a job record, its index entry, its live lease, its place in the re-queue, its
//! sweep's counters). A commit is all or nothing, so these hold after any crash; the check
//! is how tests (and anyone in doubt after one) see that they do. It reads every job
//! record: an offline check, not a query for the serving path.

use std::collections::{BTreeMap, HashMap, HashSet};

use ibsweep_shared::grid::Grid;

use super::Scheduler;
use crate::error::{Error, Result};
use crate::ids::SweepId;
use crate::lifecycle::{Counts, Job, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

/// Problems listed at most (a store damaged everywhere would list every record).
const MAX_PROBLEMS: usize = 100;

/// What [`Scheduler::check_records`] read: entries and bytes per tree, and every record
/// that does not decode.
#[derive(Debug, Default)]
pub struct RecordCheck {
    /// (tree, entries, bytes of keys and values)
    pub trees: Vec<(Tree, u64, u64)>,
    pub problems: Vec<String>,
}

impl<S: JobStore> Scheduler<S> {
    /// Decodes every record of every tree as the code that reads it would, so damage
    /// that keeps sled happy (a flipped bit inside a value) is found before anything is
    /// served from it. Reads everything: for `coordinator verify`, not the serving path.
    pub fn check_records(&self) -> Result<RecordCheck> {
        let mut check = RecordCheck::default();
        for tree in Tree::ALL {
            let (mut entries, mut bytes) = (0u64, 0u64);
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = self.store.scan_page(tree, &[], after.as_deref(), 4096)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (key, value) in &page {
                    entries += 1;
                    bytes += (key.len() + value.len()) as u64;
                    if let Err(e) = decode_record(tree, key, value)
                        && check.problems.len() < MAX_PROBLEMS
                    {
                        check.problems.push(format!("{} entry {}: {e}", tree.name(), short_hex(key)));
                    }
                }
            }
            check.trees.push((tree, entries, bytes));
        }
        Ok(check)
    }

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

fn short_hex(key: &[u8]) -> String {
    let hex: String = key.iter().take(24).map(|b| format!("{b:02x}")).collect();
    if key.len() > 24 { format!("{hex}...") } else { hex }
}

/// Decodes one entry the way its readers do; the error says what is wrong with it.
fn decode_record(tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
    match tree {
        Tree::Meta | Tree::Pieces | Tree::Histograms => {}
        Tree::Sweeps => {
            SWEEPS.decode(value)?;
        }
        Tree::Grids => {
            let text = std::str::from_utf8(value)
                .map_err(|_| Error::Corrupt { tree: tree.name(), detail: "grid text is not UTF-8".into() })?;
            Grid::parse("grid.yaml", text).map_err(|e| Error::Corrupt {
                tree: tree.name(),
                detail: format!("stored grid no longer parses: {e}"),
            })?;
        }
        Tree::Jobs => {
            JobKey::from_bytes(key)?;
            JOBS.decode(value)?;
        }
        Tree::JobIndex | Tree::Active => {
            JobKey::from_bytes(value)?;
        }
        Tree::Requeue => {
            JobKey::from_bytes(key)?;
        }
        Tree::Partials => {
            PARTIALS.decode(value)?;
        }
        Tree::Staged => {
            if key.len() >= 17 && is_estimates_suffix(&key[key.len() - 17..]) {
                split_blob::<StagedEstimates>(tree, value)?;
            } else {
                split_blob::<StagedRecord>(tree, value)?;
            }
        }
        Tree::Results => {
            split_blob::<ResultRecord>(tree, value)?;
        }
        Tree::Workers => {
            WORKERS.decode(value)?;
        }
    }
    Ok(())
}

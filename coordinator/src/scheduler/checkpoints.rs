//! Checkpoints of running jobs: upload (committing the measured epochs it covers),
//! download for a resumed attempt, discard, export, and retention.
//!
//! Histograms of measured epochs up to a checkpoint's epoch move, in the transaction that
//! stores the checkpoint's reference, from the attempt's staging prefix to the job's
//! *committed* prefix (attempt number 0; real attempts count from 1). A later attempt
//! resumes after that epoch and stages only what follows; completion publishes both. When
//! an attempt dies, `drop_attempt` discards only what it staged after its last checkpoint.

use super::Scheduler;
use super::staging::{self, Area, Attempt, suffix_epoch};
use crate::checkpoints::{CheckpointDir, Incoming};
use crate::error::{Error, Result};
use crate::ids::{Claim, JobId};
use crate::lifecycle::{CheckpointRef, Job, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

/// What a checkpoint upload announces in its first piece.
#[derive(Debug, Clone)]
pub struct CheckpointHeader {
    pub job_id: JobId,
    pub claim: Claim,
    pub epoch: u32,
    pub size: u64,
    pub sha256: String,
}

impl<S: JobStore> Scheduler<S> {
    fn checkpoint_dir(&self) -> Result<&CheckpointDir> {
        self.checkpoints
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("this coordinator keeps no checkpoints (no data directory)".into()))
    }

    /// Whether finished jobs keep their last checkpoint.
    pub fn keeps_final_checkpoints(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|d| d.keep_final)
    }

    /// Bytes of checkpoint files on disk.
    pub fn checkpoint_bytes(&self) -> u64 {
        self.checkpoints.as_ref().map_or(0, |d| d.bytes_used())
    }

    /// A consistent snapshot of the whole store and its checkpoint files, for a backup
    /// taken while serving.
    pub fn snapshot(&self) -> Result<crate::backup::Snapshot> {
        let dir = self.checkpoint_dir()?;
        let pin = dir.pin();
        crate::backup::Snapshot::take(&self.store, dir.root(), Some(pin))
    }

    /// Checks an announced checkpoint against the live lease and opens its file.
    pub fn begin_checkpoint(&self, header: &CheckpointHeader) -> Result<Incoming<'_>> {
        let dir = self.checkpoint_dir()?;
        let job_id = header.job_id;
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        job.check(&header.claim).map_err(|r| Error::refused(job_id, r))?;
        let spec = self.spec_of(key)?;
        let start = job.start_epoch();
        if header.epoch <= start || header.epoch > spec.epochs {
            return Err(Error::InvalidArgument(format!(
                "job {job_id}: a checkpoint at epoch {} is outside this attempt's epochs {}..={}",
                header.epoch,
                start + 1,
                spec.epochs
            )));
        }
        if let Some(old) = job.checkpoint.as_ref().filter(|c| c.epoch >= header.epoch) {
            return Err(Error::InvalidArgument(format!(
                "job {job_id}: a checkpoint at epoch {} is already stored",
                old.epoch
            )));
        }
        dir.begin(format!("{job_id}-e{}-t{}.ckpt", header.epoch, header.claim.token.0), header.size, &header.sha256)
    }

    /// Makes the received checkpoint durable, then references it from the job and commits
    /// the attempt's histograms up to its epoch, in one transaction; the checkpoint it
    /// replaces is removed after that. Returns how many histograms were committed.
    pub fn finish_checkpoint(&self, header: &CheckpointHeader, incoming: Incoming<'_>) -> Result<u64> {
        let dir = self.checkpoint_dir()?;
        let name = incoming.name.clone();
        incoming.finish()?;
        let stored = CheckpointRef {
            epoch: header.epoch,
            size: header.size,
            sha256: header.sha256.clone(),
            file: name.clone(),
            stored_ms: self.now_ms(),
        };
        match self.commit_checkpoint(header, stored) {
            Ok((committed, old)) => {
                if let Some(old) = old {
                    dir.remove(&old.file);
                }
                self.metrics.checkpoints_stored.inc();
                Ok(committed)
            }
            Err(e) => {
                dir.remove(&name);
                Err(e)
            }
        }
    }

    fn commit_checkpoint(
        &self,
        header: &CheckpointHeader,
        stored: CheckpointRef,
    ) -> Result<(u64, Option<CheckpointRef>)> {
        let (job_id, claim, epoch) = (header.job_id, &header.claim, header.epoch);
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        job.check(claim).map_err(|r| Error::refused(job_id, r))?;
        let spec = self.spec_of(key)?;
        let attempt = Area::live(key, job.attempts);
        let committed = Area::committed(key);
        if let Some((_, value)) = self
            .store
            .scan(Tree::Partials, attempt.as_bytes())?
            .iter()
            .find(|(k, _)| suffix_epoch(attempt.suffix(k)) <= epoch)
        {
            let k = PARTIALS.decode(value)?.key;
            return Err(Error::InvalidArgument(format!(
                "job {job_id}: checkpoint at epoch {epoch}, but histogram (epoch {}, {}, layer `{}`, bin {}) is missing pieces",
                k.epoch,
                k.split.as_str(),
                k.layer_name,
                k.bin_size
            )));
        }
        let moving: Vec<Vec<u8>> = self
            .store
            .scan(Tree::Staged, attempt.as_bytes())?
            .into_iter()
            .map(|(k, _)| attempt.suffix(&k).to_vec())
            .filter(|suffix| suffix_epoch(suffix) <= epoch)
            .collect();
        let already = self.store.scan(Tree::Staged, committed.as_bytes())?;
        let have = already.iter().map(|(k, _)| committed.suffix(k)).chain(moving.iter().map(Vec::as_slice));
        if let Some(missing) = staging::first_missing(&staging::expected(&spec)?, have.collect(), Some(epoch)) {
            return Err(Error::InvalidArgument(format!(
                "job {job_id}: checkpoint at epoch {epoch}, but {missing} never arrived"
            )));
        }
        let key_bytes = key.to_bytes();
        let old = self.txn(&mut |txn| {
            let job = JOBS.get(txn, &key_bytes)?.ok_or(Error::JobNotFound(job_id))?;
            let (next, old) = job.store_checkpoint(claim, stored.clone()).map_err(|r| Error::refused(job_id, r))?;
            for suffix in &moving {
                let from = attempt.with_suffix(suffix);
                if let Some(value) = txn.get(Tree::Staged, from.as_bytes())? {
                    txn.remove(Tree::Staged, from.as_bytes())?;
                    txn.insert(Tree::Staged, committed.with_suffix(suffix).as_bytes(), &value)?;
                }
            }
            JOBS.put(txn, &key_bytes, &next)?;
            Ok(old)
        })?;
        self.flush()?;
        tracing::info!(job = %job_id, epoch, bytes = stored.size, committed = moving.len(), "checkpoint stored");
        Ok((moving.len() as u64, old))
    }

    /// The checkpoint a resumed lease continues from, verified against its record. One
    /// that fails is discarded (with what was committed with it) and DATA_LOSS returned:
    /// the attempt then starts from scratch.
    pub fn resume_checkpoint(&self, claim: &Claim, job_id: JobId) -> Result<(CheckpointRef, std::path::PathBuf)> {
        let dir = self.checkpoint_dir()?;
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        job.check(claim).map_err(|r| Error::refused(job_id, r))?;
        let Some(checkpoint) = job.checkpoint.clone() else {
            return Err(Error::InvalidArgument(format!("job {job_id} has no checkpoint; start from scratch")));
        };
        match dir.verify(&checkpoint.file, checkpoint.size, &checkpoint.sha256) {
            Ok(()) => Ok((checkpoint.clone(), dir.path(&checkpoint.file))),
            Err(why) => {
                self.drop_job_checkpoint(key, &why)?;
                Err(Error::DataLoss(format!("job {job_id}: {why}; discarded, the job restarts from scratch")))
            }
        }
    }

    /// The holder of the lease could not use its checkpoint: drop it and its commits.
    pub fn discard_checkpoint(&self, claim: &Claim, job_id: JobId, reason: &str) -> Result<()> {
        let (key, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        job.check(claim).map_err(|r| Error::refused(job_id, r))?;
        let shown: String = reason.chars().take(300).collect();
        self.drop_job_checkpoint(key, &format!("the worker could not use it: {shown}"))
    }

    /// Forgets a job's checkpoint and the histograms committed with it, durably, then
    /// removes the file.
    fn drop_job_checkpoint(&self, key: JobKey, reason: &str) -> Result<()> {
        let key_bytes = key.to_bytes();
        let dropped = self.txn(&mut |txn| {
            let Some(job) = JOBS.get(txn, &key_bytes)? else { return Ok(None) };
            let (mut next, old) = job.drop_checkpoint();
            let Some(old) = old else { return Ok(None) };
            next.history.push(format!("checkpoint at epoch {} discarded: {reason}", old.epoch));
            JOBS.put(txn, &key_bytes, &next)?;
            Ok(Some((old, next.job_id)))
        })?;
        self.flush()?;
        self.drop_attempt(key, Attempt::Committed)?;
        if let Some((old, job_id)) = dropped {
            tracing::warn!(job = %job_id, epoch = old.epoch, "checkpoint discarded: {reason}");
            self.metrics.checkpoints_discarded.inc();
            if let Some(dir) = &self.checkpoints {
                dir.remove(&old.file);
            }
        }
        Ok(())
    }

    /// A job's kept checkpoint, verified, for `coordinator checkpoint JOB --out FILE`.
    pub fn export_checkpoint(&self, job_id: JobId) -> Result<(CheckpointRef, std::path::PathBuf)> {
        let dir = self.checkpoint_dir()?;
        let (_, job) = self.txn(&mut |txn| self.locate(txn, job_id))?;
        let checkpoint = job.checkpoint.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "job {job_id} has no checkpoint{}",
                if job.state.kind() == StateKind::Done {
                    " (finished jobs keep theirs only when the coordinator runs with --keep-final-checkpoints)"
                } else {
                    " yet"
                }
            ))
        })?;
        dir.verify(&checkpoint.file, checkpoint.size, &checkpoint.sha256).map_err(Error::DataLoss)?;
        Ok((checkpoint.clone(), dir.path(&checkpoint.file)))
    }

    /// What a job that just reached `next` keeps: the checkpoint goes unless the job is
    /// done and final checkpoints are kept. Returns the file to remove once `next` is
    /// durable.
    pub(super) fn retire_checkpoint(&self, next: &mut Job) -> Option<String> {
        let keep = match next.kind() {
            StateKind::Pending | StateKind::Running => true,
            StateKind::Done => self.keeps_final_checkpoints(),
            StateKind::Failed | StateKind::Cancelled => false,
        };
        if keep { None } else { next.checkpoint.take().map(|c| c.file) }
    }

    /// After a job ended for good: its committed histograms and checkpoint file go.
    pub(super) fn forget_retired(&self, key: JobKey, file: Option<String>, results_published: bool) -> Result<()> {
        if !results_published {
            self.drop_attempt(key, Attempt::Committed)?;
        }
        if let (Some(file), Some(dir)) = (file, &self.checkpoints) {
            // The record that no longer points at the file must be on disk first.
            self.flush_now()?;
            dir.remove(&file);
        }
        Ok(())
    }

    /// Removes checkpoint files no job references (a crash between writing a file and
    /// referencing it, or between un-referencing and removing it). Returns how many.
    pub fn collect_checkpoints(&self) -> Result<usize> {
        let Some(dir) = &self.checkpoints else { return Ok(0) };
        let mut removed = 0;
        for name in dir.settled_files()? {
            let job_id = name.get(..36).and_then(|id| id.parse::<JobId>().ok());
            let referenced = match job_id {
                Some(id) => match self.txn(&mut |txn| self.locate(txn, id)) {
                    Ok((_, job)) => job.checkpoint.as_ref().is_some_and(|c| c.file == name),
                    Err(Error::JobNotFound(_)) => false,
                    Err(e) => return Err(e),
                },
                None => false,
            };
            if !referenced {
                tracing::info!("removing unreferenced checkpoint file {name}");
                dir.remove(&name);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

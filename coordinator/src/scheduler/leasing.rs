//! What workers do to leases: register, lease, heartbeat, fail or release; and expiry.
//!
//! The lease path reads only the index, the one sweep it grants from and the worker: no
//! scan, no grid text. Expiry walks the deadline-ordered index, not the store.

use std::sync::atomic::Ordering;

use ibsweep_shared::grid::canonical_job;
use ibsweep_shared::job::JobSpec;

use super::staging::{Area, Attempt};
use super::{Event, Index, Scheduler};
use crate::error::{Error, Result};
use crate::ids::{Claim, JobId, LeaseSecret, LeaseToken, SweepId, WorkerId};
use crate::lifecycle::{Beat, CheckpointRef, Ending, Job, JobState, Lease, StateKind};
use crate::records::*;
use crate::store::{JobStore, Tree};

/// Longest worker name and device string accepted at registration.
pub const MAX_NAME_BYTES: usize = 128;

/// A worker's `last_seen_ms` is rewritten at most this often by calls that would not
/// otherwise write its record (an idle worker polling for work).
const SEEN_RESOLUTION_MS: u64 = 5_000;

/// A granted lease, as the worker needs it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub job_id: JobId,
    pub sweep_id: SweepId,
    pub token: LeaseToken,
    pub secret: LeaseSecret,
    pub attempt: u32,
    pub spec: JobSpec,
    pub deadline_ms: u64,
    /// The checkpoint this attempt resumes from.
    pub resume: Option<CheckpointRef>,
}

impl Grant {
    /// What the holder presents with every call about this job.
    pub fn claim(&self, worker: WorkerId) -> Claim {
        Claim { worker, token: self.token, secret: self.secret }
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub id: WorkerId,
    /// The worker's earlier record was found and reused (a reconnect, not a new worker).
    pub reused: bool,
}

/// What one grant attempt found in a sweep.
enum Found {
    Granted(Box<(Grant, JobKey, u64, SweepRecord)>),
    /// The index said there was work, the store says otherwise: fix the index, look again.
    Nothing(SweepRecord),
}

impl<S: JobStore> Scheduler<S> {
    /// Registers a worker process. `previous` is the ID it had before a reconnect; its
    /// record (and any live lease) is kept instead of creating another.
    pub fn register(&self, name: &str, threads: u32, device: &str, previous: Option<WorkerId>) -> Result<Registration> {
        for (what, value) in [("name", name), ("device", device)] {
            if value.len() > MAX_NAME_BYTES {
                return Err(Error::InvalidArgument(format!(
                    "worker {what} is {} bytes; at most {MAX_NAME_BYTES} are accepted",
                    value.len()
                )));
            }
        }
        let now = self.now_ms();
        let fresh = WorkerId(uuid::Uuid::new_v4());
        let known = match previous {
            Some(id) => self.txn(&mut |txn| Ok(txn.get(Tree::Workers, id.as_bytes())?.is_some()))?,
            None => false,
        };
        if !known {
            // Silent workers are forgotten first, so the cap counts live ones.
            let mut registered = self.store.scan(Tree::Workers, &[])?.len() as u64;
            if registered >= self.limits.max_workers {
                registered -= self.forget_idle_workers()? as u64;
            }
            if registered >= self.limits.max_workers {
                return Err(Error::ResourceExhausted(format!(
                    "{registered} workers are registered, the most this coordinator accepts (--max-workers); \
                     stop idle workers or raise the limit"
                )));
            }
        }
        self.txn(&mut |txn| {
            let existing = match previous {
                Some(id) => WORKERS.get(txn, id.as_bytes())?,
                None => None,
            };
            let reused = existing.is_some();
            let record = match existing {
                Some(mut w) => {
                    w.name = name.into();
                    w.threads = threads;
                    w.device = device.into();
                    w.last_seen_ms = now;
                    w
                }
                None => WorkerRecord {
                    id: fresh,
                    name: name.into(),
                    threads,
                    device: device.into(),
                    registered_ms: now,
                    last_seen_ms: now,
                    job: None,
                    epoch: 0,
                },
            };
            WORKERS.put(txn, record.id.as_bytes(), &record)?;
            Ok(Registration { id: record.id, reused })
        })
    }

    fn worker(&self, txn: &dyn crate::store::Txn, worker: WorkerId) -> Result<WorkerRecord> {
        WORKERS.get(txn, worker.as_bytes())?.ok_or_else(|| Error::UnknownWorker(worker.to_string()))
    }

    /// Hands out the next pending job (re-queued ones first, then fresh indices, oldest
    /// sweep first), durable before it returns. A worker that asks while it holds a live
    /// lease lost the answer to its previous Lease: it gets that same lease again.
    pub fn lease(&self, worker: WorkerId) -> Result<Option<Grant>> {
        let now = self.now_ms();
        let mut index = self.lock();
        let record = self.txn(&mut |txn| self.worker(txn, worker))?;
        if let Some(grant) = self.lease_held(&record)? {
            return Ok(Some(grant));
        }
        loop {
            let requeued = index.requeued.iter().next().map(|(&k, set)| (k, set.iter().next().copied()));
            let open = index.open.iter().next().copied();
            // Oldest sweep first; within a sweep, re-queued jobs before fresh indices.
            let (sweep_key, requeued_index) = match (requeued, open) {
                (Some((rk, ri)), Some(ok)) if rk <= ok => (rk, ri),
                (_, Some(ok)) => (ok, None),
                (Some((rk, ri)), None) => (rk, ri),
                (None, None) => break,
            };
            match self.grant_from(sweep_key.1, requeued_index, worker, now)? {
                Found::Granted(granted) => {
                    let (grant, key, deadline, sweep) = *granted;
                    if requeued_index.is_some() {
                        index.unqueue(&sweep, key.index);
                    }
                    if !sweep.has_fresh_indices() {
                        index.open.remove(&sweep_key);
                    }
                    index.deadlines.insert((deadline, grant.token, key));
                    drop(index);
                    self.flush()?;
                    self.metrics.leases_granted.inc();
                    self.events.publish(Event::job(key.sweep, grant.job_id, StateKind::Running));
                    return Ok(Some(grant));
                }
                Found::Nothing(sweep) => match requeued_index {
                    Some(i) if !sweep.cancelled => index.unqueue(&sweep, i),
                    _ if sweep.cancelled => index.forget_sweep(&sweep),
                    _ => {
                        index.open.remove(&sweep_key);
                    }
                },
            }
        }
        drop(index);
        if now.saturating_sub(record.last_seen_ms) >= SEEN_RESOLUTION_MS {
            self.txn(&mut |txn| {
                let mut w = self.worker(txn, worker)?;
                w.last_seen_ms = now;
                WORKERS.put(txn, worker.as_bytes(), &w)
            })?;
        }
        Ok(None)
    }

    /// The live lease `worker` already holds, if any.
    fn lease_held(&self, worker: &WorkerRecord) -> Result<Option<Grant>> {
        let Some(job_id) = worker.job else { return Ok(None) };
        let Ok((key, job)) = self.txn(&mut |txn| self.locate(txn, job_id)) else { return Ok(None) };
        let now = self.now_ms();
        let Some(lease) = job.lease().filter(|l| l.worker == worker.id && !job.is_expired(now)) else {
            return Ok(None);
        };
        tracing::info!(job = %job_id, worker = %worker.name, "lease asked for again: the same lease is handed back");
        Ok(Some(Grant {
            job_id,
            sweep_id: key.sweep,
            token: lease.token,
            secret: lease.secret,
            attempt: job.attempts,
            spec: self.spec_of(key)?,
            deadline_ms: lease.deadline_ms,
            resume: job.checkpoint.clone().filter(|c| c.epoch == job.start_epoch()),
        }))
    }

    /// One grant from `sweep_id`: the re-queued job at `requeued`, or the next fresh index.
    fn grant_from(&self, sweep_id: SweepId, requeued: Option<u64>, worker: WorkerId, now: u64) -> Result<Found> {
        let grid = self.grid(sweep_id)?;
        let ttl = self.timing.lease_ttl_ms;
        let secret = LeaseSecret::random();
        self.txn(&mut |txn| {
            let mut sweep = self.sweep(txn, sweep_id)?;
            if sweep.cancelled {
                return Ok(Found::Nothing(sweep));
            }
            let mut worker_record = self.worker(txn, worker)?;
            let (index, job) = match requeued {
                Some(i) => {
                    let key = JobKey { sweep: sweep_id, index: i }.to_bytes();
                    match JOBS.get(txn, &key)? {
                        Some(job) if job.kind() == StateKind::Pending => (i, Some(job)),
                        _ => return Ok(Found::Nothing(sweep)),
                    }
                }
                None => {
                    let mut found = None;
                    while sweep.cursor < sweep.index_len {
                        let i = sweep.cursor;
                        sweep.cursor += 1;
                        if grid.point(i).is_some() {
                            found = Some(i);
                            break;
                        }
                    }
                    let Some(i) = found else {
                        SWEEPS.put(txn, sweep_id.as_bytes(), &sweep)?;
                        return Ok(Found::Nothing(sweep));
                    };
                    (i, None)
                }
            };
            let spec = grid
                .point(index)
                .ok_or_else(|| Error::Corrupt { tree: "jobs", detail: format!("index {index} is excluded") })?
                .map_err(|e| Error::Corrupt { tree: "sweeps", detail: e })?;
            let key = JobKey { sweep: sweep_id, index };
            let job = match job {
                Some(job) => job,
                None => {
                    sweep.materialized += 1;
                    Job::new(JobId::for_job(sweep_id, &canonical_job(&spec)), index)
                }
            };
            let token = self.next_token(txn)?;
            let lease = Lease {
                worker,
                worker_name: worker_record.name.clone(),
                token,
                secret,
                granted_ms: now,
                deadline_ms: now + ttl,
            };
            let next = job.grant(lease).map_err(|r| Error::refused(job.job_id, r))?;
            sweep.counts.apply(StateKind::Pending, StateKind::Running, 1)?;
            let key_bytes = key.to_bytes();
            JOBS.put(txn, &key_bytes, &next)?;
            txn.insert(Tree::JobIndex, next.job_id.as_bytes(), &key_bytes)?;
            txn.insert(Tree::Active, &token_key(token), &key_bytes)?;
            txn.remove(Tree::Requeue, &key_bytes)?;
            SWEEPS.put(txn, sweep_id.as_bytes(), &sweep)?;
            worker_record.job = Some(next.job_id);
            worker_record.epoch = 0;
            worker_record.last_seen_ms = now;
            WORKERS.put(txn, worker.as_bytes(), &worker_record)?;
            let grant = Grant {
                job_id: next.job_id,
                sweep_id,
                token,
                secret,
                attempt: next.attempts,
                spec,
                deadline_ms: now + ttl,
                resume: next.checkpoint.clone(),
            };
            Ok(Found::Granted(Box::new((grant, key, now + ttl, sweep))))
        })
    }

    /// Extends a lease held by `worker`; says whether the job (or its sweep) was cancelled.
    pub fn heartbeat(&self, claim: &Claim, job_id: JobId, epoch: u32) -> Result<Beat> {
        let (worker, token) = (claim.worker, claim.token);
        let now = self.now_ms();
        let ttl = self.timing.lease_ttl_ms;
        let mut index = self.lock();
        let (key, old_deadline, beat) = self.txn(&mut |txn| {
            let (key, job) = self.locate(txn, job_id)?;
            let sweep = self.sweep(txn, key.sweep)?;
            let old_deadline = job.lease().map_or(0, |l| l.deadline_ms);
            let (next, beat) =
                job.heartbeat(claim, epoch, now, ttl, sweep.cancelled).map_err(|r| Error::refused(job_id, r))?;
            JOBS.put(txn, &key.to_bytes(), &next)?;
            let mut w = self.worker(txn, worker)?;
            w.last_seen_ms = now;
            w.epoch = epoch;
            w.job = Some(job_id);
            WORKERS.put(txn, worker.as_bytes(), &w)?;
            Ok((key, old_deadline, beat))
        })?;
        index.deadlines.remove(&(old_deadline, token, key));
        index.deadlines.insert((beat.deadline_ms, token, key));
        Ok(beat)
    }

    /// Ends an attempt without results (the worker's Fail): re-queued, failed or cancelled
    /// as the lifecycle decides; its staged histograms are discarded. Durable on return.
    pub fn fail(&self, claim: &Claim, job_id: JobId, reason: &str, release: bool) -> Result<()> {
        let ending = if release { Ending::Released(reason.into()) } else { Ending::Failed(reason.into()) };
        let mut index = self.lock();
        let key = self.txn(&mut |txn| self.locate(txn, job_id))?.0;
        self.end_attempt(&mut index, key, Some(claim), claim.token, &ending)?;
        drop(index);
        self.flush()?;
        if release {
            self.metrics.leases_released.inc();
        } else {
            self.metrics.jobs_failed_attempts.inc();
        }
        Ok(())
    }

    /// Applies `ending` to the attempt under `token`, moves the index, then drops what the
    /// attempt staged.
    fn end_attempt(
        &self,
        index: &mut Index,
        key: JobKey,
        claim: Option<&Claim>,
        token: LeaseToken,
        ending: &Ending,
    ) -> Result<StateKind> {
        let now = self.now_ms();
        let key_bytes = key.to_bytes();
        let (job, next, sweep, retired) = self.txn(&mut |txn| {
            let job = JOBS
                .get(txn, &key_bytes)?
                .ok_or_else(|| Error::Corrupt { tree: "jobs", detail: format!("no job at {key:?}") })?;
            let mut sweep = self.sweep(txn, key.sweep)?;
            let mut next = job
                .end(claim, token, ending, now, sweep.max_attempts, sweep.cancelled)
                .map_err(|r| Error::refused(job.job_id, r))?;
            let retired = self.retire_checkpoint(&mut next);
            sweep.counts.apply(StateKind::Running, next.kind(), 1)?;
            txn.remove(Tree::Active, &token_key(token))?;
            if next.kind() == StateKind::Pending {
                txn.insert(Tree::Requeue, &key_bytes, &[])?;
            }
            JOBS.put(txn, &key_bytes, &next)?;
            SWEEPS.put(txn, key.sweep.as_bytes(), &sweep)?;
            let holder = job.lease().expect("end() checked the lease").worker;
            if let Some(mut w) = WORKERS.get(txn, holder.as_bytes())?
                && w.job == Some(job.job_id)
            {
                w.job = None;
                WORKERS.put(txn, holder.as_bytes(), &w)?;
            }
            Ok((job, next, sweep, retired))
        })?;
        let deadline = job.lease().map_or(0, |l| l.deadline_ms);
        index.deadlines.remove(&(deadline, token, key));
        if next.kind() == StateKind::Pending {
            index.requeue(&sweep, key.index);
        }
        // The lease is dead, so no ingest can add to this attempt any more: what is left
        // under its prefix (after its last checkpoint) is garbage.
        self.drop_attempt(key, Attempt::Live(job.attempts))?;
        if matches!(next.kind(), StateKind::Failed | StateKind::Cancelled) {
            self.forget_retired(key, retired, false)?;
        }
        self.events.publish(Event::job(key.sweep, job.job_id, next.kind()));
        Ok(next.kind())
    }

    /// Removes everything one attempt staged.
    pub(super) fn drop_attempt(&self, key: JobKey, attempt: Attempt) -> Result<()> {
        let area = Area::new(key, attempt);
        for tree in [Tree::Partials, Tree::Pieces, Tree::Staged] {
            loop {
                let page = self.store.scan_page(tree, area.as_bytes(), None, 256)?;
                if page.is_empty() {
                    break;
                }
                self.txn(&mut |txn| page.iter().try_for_each(|(k, _)| txn.remove(tree, k)))?;
            }
        }
        Ok(())
    }

    /// Ends every lease whose deadline has passed. An expiry uses up a try only if the store
    /// could write the whole time since the lease's last heartbeat: a coordinator that could
    /// not record heartbeats (full disk) does not blame the worker. Returns how many expired.
    pub fn expire_leases(&self) -> Result<usize> {
        if self.store.write_refusal().is_some() {
            // Nothing could be recorded; leases are renewed when the store recovers.
            return Ok(0);
        }
        let now = self.now_ms();
        let ttl = self.timing.lease_ttl_ms;
        let store_error = self.last_store_error_ms.load(Ordering::SeqCst);
        if store_error > 0 && now < store_error.saturating_add(ttl) {
            // Writes failed within the last TTL, so heartbeats may have been refused, and the
            // store's reopen renews every lease: expiring one in between (the reopen done,
            // the renewal not yet) would take its job from a worker that kept it.
            return Ok(0);
        }
        let mut index = self.lock();
        let due: Vec<_> = index.deadlines.iter().take_while(|(deadline, _, _)| *deadline < now).copied().collect();
        let mut expired = 0;
        for (deadline, token, key) in due {
            let job = self.txn(&mut |txn| JOBS.get(txn, &key.to_bytes()))?;
            let Some(job) = job.filter(|j| j.lease().is_some_and(|l| l.token == token) && j.is_expired(now)) else {
                index.deadlines.remove(&(deadline, token, key));
                continue;
            };
            let lease = job.lease().expect("filtered on a live lease");
            let counts = store_error == 0 || store_error < lease.deadline_ms.saturating_sub(ttl);
            let silent = (now - lease.deadline_ms + ttl) / 1000;
            let reason = if counts {
                format!("lease expired: no heartbeat for {silent} s")
            } else {
                format!("lease expired after {silent} s while the coordinator's store could not write")
            };
            tracing::warn!(job = %job.job_id, worker = %lease.worker_name, "{reason}");
            self.end_attempt(&mut index, key, None, token, &Ending::Expired { reason, counts })?;
            expired += 1;
        }
        drop(index);
        if expired > 0 {
            self.flush()?;
            self.metrics.leases_expired.inc_by(expired as u64);
        }
        Ok(expired)
    }

    /// Deletes the records of workers not seen for the worker timeout and holding no live
    /// lease. Returns how many were removed.
    pub fn forget_idle_workers(&self) -> Result<usize> {
        let cutoff = self.now_ms().saturating_sub(self.timing.worker_timeout_ms);
        let mut removed = 0;
        for (key, value) in self.store.scan(Tree::Workers, &[])? {
            let w = WORKERS.decode(&value)?;
            if w.last_seen_ms >= cutoff {
                continue;
            }
            removed += usize::from(self.txn(&mut |txn| {
                let Some(w) = WORKERS.get(txn, &key)? else { return Ok(false) };
                let holds_lease = match w.job {
                    Some(job) => self.locate(txn, job).is_ok_and(
                        |(_, j)| matches!(&j.state, JobState::Running { lease, .. } if lease.worker == w.id),
                    ),
                    None => false,
                };
                if w.last_seen_ms >= cutoff || holds_lease {
                    return Ok(false);
                }
                txn.remove(Tree::Workers, &key)?;
                Ok(true)
            })?);
        }
        Ok(removed)
    }
}

//! A job's lifecycle as a sans-IO state machine (design §2 "Job lifecycle").
//!
//! Every state carries its own data, and every transition is a pure function of (job,
//! request, now) that returns the next job or a typed [`Refusal`]. Nothing here touches the
//! store or the clock: the scheduler loads a job, applies one transition and saves the
//! result (and the sweep's counters, moved by [`Counts::apply`]) in one transaction. The
//! unit tests at the bottom drive every transition without any store.

use serde::{Deserialize, Serialize};

use crate::ids::{Claim, JobId, LeaseSecret, LeaseToken, WorkerId};

/// Longest failure reason kept, in bytes; longer ones are cut (a worker must always be able
/// to report, so a long reason is shortened rather than refused).
pub const MAX_REASON_BYTES: usize = 1024;

/// A live lease: who holds the job, under which fencing token, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: WorkerId,
    pub worker_name: String,
    pub token: LeaseToken,
    /// Known only to the holder; every call about the job must present it.
    pub secret: LeaseSecret,
    pub granted_ms: u64,
    /// Expiry unless a heartbeat arrives first (wall clock, so it survives a restart).
    pub deadline_ms: u64,
}

/// Where a job is, with what that state needs and nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker. `failures` are attempts that used up a try.
    Pending {
        failures: u32,
    },
    Running {
        lease: Lease,
        failures: u32,
        /// The epoch this attempt started after: 0 from scratch, the checkpoint's epoch
        /// when it resumed.
        #[serde(default)]
        start_epoch: u32,
        /// Last finished epoch the worker reported.
        epoch_reached: u32,
        /// `cancel` asked; the worker learns it at its next heartbeat.
        cancel_requested: bool,
        /// Distinct histogram pieces received in this attempt.
        pieces_received: u64,
    },
    /// Results are published. `token` is the lease that completed it, so a resent
    /// Complete of that lease is answered again instead of refused.
    Done {
        token: LeaseToken,
        finished_ms: u64,
        seconds: f64,
        rows: u64,
    },
    Failed {
        finished_ms: u64,
    },
    Cancelled,
}

/// The state's name alone: what the sweep's counters are kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Pending => "pending",
            StateKind::Running => "running",
            StateKind::Done => "done",
            StateKind::Failed => "failed",
            StateKind::Cancelled => "cancelled",
        }
    }
}

impl JobState {
    pub fn kind(&self) -> StateKind {
        match self {
            JobState::Pending { .. } => StateKind::Pending,
            JobState::Running { .. } => StateKind::Running,
            JobState::Done { .. } => StateKind::Done,
            JobState::Failed { .. } => StateKind::Failed,
            JobState::Cancelled => StateKind::Cancelled,
        }
    }
}

/// The job's latest complete checkpoint: a file in the coordinator's checkpoint directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// Last epoch trained into it; measured epochs up to here are committed with it.
    pub epoch: u32,
    pub size: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// File name inside the checkpoint directory (unique per upload).
    pub file: String,
    pub stored_ms: u64,
}

/// One attempt that has ended: who ran it, from which epoch to which, and how it ended.
/// Kept with the job for good, so a finished job still shows its kills and resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1 for the first attempt, then 2, 3, ...
    pub number: u32,
    /// The name the holding worker registered with.
    pub worker: String,
    /// The epoch the attempt started after (0 from scratch, N when resumed).
    pub start_epoch: u32,
    /// The last finished epoch the attempt reported.
    pub end_epoch: u32,
    /// `done`, or why it ended without results (cut to [`MAX_REASON_BYTES`]).
    pub ended: String,
    /// Whether it used up one of the job's tries.
    pub counted: bool,
    pub ended_ms: u64,
}

/// The attempt in one line, as `status` and the job's history show it: `attempt 2 on
/// node1: resumed at epoch 24, reached epoch 30: lease expired [no try used]`.
impl std::fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt {} on {}: ", self.number, self.worker)?;
        match self.start_epoch {
            0 => f.write_str("started at epoch 0")?,
            n => write!(f, "resumed at epoch {n}")?,
        }
        write!(f, ", reached epoch {}: ", self.end_epoch)?;
        if self.ended.is_empty() {
            return f.write_str("running");
        }
        f.write_str(&self.ended)?;
        if self.counted { Ok(()) } else { f.write_str(" [no try used]") }
    }
}

/// One job that has left the implicit pending state of a lazily expanded sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: JobId,
    pub index: u64,
    /// Grants so far (1 during the first attempt).
    pub attempts: u32,
    /// One line per attempt that did not finish, and per retry: who, where and why.
    pub history: Vec<String>,
    pub state: JobState,
    pub train_indices_hash: String,
    pub test_indices_hash: String,
    /// The checkpoint a new attempt resumes from (kept after Done only with
    /// `serve --keep-final-checkpoints`).
    #[serde(default)]
    pub checkpoint: Option<CheckpointRef>,
    /// Every attempt that has ended, oldest first (absent from records until one has).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<AttemptRecord>,
}

/// Why a transition was refused. Nothing here names another lease's token: a refusal tells
/// the caller that *its* lease is not current, never what is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller's lease is not the live one (re-leased since, expired, or finished).
    #[error("token {token} is not the live lease ({detail})")]
    Stale { token: LeaseToken, detail: String },
    /// The lease is live but held by another worker, or the secret is wrong: one refusal
    /// for both, so a caller learns nothing about which part of its claim failed.
    #[error("the lease is held by another worker")]
    WrongWorker,
    /// Only a pending job can be granted.
    #[error("the job is {} , not pending", .0.as_str())]
    NotPending(StateKind),
    /// Only a failed job can be retried.
    #[error("the job is {}, not failed", .0.as_str())]
    NotFailed(StateKind),
}

/// How an attempt ends without results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The worker reports a failure (training diverged, a panic, bad data): uses a try.
    Failed(String),
    /// The worker hands the job back (shutting down): no try used.
    Released(String),
    /// No heartbeat before the deadline. `counts` is false when the silence was the
    /// coordinator's own fault (it was down, or could not write), so no try is used.
    Expired { reason: String, counts: bool },
}

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub cancelled: bool,
    pub deadline_ms: u64,
}

fn truncate(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_string();
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes cut)", &reason[..end], reason.len() - end)
}

impl Job {
    /// A job leaving the implicit pending state for the first time.
    pub fn new(job_id: JobId, index: u64) -> Job {
        Job {
            job_id,
            index,
            attempts: 0,
            history: Vec::new(),
            state: JobState::Pending { failures: 0 },
            train_indices_hash: String::new(),
            test_indices_hash: String::new(),
            checkpoint: None,
            attempt_log: Vec::new(),
        }
    }

    pub fn kind(&self) -> StateKind {
        self.state.kind()
    }

    /// The live lease, if any.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            JobState::Running { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// Checks that `claim` names the live lease: its token, its worker and its secret.
    pub fn check(&self, claim: &Claim) -> Result<&Lease, Refusal> {
        let token = claim.token;
        match &self.state {
            JobState::Running { lease, .. } if lease.token == token => {
                // Evaluate both before deciding, so timing does not say which one failed.
                let secret_ok = lease.secret.matches(&claim.secret);
                let worker_ok = claim.worker == lease.worker;
                if !(secret_ok & worker_ok) {
                    return Err(Refusal::WrongWorker);
                }
                Ok(lease)
            }
            JobState::Running { .. } => Err(Refusal::Stale { token, detail: "the job was leased again since".into() }),
            other => Err(Refusal::Stale { token, detail: format!("the job is {} now", other.kind().as_str()) }),
        }
    }

    /// Pending -> Running under `lease`, resuming from the checkpoint if there is one.
    pub fn grant(&self, lease: Lease) -> Result<Job, Refusal> {
        let JobState::Pending { failures } = self.state else {
            return Err(Refusal::NotPending(self.kind()));
        };
        let mut next = self.clone();
        next.attempts += 1;
        let start_epoch = self.checkpoint.as_ref().map_or(0, |c| c.epoch);
        next.state = JobState::Running {
            lease,
            failures,
            start_epoch,
            epoch_reached: start_epoch,
            cancel_requested: false,
            pieces_received: 0,
        };
        Ok(next)
    }

    /// The epoch the live attempt started after.
    pub fn start_epoch(&self) -> u32 {
        match self.state {
            JobState::Running { start_epoch, .. } => start_epoch,
            _ => 0,
        }
    }

    /// Records a checkpoint of the live attempt; returns the job and the checkpoint it
    /// replaces (whose file may go once this is stored). Checkpoints only move forward.
    pub fn store_checkpoint(
        &self,
        claim: &Claim,
        checkpoint: CheckpointRef,
    ) -> Result<(Job, Option<CheckpointRef>), Refusal> {
        self.check(claim)?;
        if let Some(old) = &self.checkpoint
            && old.epoch >= checkpoint.epoch
        {
            return Err(Refusal::Stale {
                token: claim.token,
                detail: format!("a checkpoint at epoch {} is already stored", old.epoch),
            });
        }
        let mut next = self.clone();
        if let JobState::Running { epoch_reached, .. } = &mut next.state {
            *epoch_reached = (*epoch_reached).max(checkpoint.epoch);
        }
        let old = next.checkpoint.replace(checkpoint);
        Ok((next, old))
    }

    /// Forgets the checkpoint (it failed verification): the live attempt, if any, now
    /// starts from scratch. Returns the job and the dropped checkpoint.
    pub fn drop_checkpoint(&self) -> (Job, Option<CheckpointRef>) {
        let mut next = self.clone();
        let old = next.checkpoint.take();
        if let JobState::Running { start_epoch, epoch_reached, .. } = &mut next.state {
            *start_epoch = 0;
            *epoch_reached = 0;
        }
        (next, old)
    }

    /// Extends the live lease to `now + ttl` and records progress. `sweep_cancelled` makes
    /// the answer say "stop" even before the job itself was flagged.
    pub fn heartbeat(
        &self,
        claim: &Claim,
        epoch: u32,
        now: u64,
        ttl: u64,
        sweep_cancelled: bool,
    ) -> Result<(Job, Beat), Refusal> {
        self.check(claim)?;
        let mut next = self.clone();
        let JobState::Running { lease, epoch_reached, cancel_requested, .. } = &mut next.state else {
            unreachable!("check() returned a live lease");
        };
        lease.deadline_ms = lease.deadline_ms.max(now.saturating_add(ttl));
        *epoch_reached = (*epoch_reached).max(epoch);
        *cancel_requested |= sweep_cancelled;
        let beat = Beat { cancelled: *cancel_requested, deadline_ms: lease.deadline_ms };
        Ok((next, beat))
    }

    /// Counts one newly arrived histogram piece of the live attempt.
    pub fn piece_received(&self, claim: &Claim) -> Result<Job, Refusal> {
        self.check(claim)?;
        let mut next = self.clone();
        if let JobState::Running { pieces_received, .. } = &mut next.state {
            *pieces_received += 1;
        }
        Ok(next)
    }

    /// Pieces received in the live attempt.
    pub fn pieces_received(&self) -> u64 {
        match self.state {
            JobState::Running { pieces_received, .. } => pieces_received,
            _ => 0,
        }
    }

    /// Running -> Done. A resent Complete of the lease that already completed the job is
    /// answered with `Ok(None)` (nothing to do), so completion is exactly-once.
    pub fn complete(&self, claim: &Claim, now: u64, rows: u64, hashes: (&str, &str)) -> Result<Option<Job>, Refusal> {
        if let JobState::Done { token: done_by, .. } = self.state
            && done_by == claim.token
        {
            return Ok(None);
        }
        let lease = self.check(claim)?;
        let mut next = self.clone();
        next.attempt_log.push(self.live_attempt(lease, "done".into(), true, now));
        next.state = JobState::Done {
            token: claim.token,
            finished_ms: now,
            seconds: now.saturating_sub(lease.granted_ms) as f64 / 1000.0,
            rows,
        };
        next.train_indices_hash = hashes.0.into();
        next.test_indices_hash = hashes.1.into();
        Ok(Some(next))
    }

    /// Ends the live attempt without results: back to pending, or failed when the tries
    /// are used up, or cancelled when cancellation was asked for.
    /// `claim` is the caller's (a worker's Fail); `None` for the coordinator's own expiry,
    /// which names the lease by its token.
    pub fn end(
        &self,
        claim: Option<&Claim>,
        token: LeaseToken,
        ending: &Ending,
        now: u64,
        max_attempts: u32,
        sweep_cancelled: bool,
    ) -> Result<Job, Refusal> {
        let lease = match claim {
            Some(claim) if claim.token == token => self.check(claim)?.clone(),
            Some(_) => return Err(Refusal::Stale { token, detail: "the claim names another lease".into() }),
            None => match &self.state {
                JobState::Running { lease, .. } if lease.token == token => lease.clone(),
                other => {
                    return Err(Refusal::Stale { token, detail: format!("the job is {} now", other.kind().as_str()) });
                }
            },
        };
        let JobState::Running { failures, cancel_requested, .. } = self.state else {
            unreachable!("check() returned a live lease");
        };
        let (reason, counts) = match ending {
            Ending::Failed(r) => (r.as_str(), true),
            Ending::Released(r) => (r.as_str(), false),
            Ending::Expired { reason, counts } => (reason.as_str(), *counts),
        };
        let mut next = self.clone();
        let attempt = self.live_attempt(&lease, truncate(reason), counts, now);
        next.history.push(attempt.to_string());
        next.attempt_log.push(attempt);
        let failures = failures + u32::from(counts);
        next.state = if cancel_requested || sweep_cancelled {
            JobState::Cancelled
        } else if failures >= max_attempts {
            JobState::Failed { finished_ms: now }
        } else {
            JobState::Pending { failures }
        };
        Ok(next)
    }

    /// The live attempt, held under `lease`, as a record that says it `ended` (empty
    /// while it runs) at `ended_ms`.
    fn live_attempt(&self, lease: &Lease, ended: String, counted: bool, ended_ms: u64) -> AttemptRecord {
        let end_epoch = match &self.state {
            JobState::Running { epoch_reached, .. } => *epoch_reached,
            _ => 0,
        };
        AttemptRecord {
            number: self.attempts,
            worker: lease.worker_name.clone(),
            start_epoch: self.start_epoch(),
            end_epoch,
            ended,
            counted,
            ended_ms,
        }
    }

    /// Every attempt, oldest first: the ended ones, then the live one (with `ended` empty
    /// and `ended_ms` 0) while the job runs.
    pub fn attempts_so_far(&self) -> Vec<AttemptRecord> {
        let mut all = self.attempt_log.clone();
        if let Some(lease) = self.lease() {
            all.push(self.live_attempt(lease, String::new(), false, 0));
        }
        all
    }

    /// The live lease's deadline has passed at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.lease().is_some_and(|l| l.deadline_ms < now)
    }

    /// Gives the live lease a fresh deadline of at least `now + ttl` (a restarted
    /// coordinator does not count its own absence against the worker).
    pub fn refresh(&self, now: u64, ttl: u64) -> Job {
        let mut next = self.clone();
        if let JobState::Running { lease, .. } = &mut next.state {
            lease.deadline_ms = lease.deadline_ms.max(now.saturating_add(ttl));
        }
        next
    }

    /// Pending -> Cancelled; Running is flagged and ends at its worker's next heartbeat;
    /// finished jobs stay as they are.
    pub fn cancel(&self) -> Job {
        let mut next = self.clone();
        match &mut next.state {
            JobState::Pending { .. } => next.state = JobState::Cancelled,
            JobState::Running { cancel_requested, .. } => *cancel_requested = true,
            _ => {}
        }
        next
    }

    /// Failed -> Pending with a fresh set of tries.
    pub fn retry(&self) -> Result<Job, Refusal> {
        if !matches!(self.state, JobState::Failed { .. }) {
            return Err(Refusal::NotFailed(self.kind()));
        }
        let mut next = self.clone();
        next.history.push("re-queued by `retry --failed`".into());
        next.state = JobState::Pending { failures: 0 };
        Ok(next)
    }
}

/// A sweep's jobs by state. Jobs that were never materialized are pending implicitly:
/// `pending = total - running - done - failed - cancelled`. Moved only by [`Counts::apply`],
/// which refuses to underflow (a corrupt store is reported, never wrapped around).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// Counters that would go negative or past the total: the store is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job counters out of range: {0}")]
pub struct CountError(pub String);

impl Counts {
    pub fn pending(&self) -> u64 {
        self.total.saturating_sub(self.running + self.done + self.failed + self.cancelled)
    }

    fn slot(&mut self, kind: StateKind) -> Option<&mut u64> {
        match kind {
            StateKind::Pending => None,
            StateKind::Running => Some(&mut self.running),
            StateKind::Done => Some(&mut self.done),
            StateKind::Failed => Some(&mut self.failed),
            StateKind::Cancelled => Some(&mut self.cancelled),
        }
    }

    /// Moves `n` jobs from one state to another.
    pub fn apply(&mut self, from: StateKind, to: StateKind, n: u64) -> Result<(), CountError> {
        if from == to || n == 0 {
            return Ok(());
        }
        let pending = self.pending();
        if from == StateKind::Pending && pending < n {
            return Err(CountError(format!("moving {n} pending jobs but only {pending} are pending")));
        }
        if let Some(slot) = self.slot(from) {
            *slot = slot
                .checked_sub(n)
                .ok_or_else(|| CountError(format!("moving {n} {} jobs but only {slot} are", from.as_str())))?;
        }
        if let Some(slot) = self.slot(to) {
            *slot += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const TTL: u64 = 1_000;

    fn worker(n: u128) -> WorkerId {
        WorkerId(Uuid::from_u128(n))
    }

    fn claim(w: u128, token: u64) -> Claim {
        Claim {
            worker: worker(w),
            token: LeaseToken(token),
            secret: LeaseSecret::from_bits(w * 1000 + u128::from(token)),
        }
    }

    fn lease(w: u128, token: u64, now: u64) -> Lease {
        Lease {
            worker: worker(w),
            worker_name: format!("w{w}"),
            token: LeaseToken(token),
            secret: claim(w, token).secret,
            granted_ms: now,
            deadline_ms: now + TTL,
        }
    }

    fn running() -> Job {
        Job::new(JobId(Uuid::from_u128(7)), 0).grant(lease(1, 10, 0)).unwrap()
    }

    #[test]
    fn grant_only_from_pending() {
        let job = running();
        assert_eq!(job.attempts, 1);
        assert_eq!(job.kind(), StateKind::Running);
        assert_eq!(job.grant(lease(2, 11, 0)), Err(Refusal::NotPending(StateKind::Running)));
    }

    #[test]
    fn heartbeat_is_fenced_and_bound_to_the_worker() {
        let job = running();
        let (next, beat) = job.heartbeat(&claim(1, 10), 3, 500, TTL, false).unwrap();
        assert_eq!(beat, Beat { cancelled: false, deadline_ms: 1_500 });
        assert!(matches!(next.state, JobState::Running { epoch_reached: 3, .. }));
        assert!(matches!(job.heartbeat(&claim(1, 9), 3, 500, TTL, false), Err(Refusal::Stale { .. })));
        assert_eq!(job.heartbeat(&claim(2, 10), 3, 500, TTL, false), Err(Refusal::WrongWorker));
        // The right worker and token with a wrong secret: the same refusal.
        let guessed = Claim { secret: LeaseSecret::from_bits(42), ..claim(1, 10) };
        assert_eq!(job.heartbeat(&guessed, 3, 500, TTL, false), Err(Refusal::WrongWorker));
        // A sweep cancelled meanwhile is reported at once.
        let (_, beat) = job.heartbeat(&claim(1, 10), 3, 500, TTL, true).unwrap();
        assert!(beat.cancelled);
        // A refusal never names the live token.
        let refusal = job.heartbeat(&claim(1, 9), 0, 0, TTL, false).unwrap_err().to_string();
        assert!(!refusal.contains("10"), "{refusal}");
    }

    #[test]
    fn deadlines_never_move_backwards() {
        let job = running().refresh(5_000, TTL);
        assert_eq!(job.lease().unwrap().deadline_ms, 6_000);
        let (job, beat) = job.heartbeat(&claim(1, 10), 0, 100, TTL, false).unwrap();
        assert_eq!(beat.deadline_ms, 6_000);
        assert!(!job.is_expired(6_000) && job.is_expired(6_001));
    }

    #[test]
    fn complete_is_exactly_once() {
        let job = running();
        let done = job.complete(&claim(1, 10), 2_000, 8, ("a", "b")).unwrap().unwrap();
        assert!(matches!(done.state, JobState::Done { seconds: 2.0, rows: 8, .. }));
        // The same lease completing again (its answer was lost) is a no-op, not an error.
        assert_eq!(done.complete(&claim(1, 10), 3_000, 8, ("a", "b")), Ok(None));
        // Any other lease is stale.
        assert!(matches!(done.complete(&claim(2, 11), 3_000, 8, ("a", "b")), Err(Refusal::Stale { .. })));
        assert_eq!(job.complete(&claim(2, 10), 0, 8, ("", "")), Err(Refusal::WrongWorker));
    }

    #[test]
    fn failures_use_tries_releases_and_coordinator_outages_do_not() {
        let job = running();
        let failed = Ending::Failed("diverged".into());
        let pending = job.end(Some(&claim(1, 10)), LeaseToken(10), &failed, 0, 2, false).unwrap();
        assert_eq!(pending.state, JobState::Pending { failures: 1 });
        assert!(pending.history[0].contains("attempt 1 on w1") && pending.history[0].contains("diverged"));
        let again = pending.grant(lease(2, 11, 0)).unwrap();
        let dead = again.end(None, LeaseToken(11), &failed, 9, 2, false).unwrap();
        assert_eq!(dead.state, JobState::Failed { finished_ms: 9 });
        let released = job.end(None, LeaseToken(10), &Ending::Released("shutting down".into()), 0, 1, false).unwrap();
        assert_eq!(released.state, JobState::Pending { failures: 0 });
        let outage = Ending::Expired { reason: "lease expired".into(), counts: false };
        let kept = job.end(None, LeaseToken(10), &outage, 0, 1, false).unwrap();
        assert_eq!(kept.state, JobState::Pending { failures: 0 });
        assert!(kept.history[0].contains("no try used"));
        let lost = Ending::Expired { reason: "lease expired".into(), counts: true };
        assert!(matches!(job.end(None, LeaseToken(10), &lost, 0, 1, false).unwrap().state, JobState::Failed { .. }));
    }

    #[test]
    fn cancellation_reaches_pending_and_running_jobs() {
        let pending = Job::new(JobId(Uuid::from_u128(1)), 3);
        assert_eq!(pending.cancel().state, JobState::Cancelled);
        let flagged = running().cancel();
        let (_, beat) = flagged.heartbeat(&claim(1, 10), 0, 0, TTL, false).unwrap();
        assert!(beat.cancelled);
        let ended = flagged.end(None, LeaseToken(10), &Ending::Failed("cancelled".into()), 0, 3, false).unwrap();
        assert_eq!(ended.state, JobState::Cancelled);
        // Finished jobs stay finished.
        let done = running().complete(&claim(1, 10), 1, 1, ("", "")).unwrap().unwrap();
        assert_eq!(done.cancel(), done);
    }

    #[test]
    fn retry_only_failed_jobs() {
        let failed = running().end(None, LeaseToken(10), &Ending::Failed("x".into()), 0, 1, false).unwrap();
        let retried = failed.retry().unwrap();
        assert_eq!(retried.state, JobState::Pending { failures: 0 });
        assert_eq!(running().retry(), Err(Refusal::NotFailed(StateKind::Running)));
    }

    #[test]
    fn long_reasons_are_cut() {
        let reason = "é".repeat(2 * MAX_REASON_BYTES);
        let job = running().end(None, LeaseToken(10), &Ending::Failed(reason), 0, 3, false).unwrap();
        assert!(job.history[0].len() < MAX_REASON_BYTES + 200);
        assert!(job.history[0].contains("bytes cut"));
    }

    #[test]
    fn counters_cannot_underflow() {
        let mut counts = Counts { total: 3, ..Counts::default() };
        counts.apply(StateKind::Pending, StateKind::Running, 2).unwrap();
        counts.apply(StateKind::Running, StateKind::Done, 1).unwrap();
        assert_eq!((counts.pending(), counts.running, counts.done), (1, 1, 1));
        assert!(counts.apply(StateKind::Running, StateKind::Done, 2).is_err());
        assert!(counts.apply(StateKind::Pending, StateKind::Cancelled, 2).is_err());
        assert!(counts.apply(StateKind::Failed, StateKind::Pending, 1).is_err());
        assert_eq!((counts.pending(), counts.running, counts.done), (1, 1, 1), "a refused move changes nothing");
    }
}

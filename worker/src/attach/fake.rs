//! An in-memory coordinator for tests of the attach loop: it hands out the jobs it is
//! given, records every call, and fails the next calls of a kind on cue, so each failure
//! path of the loop is driven without a server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ibsweep_shared::job::JobSpec;

use super::api::{
    CallError, CheckpointInfo, Claim, Completion, CoordinatorApi, Disposition, HistogramPiece, Lease, Offer,
    Registered, Registration,
};

/// The calls of [`CoordinatorApi`], to script failures by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Register,
    Lease,
    Heartbeat,
    Upload,
    Complete,
    Fail,
    UploadCheckpoint,
    DownloadCheckpoint,
    DiscardCheckpoint,
}

/// What the fake saw, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every call made, in order, failed ones included.
    pub calls: Vec<Call>,
    pub registrations: Vec<Registration>,
    /// Distinct histogram pieces per job, by sequence number (a resend counts once).
    pub pieces: BTreeMap<String, BTreeMap<u64, HistogramPiece>>,
    /// (job, completion) of every acknowledged Complete.
    pub completed: Vec<(String, Completion)>,
    /// (job, reason, release) of every acknowledged Fail.
    pub failed: Vec<(String, String, bool)>,
    /// (job, epoch, bytes) of every stored checkpoint.
    pub checkpoints: Vec<(String, u32, Vec<u8>)>,
    /// (job, reason) of every discarded checkpoint.
    pub discarded: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<(String, Result<JobSpec, String>, Option<(CheckpointInfo, Vec<u8>)>)>,
    failures: BTreeMap<Call, VecDeque<Disposition>>,
    cancel_after_heartbeats: Option<u32>,
    next_token: u64,
    seen: Seen,
}

/// The fake; clones share one state.
#[derive(Debug, Clone, Default)]
pub struct FakeCoordinator {
    state: Arc<Mutex<State>>,
}

impl FakeCoordinator {
    pub fn new() -> FakeCoordinator {
        FakeCoordinator::default()
    }

    /// Queues a job for the next lease.
    pub fn add_job(&self, job_id: &str, spec: JobSpec) {
        self.lock().jobs.push_back((job_id.into(), Ok(spec), None));
    }

    /// Queues a job whose spec the worker cannot use (as a newer coordinator might send).
    pub fn add_unreadable_job(&self, job_id: &str, why: &str) {
        self.lock().jobs.push_back((job_id.into(), Err(why.into()), None));
    }

    /// Queues a job that resumes from `bytes`, announced as `info`.
    pub fn add_resumed_job(&self, job_id: &str, spec: JobSpec, info: CheckpointInfo, bytes: Vec<u8>) {
        self.lock().jobs.push_back((job_id.into(), Ok(spec), Some((info, bytes))));
    }

    /// The next `times` calls of `call` fail with `disposition`.
    pub fn fail_next(&self, call: Call, times: usize, disposition: Disposition) {
        let mut state = self.lock();
        let queue = state.failures.entry(call).or_default();
        queue.extend(std::iter::repeat_n(disposition, times));
    }

    /// Heartbeats answer `cancelled` from the `n`-th on.
    pub fn cancel_after_heartbeats(&self, n: u32) {
        self.lock().cancel_after_heartbeats = Some(n);
    }

    pub fn seen(&self) -> Seen {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the call and answers with a scripted failure if one is due.
    fn enter(&self, call: Call) -> Result<std::sync::MutexGuard<'_, State>, CallError> {
        let mut state = self.lock();
        state.seen.calls.push(call);
        match state.failures.get_mut(&call).and_then(VecDeque::pop_front) {
            Some(disposition) => Err(CallError::new(disposition, format!("scripted {disposition:?} of {call:?}"))),
            None => Ok(state),
        }
    }
}

impl CoordinatorApi for FakeCoordinator {
    async fn register(&self, registration: &Registration) -> Result<Registered, CallError> {
        let mut state = self.enter(Call::Register)?;
        state.seen.registrations.push(registration.clone());
        let worker_id = registration.previous.clone().unwrap_or_else(|| "fake-worker".into());
        Ok(Registered { worker_id, heartbeat_interval: Duration::from_millis(100) })
    }

    async fn lease(&self, worker_id: &str) -> Result<Offer, CallError> {
        let mut state = self.enter(Call::Lease)?;
        let Some((job_id, spec, resume)) = state.jobs.pop_front() else {
            return Ok(Offer::RetryAfter(Duration::from_millis(50)));
        };
        state.next_token += 1;
        let claim = Claim { worker_id: worker_id.into(), job_id, token: state.next_token, secret: "0".repeat(32) };
        let resume = resume.map(|(info, bytes)| {
            state.seen.checkpoints.push((claim.job_id.clone(), info.epoch, bytes));
            info
        });
        Ok(Offer::Lease(Box::new(Lease { claim, attempt: 1, spec, resume, final_checkpoint: false })))
    }

    async fn heartbeat(&self, _claim: &Claim, _epoch: u32) -> Result<bool, CallError> {
        let state = self.enter(Call::Heartbeat)?;
        let beats = state.seen.calls.iter().filter(|c| **c == Call::Heartbeat).count() as u32;
        Ok(state.cancel_after_heartbeats.is_some_and(|n| beats >= n))
    }

    async fn upload(&self, claim: &Claim, pieces: &[HistogramPiece]) -> Result<(), CallError> {
        let mut state = self.enter(Call::Upload)?;
        let stored = state.seen.pieces.entry(claim.job_id.clone()).or_default();
        for piece in pieces {
            stored.insert(piece.sequence, piece.clone());
        }
        Ok(())
    }

    async fn complete(&self, claim: &Claim, completion: &Completion) -> Result<u64, CallError> {
        let mut state = self.enter(Call::Complete)?;
        let received = state.seen.pieces.get(&claim.job_id).map_or(0, |p| p.len() as u64);
        if received != completion.pieces {
            return Err(CallError::new(
                Disposition::Fatal,
                format!("{} pieces announced, {received} received", completion.pieces),
            ));
        }
        state.seen.completed.push((claim.job_id.clone(), completion.clone()));
        Ok(received)
    }

    async fn fail(&self, claim: &Claim, reason: &str, release: bool) -> Result<(), CallError> {
        let mut state = self.enter(Call::Fail)?;
        state.seen.failed.push((claim.job_id.clone(), reason.into(), release));
        Ok(())
    }

    async fn upload_checkpoint(&self, claim: &Claim, epoch: u32, bytes: &[u8]) -> Result<u64, CallError> {
        let mut state = self.enter(Call::UploadCheckpoint)?;
        state.seen.checkpoints.push((claim.job_id.clone(), epoch, bytes.to_vec()));
        Ok(0)
    }

    async fn download_checkpoint(&self, claim: &Claim, info: &CheckpointInfo) -> Result<Vec<u8>, CallError> {
        let state = self.enter(Call::DownloadCheckpoint)?;
        state
            .seen
            .checkpoints
            .iter()
            .rev()
            .find(|(job, epoch, _)| *job == claim.job_id && *epoch == info.epoch)
            .map(|(_, _, bytes)| bytes.clone())
            .ok_or_else(|| CallError::new(Disposition::LeaseLost, "no such checkpoint"))
    }

    async fn discard_checkpoint(&self, claim: &Claim, reason: &str) -> Result<(), CallError> {
        let mut state = self.enter(Call::DiscardCheckpoint)?;
        state.seen.discarded.push((claim.job_id.clone(), reason.into()));
        Ok(())
    }
}

//! Protobuf to and from the coordinator's domain types, at the edge and only here.
//! The shared vocabulary (job specs, splits, rows) converts in [`ibsweep_proto::convert`];
//! this module adds the coordinator's own: IDs, claims, chunks, grants and status views.
//! A message that does not describe a valid value is INVALID_ARGUMENT, naming the field.

use ibsweep_proto::convert::WireError;
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::job::JobSpec;
use ibsweep_shared::results::EstimateColumns;
use tonic::Status;

use crate::error::Error;
use crate::ids::{BadId, Claim, JobId, LeaseToken, SweepId, WorkerId};
use crate::lifecycle::{AttemptRecord, CheckpointRef, Job, JobState, StateKind};
use crate::records::WorkerRecord;
use crate::scheduler::{CheckpointHeader, Chunk, Grant, SweepStatus};

fn invalid(e: WireError) -> Status {
    Status::invalid_argument(e.0)
}

/// An ID (or a lease secret) from its text.
pub(super) fn parse<T: std::str::FromStr<Err = BadId>>(s: &str) -> Result<T, Status> {
    s.parse().map_err(|e: BadId| Status::from(Error::from(e)))
}

/// An ID that may be left empty.
pub(super) fn optional_id<T: std::str::FromStr<Err = BadId>>(s: &str) -> Result<Option<T>, Status> {
    if s.is_empty() { Ok(None) } else { parse(s).map(Some) }
}

pub(super) fn optional_sweep(s: &str) -> Result<Option<SweepId>, Status> {
    optional_id(s)
}

/// The job a claim is about, and the claim itself.
pub(super) fn claim(c: Option<pb::LeaseClaim>) -> Result<(JobId, Claim), Status> {
    let c = c.ok_or_else(|| Status::invalid_argument("the lease claim is missing"))?;
    let claim =
        Claim { worker: parse(&c.worker_id)?, token: LeaseToken(c.fencing_token), secret: parse(&c.lease_secret)? };
    Ok((parse(&c.job_id)?, claim))
}

impl TryFrom<pb::HistogramChunk> for Chunk {
    type Error = Status;
    fn try_from(c: pb::HistogramChunk) -> Result<Self, Status> {
        let (job_id, claim) = claim(c.claim)?;
        let key = c.measurement.ok_or_else(|| Status::invalid_argument("the chunk's measurement is missing"))?;
        Ok(Chunk {
            job_id,
            claim,
            sequence: c.sequence,
            key: key.try_into().map_err(invalid)?,
            histogram: c.histogram,
            piece: c.piece,
            pieces: c.pieces,
            estimates: c
                .estimates
                .map(|e| e.values.into_iter().map(EstimateColumns::try_from).collect::<Result<Vec<_>, _>>())
                .transpose()
                .map_err(invalid)?,
        })
    }
}

/// What the first piece of a checkpoint upload announces.
pub fn checkpoint_header(first: pb::UploadCheckpointPiece) -> Result<(CheckpointHeader, Vec<u8>), Status> {
    let Some(info) = first.info else {
        return Err(Status::invalid_argument("the first checkpoint piece must carry the claim and the info"));
    };
    let (job_id, claim) = claim(first.claim)?;
    let header = CheckpointHeader { job_id, claim, epoch: info.epoch, size: info.size, sha256: info.sha256 };
    Ok((header, first.data))
}

pub(super) fn checkpoint_info(c: &CheckpointRef) -> pb::CheckpointInfo {
    pb::CheckpointInfo { epoch: c.epoch, size: c.size, sha256: c.sha256.clone() }
}

pub(super) fn lease(g: &Grant, final_checkpoint: bool) -> pb::Lease {
    pb::Lease {
        job_id: g.job_id.to_string(),
        sweep_id: g.sweep_id.to_string(),
        fencing_token: g.token.0,
        lease_secret: g.secret.expose(),
        attempt: g.attempt,
        spec: Some((&g.spec).into()),
        deadline_ms: g.deadline_ms,
        resume: g.resume.as_ref().map(checkpoint_info),
        final_checkpoint,
    }
}

pub(super) fn sweep_status(s: SweepStatus) -> pb::SweepStatus {
    let r = s.record;
    let c = r.counts;
    pb::SweepStatus {
        sweep_id: r.id.to_string(),
        name: r.name,
        total: c.total,
        counts: Some(pb::StateCounts {
            pending: c.pending(),
            running: c.running,
            done: c.done,
            failed: c.failed,
            cancelled: c.cancelled,
        }),
        mean_job_seconds: if c.done > 0 { r.done_seconds / c.done as f64 } else { 0.0 },
        failures: s
            .failures
            .into_iter()
            .map(|(job, spec, reasons)| pb::Failure {
                job_id: job.to_string(),
                spec: spec.as_ref().map(Into::into),
                reasons,
            })
            .collect(),
        created_ms: r.created_ms,
        cancelled: r.cancelled,
        running: s.running.into_iter().map(running_job).collect(),
    }
}

fn running_job(job: Job) -> pb::RunningJob {
    let (worker, epoch) = match &job.state {
        JobState::Running { lease, epoch_reached, .. } => (lease.worker_name.clone(), *epoch_reached),
        _ => (String::new(), 0),
    };
    pb::RunningJob {
        job_id: job.job_id.to_string(),
        worker,
        attempt: job.attempts,
        start_epoch: job.start_epoch(),
        epoch,
        checkpoint_epoch: job.checkpoint.as_ref().map(|c| c.epoch),
        checkpoint_ms: job.checkpoint.as_ref().map_or(0, |c| c.stored_ms),
        history: job.history,
    }
}

fn job_state(kind: StateKind) -> pb::JobState {
    match kind {
        StateKind::Pending => pb::JobState::Pending,
        StateKind::Running => pb::JobState::Running,
        StateKind::Done => pb::JobState::Done,
        StateKind::Failed => pb::JobState::Failed,
        StateKind::Cancelled => pb::JobState::Cancelled,
    }
}

fn attempt(a: AttemptRecord) -> pb::Attempt {
    pb::Attempt {
        number: a.number,
        worker: a.worker,
        start_epoch: a.start_epoch,
        end_epoch: a.end_epoch,
        ended: a.ended,
        counted: a.counted,
        ended_ms: a.ended_ms,
    }
}

pub(super) fn job_info(job: Job, spec: &JobSpec) -> pb::JobInfo {
    pb::JobInfo {
        job_id: job.job_id.to_string(),
        index: job.index,
        spec: Some(spec.into()),
        state: job_state(job.kind()) as i32,
        attempts: job.attempts_so_far().into_iter().map(attempt).collect(),
        checkpoint_epoch: job.checkpoint.as_ref().map(|c| c.epoch),
        history: job.history,
    }
}

pub(super) fn worker(w: WorkerRecord) -> pb::WorkerInfo {
    pb::WorkerInfo {
        worker_id: w.id.to_string(),
        name: w.name,
        job_id: w.job.map(|j| j.to_string()).unwrap_or_default(),
        last_seen_ms: w.last_seen_ms,
        threads: w.threads,
        epoch: w.epoch,
    }
}

/// Registration's worker ID, or none for a first registration.
pub(super) fn previous_worker(s: &str) -> Result<Option<WorkerId>, Status> {
    optional_id(s)
}

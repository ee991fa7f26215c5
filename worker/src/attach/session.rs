//! One registration's work: lease a job, train it on its own thread, upload each
//! measured split as it is produced, heartbeat meanwhile, and end the attempt, again and
//! again until shutdown or until the coordinator is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ibsweep_shared::job::JobSpec;
use tokio::sync::{mpsc, watch};

use super::api::{CheckpointInfo, Claim, Completion, CoordinatorApi, HistogramPiece, Lease, Offer};
use super::grpc::MAX_PIECE_BYTES;
use super::retry::{GaveUp, RetryPolicy};
use super::{AttachConfig, StopReason, sleep_or_shutdown};
use crate::checkpoint::{self, TrainingState};
use crate::error::{Error, Result, Stop};
use crate::train::{self, Event, JobData, Plan, SplitMeasurement};

/// After SIGTERM a job that checkpoints finishes its epoch, checkpoints and releases; if
/// that takes longer than this, it stops at once instead (Slurm's `--signal=B:TERM@120`
/// and the manifests' grace periods leave room for it).
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Tries a checkpoint upload gets: a checkpoint is insurance, not the job, so training
/// goes on without it rather than waiting for a coordinator that keeps failing.
const CHECKPOINT_TRIES: u32 = 6;

/// Why a session ended: the worker is shutting down, or the coordinator is gone (or
/// refused a call for good, `Fatal`).
#[derive(Debug)]
pub(super) enum SessionEnd {
    Shutdown,
    Lost(String),
    Fatal(String),
}

pub(super) struct Session<A: CoordinatorApi> {
    pub api: A,
    pub retry: RetryPolicy,
    pub worker_id: String,
    pub heartbeat: Duration,
    pub config: Arc<AttachConfig>,
}

/// Everything a split's histograms and estimates become on the wire, numbered from
/// `sequence` on: per layer its histograms' pieces, then one piece of its estimates.
fn pieces_of(m: &SplitMeasurement, sequence: &mut u64) -> Vec<HistogramPiece> {
    let mut out = Vec::new();
    for layer in &m.layers {
        for (bin, histogram) in &layer.histograms {
            let bytes = histogram.to_bytes();
            let pieces = bytes.len().div_ceil(MAX_PIECE_BYTES).max(1);
            let parts =
                if pieces == 1 { vec![bytes] } else { histogram.split(pieces).iter().map(|h| h.to_bytes()).collect() };
            let key = m.key(&layer.layer, *bin);
            for (piece, part) in parts.into_iter().enumerate() {
                out.push(HistogramPiece {
                    sequence: *sequence,
                    key: key.clone(),
                    bytes: part,
                    piece: piece as u32,
                    pieces: pieces as u32,
                    estimates: None,
                });
                *sequence += 1;
            }
        }
        let columns = m.layer_columns(&layer.layer);
        if !columns.is_empty() {
            out.push(HistogramPiece {
                sequence: *sequence,
                key: m.estimates_key(&layer.layer),
                bytes: Vec::new(),
                piece: 0,
                pieces: 1,
                estimates: Some(columns),
            });
            *sequence += 1;
        }
    }
    out
}

impl<A: CoordinatorApi> Session<A> {
    /// Leases and runs jobs until shutdown or until the coordinator is lost.
    pub async fn work(self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        loop {
            if *shutdown.borrow() {
                return SessionEnd::Shutdown;
            }
            let lease = match self.api.lease(&self.worker_id).await {
                Ok(Offer::Lease(lease)) => lease,
                Ok(Offer::RetryAfter(wait)) => {
                    sleep_or_shutdown(wait, shutdown).await;
                    continue;
                }
                Err(e) if e.disposition == super::api::Disposition::Fatal => return SessionEnd::Fatal(e.message),
                Err(e) => return SessionEnd::Lost(e.message),
            };
            let job = lease.claim.job_id.clone();
            tracing::info!(job = %job, attempt = lease.attempt, "leased");
            let (reason, release) = match self.run(&lease, shutdown).await {
                StopReason::Completed => continue,
                StopReason::LeaseLost(why) => {
                    tracing::warn!(job = %job, "lease lost: {why}; dropping the job");
                    continue;
                }
                StopReason::Cancelled => ("cancelled".to_string(), false),
                StopReason::Released => ("worker shutting down; released".to_string(), true),
                StopReason::Failed(why) => (why, false),
            };
            tracing::warn!(job = %job, "job ended: {reason}");
            let claim = &lease.claim;
            match self.retry.run("reporting the job's end", None, || self.api.fail(claim, &reason, release)).await {
                // Someone else ended it already (expiry): nothing left to report.
                Ok(()) | Err(GaveUp::LeaseLost(_)) => {}
                Err(GaveUp::Refused(why)) => return SessionEnd::Fatal(why),
                // Only during shutdown: the lease expires on its own.
                Err(GaveUp::Exhausted(_)) => return SessionEnd::Shutdown,
            }
        }
    }

    async fn load(&self, spec: &JobSpec) -> std::result::Result<JobData, String> {
        let (spec, datasets) = (spec.clone(), self.config.datasets.clone());
        match tokio::task::spawn_blocking(move || JobData::load(&spec, &datasets)).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(format!("on {}: {e}", self.config.name)),
            Err(e) => Err(format!("data loading panicked: {e}")),
        }
    }

    /// The checkpoint this attempt resumes from, if the lease names one and it can be
    /// used; an unusable one is discarded so the job starts from scratch.
    async fn resume_state(
        &self,
        lease: &Lease,
        spec: &JobSpec,
    ) -> std::result::Result<Option<TrainingState>, StopReason> {
        let Some(info) = &lease.resume else { return Ok(None) };
        let job = &lease.claim.job_id;
        match self.fetch_checkpoint(&lease.claim, info, spec).await {
            Ok(state) => {
                tracing::info!(job = %job, epoch = state.epoch, "resuming from the checkpoint at epoch {}", state.epoch);
                Ok(Some(state))
            }
            Err(FetchFailed::LeaseLost(why)) => Err(StopReason::LeaseLost(why)),
            Err(FetchFailed::Unusable(why)) => {
                tracing::warn!(job = %job, "the checkpoint at epoch {} cannot be used: {why}; starting from scratch", info.epoch);
                let claim = &lease.claim;
                match self
                    .retry
                    .run("discarding the checkpoint", None, || self.api.discard_checkpoint(claim, &why))
                    .await
                {
                    Ok(()) => Ok(None),
                    Err(GaveUp::LeaseLost(why) | GaveUp::Exhausted(why)) => Err(StopReason::LeaseLost(why)),
                    Err(GaveUp::Refused(why)) => {
                        Err(StopReason::Failed(format!("the coordinator refused to discard a checkpoint: {why}")))
                    }
                }
            }
        }
    }

    async fn run(&self, lease: &Lease, shutdown: &mut watch::Receiver<bool>) -> StopReason {
        let spec = match &lease.spec {
            Ok(spec) => spec.clone(),
            Err(why) => return StopReason::Failed(why.clone()),
        };
        let data = match self.load(&spec).await {
            Ok(d) => d,
            Err(why) => return StopReason::Failed(why),
        };
        let completion = Completion {
            train_indices_hash: data.train_hash.clone(),
            test_indices_hash: data.test_hash.clone(),
            pieces: 0,
        };
        let resume = match self.resume_state(lease, &spec).await {
            Ok(resume) => resume,
            Err(reason) => return reason,
        };
        let job = lease.claim.job_id.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let drain = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::new(AtomicBool::new(false));
        // The heartbeat task also reports each finished epoch (at most once a second), so
        // `status --watch` follows progress between regular heartbeats.
        let (epoch, epoch_rx) = watch::channel(resume.as_ref().map_or(0, |s| s.epoch));
        let (tx, mut rx) = mpsc::channel::<Event>(4);
        let final_checkpoint = lease.final_checkpoint;
        let trainer = {
            let (stop, drain, run_config, spec) =
                (Arc::clone(&stop), Arc::clone(&drain), self.config.run.clone(), spec.clone());
            std::thread::Builder::new().name("train".into()).spawn(move || {
                let should_stop = move || stop.load(Ordering::Relaxed);
                let should_drain = move || drain.load(Ordering::Relaxed);
                let plan =
                    Plan { resume: resume.as_ref(), checkpoints: true, final_checkpoint, drain: Some(&should_drain) };
                train::run_job_with(&spec, &data, &run_config, &plan, &should_stop, &mut |event| {
                    tx.blocking_send(event).map_err(|_| Error::Stopped(Stop::Abandoned))
                })
            })
        };
        let trainer = match trainer {
            Ok(t) => t,
            Err(e) => return StopReason::Failed(format!("cannot start a training thread: {e}")),
        };
        let heartbeat = self.spawn_heartbeat(&lease.claim, Arc::clone(&stop), Arc::clone(&cancelled), epoch_rx);
        let mut sequence = 0u64;
        // The latest checkpoint the coordinator could not store yet (it refused writes).
        let mut unsent: Option<(u32, Vec<u8>)> = None;
        let mut ended: Option<StopReason> = None;
        let mut shutting_down = false;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            let drain_expired = async {
                match drain_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Event::Measured(m)) if ended.is_none() => {
                        let pieces = pieces_of(&m, &mut sequence);
                        let claim = &lease.claim;
                        let sent = self.retry.run("upload", None, || self.api.upload(claim, &pieces)).await;
                        let why = match sent {
                            Ok(()) => None,
                            Err(GaveUp::LeaseLost(why)) => Some(StopReason::LeaseLost(why)),
                            Err(GaveUp::Exhausted(why)) => Some(StopReason::LeaseLost(format!("shutting down; {why}"))),
                            Err(GaveUp::Refused(why)) => {
                                Some(StopReason::Failed(format!("the coordinator refused a histogram: {why}")))
                            }
                        };
                        if why.is_some() {
                            ended = why;
                            stop.store(true, Ordering::Relaxed);
                        } else if let Some((epoch, bytes)) = unsent.take() {
                            // The coordinator takes writes again: deliver the checkpoint it refused.
                            match self.upload_checkpoint(&lease.claim, epoch, &bytes).await {
                                Ok(true) => {}
                                Ok(false) => unsent = Some((epoch, bytes)),
                                Err(why) => {
                                    ended = Some(why);
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Some(Event::Checkpoint { epoch, bytes }) if ended.is_none() => {
                        match self.upload_checkpoint(&lease.claim, epoch, &bytes).await {
                            Ok(true) => unsent = None,
                            // Kept (replacing an older one) and sent after the next upload
                            // that gets through.
                            Ok(false) => unsent = Some((epoch, bytes)),
                            Err(why) => {
                                ended = Some(why);
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    Some(Event::Epoch(metrics)) => {
                        let _ = epoch.send(metrics.epoch);
                        tracing::info!(job = %job, epoch = metrics.epoch, test_accuracy = ?metrics.test_accuracy, "epoch done");
                    }
                    Some(_) => {}
                    None => break,
                },
                _ = shutdown.changed(), if !shutting_down => {
                    shutting_down = true;
                    if spec.checkpoint_every > 0 {
                        tracing::info!("shutting down: finishing this epoch, then checkpointing and releasing the job (at most {} s)", DRAIN_LIMIT.as_secs());
                        drain.store(true, Ordering::Relaxed);
                        drain_deadline = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
                    } else {
                        tracing::info!("shutting down: stopping after this mini-batch, uploading what was measured");
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                _ = drain_expired => {
                    tracing::warn!("the epoch did not finish within {} s of the shutdown; stopping now", DRAIN_LIMIT.as_secs());
                    drain_deadline = None;
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        heartbeat.abort();
        let outcome = match tokio::task::spawn_blocking(move || trainer.join()).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                // A panic is a failure of this job, which must use a try: a job that always
                // panics ends as `failed` instead of being leased forever.
                return StopReason::Failed(format!("training panicked on {}: {what}", self.config.name));
            }
            Err(e) => return StopReason::Failed(format!("training thread lost: {e}")),
        };
        if let Some(reason) = ended {
            return reason;
        }
        match outcome {
            Ok(()) => self.complete(&lease.claim, Completion { pieces: sequence, ..completion }).await,
            Err(Error::Stopped(_)) if cancelled.load(Ordering::Relaxed) => StopReason::Cancelled,
            Err(Error::Stopped(_)) => StopReason::Released,
            Err(e) => StopReason::Failed(e.to_string()),
        }
    }

    fn spawn_heartbeat(
        &self,
        claim: &Claim,
        stop: Arc<AtomicBool>,
        cancelled: Arc<AtomicBool>,
        mut epoch: watch::Receiver<u32>,
    ) -> tokio::task::JoinHandle<()> {
        let (api, claim, every) = (self.api.clone(), claim.clone(), self.heartbeat);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let deadline = tokio::time::Instant::now() + every;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    changed = epoch.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1).min(every)).await;
                    }
                }
                let current = *epoch.borrow_and_update();
                match api.heartbeat(&claim, current).await {
                    Ok(true) => {
                        tracing::info!(job = %claim.job_id, "cancelled by the coordinator");
                        cancelled.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(false) => {
                        if std::mem::take(&mut failing) {
                            tracing::info!(job = %claim.job_id, "heartbeats are accepted again");
                        }
                    }
                    // Said once per outage: a full disk on the coordinator may last minutes.
                    Err(e) if e.disposition == super::api::Disposition::Retry && failing => {
                        tracing::debug!(job = %claim.job_id, "heartbeat failed: {e}");
                    }
                    Err(e) if e.disposition == super::api::Disposition::Retry => {
                        failing = true;
                        tracing::warn!(
                            job = %claim.job_id,
                            "heartbeat failed: {e}; retrying at every interval, the job keeps running"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(job = %claim.job_id, "heartbeat refused: {e}");
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    }

    /// Stores a checkpoint; only a lost lease ends the job: a refused or failing upload
    /// leaves training running without it. `Ok(false)`: not stored for a reason that may
    /// pass (the coordinator refused writes, or could not be reached), so keep it.
    async fn upload_checkpoint(
        &self,
        claim: &Claim,
        epoch: u32,
        bytes: &[u8],
    ) -> std::result::Result<bool, StopReason> {
        let started = std::time::Instant::now();
        let stored = self
            .retry
            .run("checkpoint upload", Some(CHECKPOINT_TRIES), || self.api.upload_checkpoint(claim, epoch, bytes))
            .await;
        match stored {
            Ok(committed) => {
                tracing::info!(
                    job = %claim.job_id,
                    epoch,
                    bytes = bytes.len(),
                    committed,
                    seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
                    "checkpoint stored"
                );
                Ok(true)
            }
            Err(GaveUp::LeaseLost(why)) => Err(StopReason::LeaseLost(why)),
            Err(GaveUp::Refused(why)) => {
                tracing::warn!(job = %claim.job_id, epoch, "checkpoint refused: {why}; training continues without it");
                Ok(true)
            }
            Err(GaveUp::Exhausted(why)) => {
                tracing::warn!(
                    job = %claim.job_id,
                    epoch,
                    "checkpoint not stored yet: {why}; training continues, and this checkpoint ({} bytes, kept in \
                     memory until a newer one replaces it) is sent again after the next upload that succeeds",
                    bytes.len()
                );
                Ok(false)
            }
        }
    }

    /// Downloads, verifies and decodes the lease's checkpoint.
    async fn fetch_checkpoint(
        &self,
        claim: &Claim,
        info: &CheckpointInfo,
        spec: &JobSpec,
    ) -> std::result::Result<TrainingState, FetchFailed> {
        let fetched = self.retry.run("checkpoint download", None, || self.api.download_checkpoint(claim, info)).await;
        let bytes = match fetched {
            Ok(bytes) => bytes,
            Err(GaveUp::LeaseLost(why) | GaveUp::Exhausted(why)) => return Err(FetchFailed::LeaseLost(why)),
            Err(GaveUp::Refused(why)) => return Err(FetchFailed::Unusable(why)),
        };
        let digest = checkpoint::sha256_hex(&bytes);
        if bytes.len() as u64 != info.size || digest != info.sha256 {
            return Err(FetchFailed::Unusable(format!(
                "{} bytes with sha256 {digest} arrived, the lease says {} bytes with sha256 {}",
                bytes.len(),
                info.size,
                info.sha256
            )));
        }
        let (spec, epoch) = (spec.clone(), info.epoch);
        let checked = tokio::task::spawn_blocking(move || -> Result<TrainingState> {
            let state = checkpoint::decode(&spec, &bytes)?;
            if state.epoch != epoch {
                return Err(Error::Checkpoint(format!("epoch {} inside, {epoch} announced", state.epoch)));
            }
            checkpoint::check_fits(&spec, &state)?;
            Ok(state)
        })
        .await;
        match checked {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(e)) => Err(FetchFailed::Unusable(e.to_string())),
            Err(e) => Err(FetchFailed::Unusable(format!("checking the checkpoint panicked: {e}"))),
        }
    }

    async fn complete(&self, claim: &Claim, completion: Completion) -> StopReason {
        match self.retry.run("completion", None, || self.api.complete(claim, &completion)).await {
            Ok(rows) => {
                tracing::info!(job = %claim.job_id, rows, "job complete");
                StopReason::Completed
            }
            Err(GaveUp::LeaseLost(why)) => StopReason::LeaseLost(why),
            Err(GaveUp::Exhausted(why)) => StopReason::LeaseLost(format!("shutting down; {why}")),
            Err(GaveUp::Refused(why)) => StopReason::Failed(format!("the coordinator refused completion: {why}")),
        }
    }
}

/// Why a lease's checkpoint was not restored.
enum FetchFailed {
    LeaseLost(String),
    /// Missing, corrupt or not this job's: discard it and start from scratch.
    Unusable(String),
}

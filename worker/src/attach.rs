//! `worker --coordinator URL`: register, lease, train, stream histograms, complete; forever.
//!
//! Training runs on its own OS thread ([`crate::train::run_job`]); this async loop keeps
//! heartbeats flowing and uploads each measured split as soon as it is produced. While the
//! coordinator is unreachable the worker retries with backoff.
//!
//! On SIGTERM or Ctrl-C a job that checkpoints finishes the epoch in progress (at most
//! 90 s), uploads a checkpoint, and *releases* the lease: the job goes back to
//! pending at once (without using up an attempt) and its next attempt resumes after that
//! epoch. A job without checkpoints stops after the current mini-batch instead. A re-leased
//! job comes with its checkpoint, which is verified and restored before training resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ibsweep_proto::PROTOCOL_VERSION;
use ibsweep_proto::connect::{Bearer, ClientConfig};
use ibsweep_proto::v1::worker_service_client::WorkerServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::job::JobSpec;
use tokio::sync::{mpsc, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::checkpoint::{self, TrainingState};
use crate::cli::ComputeArgs;
use crate::error::{Error, Result};
use crate::train::{self, Event, JobData, Plan, SplitMeasurement};

/// A histogram larger than this travels in several pieces (gRPC messages stay small);
/// checkpoints travel in pieces of this size.
const MAX_PIECE_BYTES: usize = 1 << 20;

/// After SIGTERM a job that checkpoints finishes its epoch, checkpoints and releases; if
/// that takes longer than this, it stops at once instead (Slurm's `--signal=B:TERM@120`
/// and the manifests' grace periods leave room for it).
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// What the attach loop needs.
#[derive(Debug, Clone)]
pub struct AttachConfig {
    /// Address, token and TLS of the coordinator.
    pub client: ClientConfig,
    pub name: String,
    pub compute: ComputeArgs,
}

pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(5)).min(5_000))
}

/// What a worker does about a refused or failed call. Every call goes through
/// [`classify`], so the answer to one status code is the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient (network, coordinator restarting or overloaded): try again with backoff.
    Retry,
    /// The coordinator no longer counts this lease as ours: drop the job, lease again.
    LeaseLost,
    /// Retrying cannot help (a protocol mismatch, a request the coordinator refuses as
    /// malformed): report and stop this job, or the worker.
    Fatal,
}

pub fn classify(status: &tonic::Status) -> Disposition {
    use tonic::Code;
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => Disposition::Retry,
        // The lease moved on (stale token, re-leased, finished) or the job is gone.
        Code::FailedPrecondition | Code::NotFound => Disposition::LeaseLost,
        Code::InvalidArgument
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::Unimplemented
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Ok => Disposition::Fatal,
    }
}

type Client = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

async fn connect(config: &ClientConfig) -> std::result::Result<Client, String> {
    let (channel, bearer) = config.connect().await.map_err(|e| e.to_string())?;
    Ok(WorkerServiceClient::with_interceptor(channel, bearer).max_encoding_message_size(2 << 20))
}

/// Runs until `shutdown` turns true. Returns an error only for what retrying cannot fix
/// (a protocol mismatch, bad flags).
pub async fn attach(config: AttachConfig, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let run_config = config.compute.run_config()?;
    let mut failures = 0;
    // Kept across reconnects, so the coordinator keeps one record per worker process.
    let mut worker_id = String::new();
    while !*shutdown.borrow() {
        let mut client = match connect(&config.client).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{e}; retrying in {:?}", backoff(failures));
                sleep_or_shutdown(backoff(failures), &mut shutdown).await;
                failures += 1;
                continue;
            }
        };
        let device = format!("{:?}", run_config.device).to_lowercase();
        let registered = client
            .register(pb::RegisterRequest {
                protocol_version: PROTOCOL_VERSION,
                name: config.name.clone(),
                threads: run_config.threads as u32,
                device,
                previous_worker_id: worker_id.clone(),
            })
            .await;
        let registered = match registered {
            Ok(r) => r.into_inner(),
            Err(s) if classify(&s) != Disposition::Retry => {
                return Err(Error::InvalidInput(format!("the coordinator refused this worker: {}", s.message())));
            }
            Err(s) => {
                tracing::warn!("registration failed: {}; retrying", s.message());
                sleep_or_shutdown(backoff(failures), &mut shutdown).await;
                failures += 1;
                continue;
            }
        };
        failures = 0;
        worker_id = registered.worker_id.clone();
        tracing::info!(worker = %registered.worker_id, "registered with {} as {}", config.client.url, config.name);
        let session = Session {
            client,
            shutdown: shutdown.clone(),
            worker_id: registered.worker_id,
            heartbeat: Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(100))),
            config: config.clone(),
            run_config: run_config.clone(),
        };
        match session.work(&mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if classify(&e) == Disposition::Fatal => {
                return Err(Error::InvalidInput(format!("the coordinator refused a call: {}", e.message())));
            }
            Err(e) => {
                tracing::warn!("lost the coordinator: {}; reconnecting", e.message());
                sleep_or_shutdown(backoff(0), &mut shutdown).await;
            }
        }
    }
    Ok(())
}

/// Sleeps, unless shutdown comes first; returns whether the worker is shutting down.
async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}

struct Session {
    client: Client,
    /// Retry loops give up after a few tries once this turns true.
    shutdown: watch::Receiver<bool>,
    worker_id: String,
    heartbeat: Duration,
    config: AttachConfig,
    run_config: train::RunConfig,
}

/// Why an upload did not go through.
enum Upload {
    LeaseLost(String),
    /// The coordinator refused the histograms themselves: this job is failing.
    Refused(String),
}

/// Why a lease's checkpoint was not restored.
enum Fetched {
    LeaseLost(String),
    /// Missing, corrupt or not this job's: discard it and start from scratch.
    Unusable(String),
}

/// Why a job ended without results.
enum Ending {
    Completed,
    Cancelled,
    Released,
    Failed(String),
    LeaseLost(String),
}

impl Session {
    /// During shutdown a retry loop makes a few tries, then lets the lease expire instead
    /// of keeping the process alive against an unreachable coordinator.
    fn giving_up(&self, attempt: u32) -> bool {
        *self.shutdown.borrow() && attempt >= 3
    }

    /// Leases and runs jobs until shutdown; an error means the connection is gone.
    async fn work(mut self, shutdown: &mut watch::Receiver<bool>) -> std::result::Result<(), tonic::Status> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let response =
                self.client.lease(pb::LeaseRequest { worker_id: self.worker_id.clone() }).await?.into_inner();
            let Some(lease) = response.lease else {
                sleep_or_shutdown(Duration::from_millis(u64::from(response.retry_after_ms.max(100))), shutdown).await;
                continue;
            };
            tracing::info!(job = %lease.job_id, attempt = lease.attempt, "leased");
            let ending = self.run(&lease, shutdown).await;
            let (reason, release) = match ending {
                Ending::Completed => continue,
                Ending::LeaseLost(why) => {
                    tracing::warn!(job = %lease.job_id, "lease lost: {why}; dropping the job");
                    continue;
                }
                Ending::Cancelled => ("cancelled".to_string(), false),
                Ending::Released => ("worker shutting down; released".to_string(), true),
                Ending::Failed(why) => (why, false),
            };
            tracing::warn!(job = %lease.job_id, "job ended: {reason}");
            let request = pb::FailRequest {
                worker_id: self.worker_id.clone(),
                job_id: lease.job_id.clone(),
                fencing_token: lease.fencing_token,
                reason,
                release,
                lease_secret: lease.lease_secret.clone(),
            };
            for attempt in 0.. {
                match self.client.fail(request.clone()).await {
                    Ok(_) => break,
                    Err(s) => match classify(&s) {
                        // Someone else ended it already (expiry): nothing left to report.
                        Disposition::LeaseLost => break,
                        Disposition::Fatal => return Err(s),
                        // A release during shutdown gets a few tries, then the lease
                        // expires on its own; a failure is retried until it is recorded.
                        Disposition::Retry if self.giving_up(attempt) => return Ok(()),
                        Disposition::Retry => {
                            tracing::warn!(job = %lease.job_id, "reporting the job's end failed: {}; retrying", s.message());
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                    },
                }
            }
        }
    }

    async fn run(&mut self, lease: &pb::Lease, shutdown: &mut watch::Receiver<bool>) -> Ending {
        let spec: JobSpec = match serde_json::from_str(&lease.spec_json) {
            Ok(s) => s,
            Err(e) => return Ending::Failed(format!("unreadable job spec: {e}")),
        };
        let datasets = self.config.compute.datasets();
        let data = {
            let spec = spec.clone();
            match tokio::task::spawn_blocking(move || JobData::load(&spec, &datasets)).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Ending::Failed(format!("on {}: {e}", self.config.name)),
                Err(e) => return Ending::Failed(format!("data loading panicked: {e}")),
            }
        };
        let hashes = (data.train_hash.clone(), data.test_hash.clone());
        let resume = match &lease.resume {
            Some(info) => match self.fetch_checkpoint(lease, info, &spec).await {
                Ok(state) => {
                    tracing::info!(job = %lease.job_id, epoch = state.epoch, "resuming from the checkpoint at epoch {}", state.epoch);
                    Some(state)
                }
                Err(Fetched::LeaseLost(why)) => return Ending::LeaseLost(why),
                Err(Fetched::Unusable(why)) => {
                    tracing::warn!(job = %lease.job_id, "the checkpoint at epoch {} cannot be used: {why}; starting from scratch", info.epoch);
                    if let Err(ending) = self.discard_checkpoint(lease, &why).await {
                        return ending;
                    }
                    None
                }
            },
            None => None,
        };
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
                (Arc::clone(&stop), Arc::clone(&drain), self.run_config.clone(), spec.clone());
            std::thread::Builder::new().name("train".into()).spawn(move || {
                let should_stop = move || stop.load(Ordering::Relaxed).then(|| "stopped".to_string());
                let should_drain = move || drain.load(Ordering::Relaxed);
                let plan =
                    Plan { resume: resume.as_ref(), checkpoints: true, final_checkpoint, drain: Some(&should_drain) };
                train::run_job_with(&spec, &data, &run_config, &plan, &should_stop, &mut |event| {
                    tx.blocking_send(event).map_err(|_| Error::Stopped("upload loop ended".into()))
                })
            })
        };
        let trainer = match trainer {
            Ok(t) => t,
            Err(e) => return Ending::Failed(format!("cannot start a training thread: {e}")),
        };
        let heartbeat = self.spawn_heartbeat(lease, Arc::clone(&stop), Arc::clone(&cancelled), epoch_rx);
        let mut sequence = 0u64;
        let mut lost: Option<Upload> = None;
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
                    Some(Event::Measured(m)) if lost.is_none() => {
                        if let Err(why) = self.upload(lease, &m, &mut sequence).await {
                            lost = Some(why);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Some(Event::Checkpoint { epoch, bytes }) if lost.is_none() => {
                        match self.upload_checkpoint(lease, epoch, bytes).await {
                            Ok(()) => {}
                            Err(Upload::LeaseLost(why)) => {
                                lost = Some(Upload::LeaseLost(why));
                                stop.store(true, Ordering::Relaxed);
                            }
                            // A checkpoint is insurance, not the job: training goes on.
                            Err(Upload::Refused(why)) => {
                                tracing::warn!(job = %lease.job_id, epoch, "checkpoint not stored: {why}; training continues");
                            }
                        }
                    }
                    Some(Event::Epoch(metrics)) => {
                        let _ = epoch.send(metrics.epoch);
                        tracing::info!(job = %lease.job_id, epoch = metrics.epoch, test_accuracy = ?metrics.test_accuracy, "epoch done");
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
                return Ending::Failed(format!("training panicked on {}: {what}", self.config.name));
            }
            Err(e) => return Ending::Failed(format!("training thread lost: {e}")),
        };
        match lost {
            Some(Upload::LeaseLost(why)) => return Ending::LeaseLost(why),
            Some(Upload::Refused(why)) => return Ending::Failed(format!("the coordinator refused a histogram: {why}")),
            None => {}
        }
        match outcome {
            Ok(()) => self.complete(lease, hashes, sequence).await,
            Err(Error::Stopped(_)) if cancelled.load(Ordering::Relaxed) => Ending::Cancelled,
            Err(Error::Stopped(_)) => Ending::Released,
            Err(e) => Ending::Failed(e.to_string()),
        }
    }

    fn spawn_heartbeat(
        &self,
        lease: &pb::Lease,
        stop: Arc<AtomicBool>,
        cancelled: Arc<AtomicBool>,
        mut epoch: watch::Receiver<u32>,
    ) -> tokio::task::JoinHandle<()> {
        let mut client = self.client.clone();
        let (worker_id, job_id, token, every) =
            (self.worker_id.clone(), lease.job_id.clone(), lease.fencing_token, self.heartbeat);
        let secret = lease.lease_secret.clone();
        tokio::spawn(async move {
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
                let request = pb::HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    job_id: job_id.clone(),
                    fencing_token: token,
                    epoch: current,
                    lease_secret: secret.clone(),
                };
                match client.heartbeat(request).await {
                    Ok(r) if r.get_ref().cancelled => {
                        tracing::info!(job = %job_id, "cancelled by the coordinator");
                        cancelled.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(_) => {}
                    Err(s) if classify(&s) == Disposition::Retry => {
                        tracing::warn!(job = %job_id, "heartbeat failed: {} (will retry)", s.message());
                    }
                    Err(s) => {
                        tracing::warn!(job = %job_id, "heartbeat refused: {}", s.message());
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    }

    fn chunks(&self, lease: &pb::Lease, m: &SplitMeasurement, sequence: &mut u64) -> Vec<pb::HistogramChunk> {
        let mut out = Vec::new();
        for layer in &m.layers {
            for (bin, histogram) in &layer.histograms {
                let bytes = histogram.to_bytes();
                let pieces = bytes.len().div_ceil(MAX_PIECE_BYTES).max(1);
                let parts = if pieces == 1 {
                    vec![bytes]
                } else {
                    histogram.split(pieces).iter().map(|h| h.to_bytes()).collect()
                };
                let key = m.key(&layer.layer, *bin);
                for (piece, part) in parts.into_iter().enumerate() {
                    out.push(pb::HistogramChunk {
                        job_id: lease.job_id.clone(),
                        fencing_token: lease.fencing_token,
                        sequence: *sequence,
                        epoch: key.epoch,
                        split: key.split.as_str().into(),
                        layer: key.layer,
                        layer_name: key.layer_name.clone(),
                        bin_size: key.bin_size,
                        loss: key.loss,
                        accuracy: key.accuracy,
                        histogram: part,
                        piece: piece as u32,
                        pieces: pieces as u32,
                        worker_id: self.worker_id.clone(),
                        lease_secret: lease.lease_secret.clone(),
                    });
                    *sequence += 1;
                }
            }
        }
        out
    }

    /// Sends one measured split; resends the whole batch (same sequence numbers, so nothing
    /// is counted twice) until it is acknowledged or the lease is gone.
    async fn upload(
        &mut self,
        lease: &pb::Lease,
        m: &SplitMeasurement,
        sequence: &mut u64,
    ) -> std::result::Result<(), Upload> {
        let chunks = self.chunks(lease, m, sequence);
        for attempt in 0.. {
            match self.client.upload_histograms(tokio_stream::iter(chunks.clone())).await {
                Ok(_) => return Ok(()),
                Err(s) => match classify(&s) {
                    Disposition::LeaseLost => return Err(Upload::LeaseLost(s.message().to_string())),
                    Disposition::Fatal => return Err(Upload::Refused(s.message().to_string())),
                    Disposition::Retry if self.giving_up(attempt) => {
                        return Err(Upload::LeaseLost(format!("shutting down; upload failed: {}", s.message())));
                    }
                    Disposition::Retry => {
                        tracing::warn!(job = %lease.job_id, "upload failed: {}; retrying", s.message());
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                },
            }
        }
        unreachable!("the loop only ends by returning")
    }

    fn checkpoint_claim(&self, lease: &pb::Lease) -> pb::CheckpointRequest {
        pb::CheckpointRequest {
            worker_id: self.worker_id.clone(),
            job_id: lease.job_id.clone(),
            fencing_token: lease.fencing_token,
            lease_secret: lease.lease_secret.clone(),
        }
    }

    /// Sends a checkpoint in pieces (the first with the claim, epoch, size and SHA-256);
    /// resends the whole of it until it is acknowledged or refused.
    async fn upload_checkpoint(
        &mut self,
        lease: &pb::Lease,
        epoch: u32,
        bytes: Vec<u8>,
    ) -> std::result::Result<(), Upload> {
        let info = pb::CheckpointInfo { epoch, size: bytes.len() as u64, sha256: checkpoint::sha256_hex(&bytes) };
        let started = std::time::Instant::now();
        let mut pieces: Vec<pb::CheckpointPiece> = bytes
            .chunks(MAX_PIECE_BYTES)
            .map(|data| pb::CheckpointPiece { claim: None, info: None, data: data.to_vec() })
            .collect();
        if pieces.is_empty() {
            pieces.push(pb::CheckpointPiece::default());
        }
        pieces[0].claim = Some(self.checkpoint_claim(lease));
        pieces[0].info = Some(info);
        for attempt in 0.. {
            match self.client.upload_checkpoint(tokio_stream::iter(pieces.clone())).await {
                Ok(r) => {
                    tracing::info!(
                        job = %lease.job_id,
                        epoch,
                        bytes = bytes.len(),
                        committed = r.get_ref().committed,
                        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
                        "checkpoint stored"
                    );
                    return Ok(());
                }
                Err(s) => match classify(&s) {
                    Disposition::LeaseLost => return Err(Upload::LeaseLost(s.message().to_string())),
                    Disposition::Fatal => return Err(Upload::Refused(s.message().to_string())),
                    Disposition::Retry if attempt >= 5 || self.giving_up(attempt) => {
                        return Err(Upload::Refused(format!("gave up after {} tries: {}", attempt + 1, s.message())));
                    }
                    Disposition::Retry => {
                        tracing::warn!(job = %lease.job_id, "checkpoint upload failed: {}; retrying", s.message());
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                },
            }
        }
        unreachable!("the loop only ends by returning")
    }

    /// Downloads, verifies and decodes the lease's checkpoint.
    async fn fetch_checkpoint(
        &mut self,
        lease: &pb::Lease,
        info: &pb::CheckpointInfo,
        spec: &JobSpec,
    ) -> std::result::Result<TrainingState, Fetched> {
        let mut attempt = 0;
        let bytes = loop {
            match self.download(lease, info).await {
                Ok(bytes) => break bytes,
                Err(s) => match classify(&s) {
                    Disposition::LeaseLost => return Err(Fetched::LeaseLost(s.message().to_string())),
                    Disposition::Fatal => return Err(Fetched::Unusable(s.message().to_string())),
                    Disposition::Retry if self.giving_up(attempt) => {
                        return Err(Fetched::LeaseLost(format!("shutting down; download failed: {}", s.message())));
                    }
                    Disposition::Retry => {
                        tracing::warn!(job = %lease.job_id, "checkpoint download failed: {}; retrying", s.message());
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                },
            }
        };
        let digest = checkpoint::sha256_hex(&bytes);
        if bytes.len() as u64 != info.size || digest != info.sha256 {
            return Err(Fetched::Unusable(format!(
                "{} bytes with sha256 {digest} arrived, the lease says {} bytes with sha256 {}",
                bytes.len(),
                info.size,
                info.sha256
            )));
        }
        let spec = spec.clone();
        let epoch = info.epoch;
        let checked = tokio::task::spawn_blocking(move || -> Result<TrainingState> {
            let state = checkpoint::decode(&spec, &bytes)?;
            if state.epoch != epoch {
                return Err(Error::InvalidInput(format!(
                    "checkpoint: epoch {} inside, {epoch} announced",
                    state.epoch
                )));
            }
            checkpoint::check_fits(&spec, &state)?;
            Ok(state)
        })
        .await;
        match checked {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(e)) => Err(Fetched::Unusable(e.to_string())),
            Err(e) => Err(Fetched::Unusable(format!("checking the checkpoint panicked: {e}"))),
        }
    }

    async fn download(
        &mut self,
        lease: &pb::Lease,
        info: &pb::CheckpointInfo,
    ) -> std::result::Result<Vec<u8>, tonic::Status> {
        let mut stream = self.client.download_checkpoint(self.checkpoint_claim(lease)).await?.into_inner();
        let mut bytes = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0).min(1 << 30));
        while let Some(piece) = stream.message().await? {
            bytes.extend_from_slice(&piece.data);
            if bytes.len() as u64 > info.size {
                return Err(tonic::Status::data_loss("the checkpoint is longer than the lease says"));
            }
        }
        Ok(bytes)
    }

    /// Tells the coordinator the lease's checkpoint is unusable, so the job restarts from
    /// scratch under the same lease and nothing committed with it is published.
    async fn discard_checkpoint(&mut self, lease: &pb::Lease, reason: &str) -> std::result::Result<(), Ending> {
        let request = pb::DiscardCheckpointRequest { claim: Some(self.checkpoint_claim(lease)), reason: reason.into() };
        for attempt in 0.. {
            match self.client.discard_checkpoint(request.clone()).await {
                Ok(_) => return Ok(()),
                Err(s) => match classify(&s) {
                    Disposition::LeaseLost => return Err(Ending::LeaseLost(s.message().to_string())),
                    Disposition::Fatal => {
                        return Err(Ending::Failed(format!(
                            "the coordinator refused to discard a checkpoint: {}",
                            s.message()
                        )));
                    }
                    Disposition::Retry if self.giving_up(attempt) => {
                        return Err(Ending::LeaseLost(format!("shutting down; discard failed: {}", s.message())));
                    }
                    Disposition::Retry => tokio::time::sleep(backoff(attempt)).await,
                },
            }
        }
        unreachable!("the loop only ends by returning")
    }

    async fn complete(&mut self, lease: &pb::Lease, hashes: (String, String), chunks: u64) -> Ending {
        for attempt in 0.. {
            let request = pb::CompleteRequest {
                worker_id: self.worker_id.clone(),
                job_id: lease.job_id.clone(),
                fencing_token: lease.fencing_token,
                lease_secret: lease.lease_secret.clone(),
                train_indices_hash: hashes.0.clone(),
                test_indices_hash: hashes.1.clone(),
                chunks,
            };
            match self.client.complete(request).await {
                Ok(r) => {
                    tracing::info!(job = %lease.job_id, rows = r.get_ref().rows, "job complete");
                    return Ending::Completed;
                }
                Err(s) => match classify(&s) {
                    Disposition::LeaseLost => return Ending::LeaseLost(s.message().to_string()),
                    Disposition::Fatal => {
                        return Ending::Failed(format!("the coordinator refused completion: {}", s.message()));
                    }
                    Disposition::Retry if self.giving_up(attempt) => {
                        return Ending::LeaseLost(format!("shutting down; completion failed: {}", s.message()));
                    }
                    Disposition::Retry => {
                        tracing::warn!(job = %lease.job_id, "complete failed: {}; retrying", s.message());
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                },
            }
        }
        unreachable!("the loop only ends by returning")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn every_call_classifies_status_codes_the_same_way() {
        let cases = [
            (Code::Unavailable, Disposition::Retry),
            (Code::DeadlineExceeded, Disposition::Retry),
            (Code::ResourceExhausted, Disposition::Retry),
            (Code::Internal, Disposition::Retry),
            (Code::FailedPrecondition, Disposition::LeaseLost),
            (Code::NotFound, Disposition::LeaseLost),
            // A refused histogram is this job's failure, not a lost lease (it used to be).
            (Code::InvalidArgument, Disposition::Fatal),
            (Code::Unauthenticated, Disposition::Fatal),
            (Code::PermissionDenied, Disposition::Fatal),
        ];
        for (code, want) in cases {
            assert_eq!(classify(&Status::new(code, "x")), want, "{code:?}");
        }
    }
}

//! `worker --coordinator URL`: register, lease, train, stream histograms, complete; forever.
//!
//! Training runs on its own OS thread ([`crate::train::run_job_with`]); the async loop
//! keeps heartbeats flowing and uploads each measured split as soon as it is produced.
//! While the coordinator is unreachable the worker retries with backoff.
//!
//! On SIGTERM or Ctrl-C a job that checkpoints finishes the epoch in progress (at most
//! 90 s), uploads a checkpoint, and *releases* the lease: the job goes back to pending at
//! once (without using up an attempt) and its next attempt resumes after that epoch. A
//! job without checkpoints stops after the current mini-batch instead. A re-leased job
//! comes with its checkpoint, which is verified and restored before training resumes.
//!
//! # Layout
//! - [`api`]: the [`CoordinatorApi`] trait and the worker's own types for what crosses it.
//! - [`grpc`]: the trait over tonic, the only module here that touches protobuf.
//! - [`retry`]: the one retry policy every call goes through.
//! - [`fake`]: an in-memory coordinator that fails on cue, for tests of this loop.
//! - `session`: one registration's lease/train/upload/end loop.
//! - this module: [`AttachConfig`], [`StopReason`] and the reconnecting loop.

pub mod api;
#[doc(hidden)]
pub mod fake;
pub mod grpc;
pub mod retry;
mod session;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ibsweep_proto::connect::ClientConfig;
use tokio::sync::watch;

pub use api::{CoordinatorApi, Disposition};
pub use grpc::{GrpcApi, classify};

use crate::error::{Error, Result};
use crate::train::RunConfig;
use api::Registration;
use retry::{RetryPolicy, backoff};
use session::{Session, SessionEnd};

/// What the attach loop needs: where the coordinator is, who this worker is, and what it
/// computes with.
#[derive(Debug, Clone)]
pub struct AttachConfig {
    /// Address, token and TLS of the coordinator.
    pub client: ClientConfig,
    /// This worker's name in `coordinator workers`.
    pub name: String,
    /// Directory with the `mnist/` and `fashion-mnist/` IDX files.
    pub datasets: PathBuf,
    /// Threads and device for training and binning.
    pub run: RunConfig,
}

/// How one attempt at a job ended on this worker, and so what the coordinator is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Results delivered and acknowledged.
    Completed,
    /// The coordinator cancelled the job: the worker reports that it stopped, and the job
    /// stays cancelled.
    Cancelled,
    /// The worker is shutting down: the job is handed back without using a try.
    Released,
    /// This attempt failed (training diverged, bad data, a refused histogram): uses a try.
    Failed(String),
    /// The coordinator gave the lease to someone else (fencing said so): drop the job.
    LeaseLost(String),
}

/// `host-pid`, so two workers on one machine are told apart.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
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

/// Runs until `shutdown` turns true. Returns an error only for what retrying cannot fix
/// (a protocol mismatch, a wrong token).
pub async fn attach(config: AttachConfig, shutdown: watch::Receiver<bool>) -> Result<()> {
    let client = config.client.clone();
    attach_with(config, shutdown, move || {
        let client = client.clone();
        async move { GrpcApi::connect(&client).await }
    })
    .await
}

/// [`attach`] over any [`CoordinatorApi`]; `connect` is called for every (re)connection.
pub async fn attach_with<A, Fut>(
    config: AttachConfig,
    mut shutdown: watch::Receiver<bool>,
    mut connect: impl FnMut() -> Fut,
) -> Result<()>
where
    A: CoordinatorApi,
    Fut: Future<Output = std::result::Result<A, String>>,
{
    let config = Arc::new(config);
    let retry = RetryPolicy::new(shutdown.clone());
    let mut failures = 0;
    // Kept across reconnects, so the coordinator keeps one record per worker process.
    let mut worker_id: Option<String> = None;
    while !*shutdown.borrow() {
        let api = match connect().await {
            Ok(api) => api,
            Err(e) => {
                tracing::warn!("{e}; retrying in {:?}", backoff(failures));
                sleep_or_shutdown(backoff(failures), &mut shutdown).await;
                failures += 1;
                continue;
            }
        };
        let registration = Registration {
            name: config.name.clone(),
            threads: config.run.threads as u32,
            device: format!("{:?}", config.run.device).to_lowercase(),
            previous: worker_id.clone(),
        };
        let registered = match api.register(&registration).await {
            Ok(r) => r,
            Err(e) if e.disposition != Disposition::Retry => {
                return Err(Error::Refused { what: "this worker", message: e.message });
            }
            Err(e) => {
                tracing::warn!("registration failed: {e}; retrying in {:?}", backoff(failures));
                sleep_or_shutdown(backoff(failures), &mut shutdown).await;
                failures += 1;
                continue;
            }
        };
        failures = 0;
        worker_id = Some(registered.worker_id.clone());
        tracing::info!(worker = %registered.worker_id, "registered with {} as {}", config.client.url, config.name);
        let session = Session {
            api,
            retry: retry.clone(),
            worker_id: registered.worker_id,
            heartbeat: registered.heartbeat_interval,
            config: Arc::clone(&config),
        };
        match session.work(&mut shutdown).await {
            SessionEnd::Shutdown => return Ok(()),
            SessionEnd::Fatal(message) => return Err(Error::Refused { what: "a call", message }),
            SessionEnd::Lost(why) => {
                tracing::warn!("lost the coordinator: {why}; reconnecting");
                sleep_or_shutdown(backoff(0), &mut shutdown).await;
            }
        }
    }
    Ok(())
}

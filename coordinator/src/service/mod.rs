//! The gRPC edge over a [`Scheduler`]: both services, their wiring, and [`serve`].
//!
//! # Layout
//! - this module: [`Config`] and [`serve`] / [`serve_with`], which wire the services,
//!   health, reflection, gates and limits into one server.
//! - [`net`]: TLS, the listener with its connection limit.
//! - [`ticker`]: lease expiry and idle-worker clean-up on a timer.
//! - [`storage`]: the store's write health: gRPC health, recovery from a full disk.
//! - [`lanes`]: where a request's store work runs (the hot-path thread, blocking threads)
//!   and when it is acknowledged (after the shared flush).
//! - [`convert`]: protobuf to and from the coordinator's domain types; the only module
//!   here that reads or builds a message field by field.
//! - [`sweeps`], [`workers`]: one file per gRPC service; handlers only parse, call the
//!   scheduler in a lane, and answer.
//! - [`streaming`]: files to and from piece streams (checkpoints).
//! - [`metrics_endpoint`]: `/metrics` over HTTP, gauges read at scrape time.
//! - [`http`]: the read-only HTTP data API (`--http-listen`): status, results, workers.

mod convert;
mod http;
mod lanes;
mod metrics_endpoint;
mod net;
mod storage;
mod streaming;
mod sweeps;
mod ticker;
mod workers;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ibsweep_proto::v1::sweep_service_server::SweepServiceServer;
use ibsweep_proto::v1::worker_service_server::WorkerServiceServer;
use ibsweep_proto::v1::{self as pb};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::checkpoints::CheckpointDir;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::scheduler::{Limits, Scheduler, Timing};
use crate::security::{Security, ServeLimits};
use crate::store::{JobStore, SledStore};

/// What the first piece of a checkpoint upload announces (the request harness replays
/// the upload handler's steps with it).
#[doc(hidden)]
pub use convert::checkpoint_header;
pub use http::serve_http;
pub use metrics_endpoint::serve_metrics;
pub use sweeps::Sweeps;
pub use workers::{Workers, ingest_one};

/// How `coordinator serve` runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sled store's directory; checkpoints go in its `checkpoints/` subdirectory.
    pub data_dir: PathBuf,
    pub checkpoints: CheckpointSettings,
    pub timing: Timing,
    pub limits: Limits,
    pub options: ServeOptions,
    /// Where to serve Prometheus metrics (`/metrics`), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where to serve the HTTP data API, if anywhere.
    pub http_listen: Option<std::net::SocketAddr>,
}

/// What happens to checkpoints.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointSettings {
    /// Keep a finished job's last checkpoint for export.
    pub keep_final: bool,
    pub max_bytes: u64,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings { keep_final: false, max_bytes: crate::checkpoints::DEFAULT_MAX_CHECKPOINT_BYTES }
    }
}

/// Security and resource limits of the server, apart from the store.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub security: Security,
    pub limits: ServeLimits,
}

/// Serves both services (plus gRPC health and reflection) on `listener` until `shutdown`
/// completes, with the sled store in `config.data_dir`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let dir = config.data_dir.clone();
    let (timing, limits, options, kept) = (config.timing, config.limits, config.options, config.checkpoints);
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr} for metrics: {e}")))?,
        ),
        None => None,
    };
    let http_listener = match config.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr} for the HTTP API: {e}")))?,
        ),
        None => None,
    };
    let scheduler = tokio::task::spawn_blocking(move || {
        let store = SledStore::open(&dir)?;
        let store = check_at_start(store)?;
        let checkpoints = CheckpointDir::open(dir.join("checkpoints"), kept.keep_final, kept.max_bytes)?;
        Scheduler::open(store, Arc::new(SystemClock) as Arc<dyn Clock>, timing)?
            .with_limits(limits)
            .with_checkpoints(checkpoints)
    })
    .await
    .map_err(|e| Error::Store(e.to_string()))??;
    let scheduler = Arc::new(scheduler);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = metrics_listener.map(|l| {
        let mut stopped = stopped.clone();
        tokio::spawn(serve_metrics(l, Arc::clone(&scheduler), scheduler.metrics(), async move {
            let _ = stopped.changed().await;
        }))
    });
    let http = http_listener.map(|l| {
        let mut stopped = stopped.clone();
        let (user_gate, _) = options.security.gates();
        tokio::spawn(serve_http(l, Arc::clone(&scheduler), user_gate, async move {
            let _ = stopped.changed().await;
        }))
    });
    let result = serve_with(listener, scheduler, options, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    for task in [metrics, http].into_iter().flatten() {
        let _ = task.await;
    }
    result
}

/// Refuses a store whose records are damaged or disagree with each other, before anything
/// is written to it or served from it.
fn check_at_start(store: SledStore) -> Result<SledStore> {
    let started = std::time::Instant::now();
    let dir = store.path().display().to_string();
    let inspected = Scheduler::inspect(store);
    let damaged = |detail: String| Error::Damaged { dir: dir.clone(), detail };
    let problems = inspected.audit().map_err(|e| damaged(e.to_string()))?;
    if let Some(first) = problems.first() {
        return Err(damaged(format!("{} inconsistencies, the first: {first}", problems.len())));
    }
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "store checked at start");
    Ok(inspected.into_store())
}

/// [`serve`] over any store and clock (tests use memory and a manual clock).
pub async fn serve_with<S: JobStore>(
    listener: TcpListener,
    scheduler: Arc<Scheduler<S>>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let ticker = ticker::start(Arc::clone(&scheduler));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<SweepServiceServer<Sweeps<S>>>().await;
    health_reporter.set_serving::<WorkerServiceServer<Workers<S>>>().await;
    let lost = Arc::new(storage::Lost::default());
    let watcher = storage::start(Arc::clone(&scheduler), health_reporter, Arc::clone(&lost));
    let shutdown = {
        let lost = Arc::clone(&lost);
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = lost.stop.notified() => {}
            }
        }
    };
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Store(format!("reflection: {e}")))?;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let limits = options.limits;
    let (user_gate, worker_gate) = options.security.gates();
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(limits.max_streams as usize)
        .load_shed(true)
        .max_concurrent_streams(limits.max_streams)
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)));
    if let Some(tls) = &options.security.tls {
        builder = builder.tls_config(net::tls_config(tls)?).map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?;
    }
    let scheme = if options.security.tls.is_some() { "https" } else { "http" };
    tracing::info!("coordinator listening on {scheme}://{addr}");
    let sweeps = SweepServiceServer::new(Sweeps::new(Arc::clone(&scheduler)))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_request_bytes);
    let workers = WorkerServiceServer::new(Workers::new(Arc::clone(&scheduler)))
        .max_decoding_message_size(limits.max_upload_bytes)
        .max_encoding_message_size(limits.max_upload_bytes);
    let result = builder
        .layer(crate::metrics::RpcTimerLayer(scheduler.metrics()))
        .add_service(health)
        .add_service(InterceptedService::new(reflection, user_gate.clone().for_generic_clients()))
        .add_service(InterceptedService::new(sweeps, user_gate))
        .add_service(InterceptedService::new(workers, worker_gate))
        .serve_with_incoming_shutdown(net::limited(listener, limits.max_connections), shutdown)
        .await;
    ticker.abort();
    watcher.abort();
    if let Some(e) = lost.take() {
        return Err(e);
    }
    let s = Arc::clone(&scheduler);
    tokio::task::spawn_blocking(move || s.flush()).await.map_err(|e| Error::Store(e.to_string()))??;
    result.map_err(|e| Error::Store(format!("server: {e}")))
}

//! The two gRPC services over a [`Scheduler`], and [`serve`]. Store work runs on blocking
//! threads (sled flushes to disk); proto types are converted here, at the edge, and nowhere
//! else.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ibsweep_proto::PROTOCOL_VERSION;
use ibsweep_proto::v1::sweep_service_server::{SweepService, SweepServiceServer};
use ibsweep_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::job::Split;
use ibsweep_shared::results::Measurement;
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::checkpoints::CheckpointDir;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::ids::{Claim, JobId, LeaseToken, SweepId, WorkerId};
use crate::records::WorkerRecord;
use crate::scheduler::{CheckpointHeader, Chunk, Limits, Scheduler, SweepStatus, Timing, deferring};
use crate::security::{Security, ServeLimits, TlsFiles};
use crate::store::{JobStore, SledStore};

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
    let scheduler = tokio::task::spawn_blocking(move || {
        let store = SledStore::open(&dir)?;
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
        tokio::spawn(crate::metrics::serve_metrics(l, Arc::clone(&scheduler), scheduler.metrics(), async move {
            let _ = stopped.changed().await;
        }))
    });
    let result = serve_with(listener, scheduler, options, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    if let Some(task) = metrics {
        let _ = task.await;
    }
    result
}

/// [`serve`] over any store and clock (tests use memory and a manual clock).
pub async fn serve_with<S: JobStore>(
    listener: TcpListener,
    scheduler: Arc<Scheduler<S>>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let expiry = {
        let scheduler = Arc::clone(&scheduler);
        let period = Duration::from_millis((scheduler.timing().heartbeat_interval_ms / 2).max(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            let mut last_cleanup = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let s = Arc::clone(&scheduler);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.expire_leases()).await {
                    tracing::error!("lease expiry failed: {e}");
                }
                if last_cleanup.elapsed() >= Duration::from_secs(60) {
                    last_cleanup = tokio::time::Instant::now();
                    let s = Arc::clone(&scheduler);
                    match tokio::task::spawn_blocking(move || s.forget_idle_workers()).await {
                        Ok(Ok(n)) if n > 0 => tracing::info!("forgot {n} workers not seen for the worker timeout"),
                        Ok(Err(e)) => tracing::error!("worker clean-up failed: {e}"),
                        _ => {}
                    }
                }
            }
        })
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<SweepServiceServer<Sweeps<S>>>().await;
    health_reporter.set_serving::<WorkerServiceServer<Workers<S>>>().await;
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
        builder = builder.tls_config(tls_config(tls)?).map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?;
    }
    let scheme = if options.security.tls.is_some() { "https" } else { "http" };
    tracing::info!("coordinator listening on {scheme}://{addr}");
    let sweeps = SweepServiceServer::new(Sweeps(Arc::clone(&scheduler)))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_request_bytes);
    let workers = WorkerServiceServer::new(Workers::new(Arc::clone(&scheduler)))
        .max_decoding_message_size(limits.max_upload_bytes)
        .max_encoding_message_size(limits.max_upload_bytes);
    let result = builder
        .layer(crate::metrics::RpcTimerLayer(scheduler.metrics()))
        .add_service(health)
        .add_service(InterceptedService::new(reflection, user_gate.clone()))
        .add_service(InterceptedService::new(sweeps, user_gate))
        .add_service(InterceptedService::new(workers, worker_gate))
        .serve_with_incoming_shutdown(limited(listener, limits.max_connections), shutdown)
        .await;
    expiry.abort();
    let s = Arc::clone(&scheduler);
    tokio::task::spawn_blocking(move || s.flush()).await.map_err(|e| Error::Store(e.to_string()))??;
    result.map_err(|e| Error::Store(format!("server: {e}")))
}

fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read the TLS {what} {}: {e}", path.display())))
    };
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&files.cert, "certificate")?, read(&files.key, "key")?));
    if let Some(ca) = &files.client_ca {
        // Optional at the TLS layer so people's commands need no certificate; the worker
        // service's gate requires one.
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA")?)).client_auth_optional(true);
    }
    Ok(tls)
}

/// A connection counted against `--max-connections` until it closes.
struct Limited {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

/// Accepted connections, at most `max` open at once: one more is closed at accept, and
/// logged, so a flood of idle connections cannot exhaust the coordinator's descriptors.
fn limited(listener: TcpListener, max: usize) -> impl Stream<Item = std::io::Result<Limited>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    TcpListenerStream::new(listener).filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(stream) => match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                // Small gRPC responses must not wait for the peer's delayed ACK (Nagle):
                // without this a Lease answer took 40 ms.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!("cannot set TCP_NODELAY: {e}");
                }
                Some(Ok(Limited { stream, _permit: permit }))
            }
            Err(_) => {
                let peer = stream.peer_addr().map_or_else(|_| "unknown peer".into(), |a| a.to_string());
                tracing::warn!(peer = %peer, "refused a connection: {max} are open (--max-connections)");
                None
            }
        },
    })
}

/// Runs store work off the async runtime.
async fn blocking<S: JobStore, T: Send + 'static>(
    scheduler: &Arc<Scheduler<S>>,
    work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
) -> Result<T, Status> {
    let s = Arc::clone(scheduler);
    match tokio::task::spawn_blocking(move || work(&s)).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("store task failed: {e}"))),
    }
}

/// One thread that runs every hot-path transition (a lease, a heartbeat, a failure: a few
/// keys, no scans) back to back, with its flush deferred; the caller awaits the answer, then
/// durability with every other request ([`Scheduler::durable`]).
///
/// Why a thread of its own: these transitions are serialized by the scheduler's index lock
/// anyway. Run inline on the runtime's two threads, the one that lost the race for the lock
/// blocked, and with it the network work it could have done, and each hand-over of the lock
/// waited for a sleeping thread to be scheduled. Queued to one thread they never contend,
/// and the runtime only does I/O. Measured in docs/benchmarks.md.
#[derive(Debug)]
struct HotPath {
    queue: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl HotPath {
    /// The thread ends when the service (the only sender) is dropped; it holds no
    /// scheduler of its own, so a stopped server leaves its store closed.
    fn start() -> HotPath {
        let (queue, jobs) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("ibsweep-hot".into())
            .spawn(move || {
                for job in jobs {
                    // A panicking transition drops its answer (its caller gets INTERNAL);
                    // the others go on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .expect("start the hot-path thread");
        HotPath { queue }
    }

    async fn run<S: JobStore, T: Send + 'static>(
        &self,
        scheduler: &Arc<Scheduler<S>>,
        work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let s = Arc::clone(scheduler);
        self.queue
            .send(Box::new(move || {
                let _ = answer.send(deferring(|| work(&s)));
            }))
            .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
        let (result, needs_flush) = answered
            .await
            .map_err(|_| Status::internal("the transition failed unexpectedly (see the coordinator's log)"))?;
        let value = result.map_err(Status::from)?;
        if needs_flush {
            scheduler.durable().await.map_err(Status::from)?;
        }
        Ok(value)
    }
}

/// Heavier work on a blocking thread, acknowledged after an awaited, shared flush.
async fn blocking_durable<S: JobStore, T: Send + 'static>(
    scheduler: &Arc<Scheduler<S>>,
    work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
) -> Result<T, Status> {
    let s = Arc::clone(scheduler);
    let (result, needs_flush) = tokio::task::spawn_blocking(move || deferring(|| work(&s)))
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?;
    let value = result.map_err(Status::from)?;
    if needs_flush {
        scheduler.durable().await.map_err(Status::from)?;
    }
    Ok(value)
}

fn parse<T: std::str::FromStr<Err = Error>>(s: &str) -> Result<T, Status> {
    s.parse().map_err(Status::from)
}

fn optional_id<T: std::str::FromStr<Err = Error>>(s: &str) -> Result<Option<T>, Status> {
    if s.is_empty() { Ok(None) } else { parse(s).map(Some) }
}

fn optional_sweep(s: &str) -> Result<Option<SweepId>, Status> {
    optional_id(s)
}

fn to_pb_status(s: SweepStatus) -> pb::SweepStatus {
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
            .map(|(job, params, reasons)| pb::Failure { job_id: job.to_string(), params_json: params, reasons })
            .collect(),
        created_ms: r.created_ms,
        cancelled: r.cancelled,
        running: s.running.into_iter().map(to_pb_running).collect(),
    }
}

fn to_pb_running(job: crate::lifecycle::Job) -> pb::RunningJob {
    let (worker, epoch) = match &job.state {
        crate::lifecycle::JobState::Running { lease, epoch_reached, .. } => (lease.worker_name.clone(), *epoch_reached),
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

fn to_pb_worker(w: WorkerRecord) -> pb::WorkerInfo {
    pb::WorkerInfo {
        worker_id: w.id.to_string(),
        name: w.name,
        job_id: w.job.map(|j| j.to_string()).unwrap_or_default(),
        last_seen_ms: w.last_seen_ms,
        threads: w.threads,
        epoch: w.epoch,
    }
}

fn status_snapshot<S: JobStore>(s: &Scheduler<S>, sweep: Option<SweepId>) -> Result<pb::StatusResponse> {
    Ok(pb::StatusResponse {
        sweeps: s.status(sweep)?.into_iter().map(to_pb_status).collect(),
        workers: s.workers()?.into_iter().map(to_pb_worker).collect(),
        now_ms: s.now_ms(),
    })
}

/// The people-facing service.
#[derive(Debug)]
pub struct Sweeps<S: JobStore>(Arc<Scheduler<S>>);

impl<S: JobStore> Sweeps<S> {
    /// The service over `scheduler` (fuzz targets call its handlers directly).
    pub fn new(scheduler: Arc<Scheduler<S>>) -> Sweeps<S> {
        Sweeps(scheduler)
    }
}

/// Result rows read from the store per step of a Results stream.
const RESULTS_PAGE: usize = 2048;

/// Longest grid file name accepted (the file's contents are bounded by the grid parser).
const MAX_FILE_NAME: usize = 4096;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<S: JobStore> SweepService for Sweeps<S> {
    async fn submit(&self, request: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let r = request.into_inner();
        if r.file_name.len() > MAX_FILE_NAME {
            return Err(Status::invalid_argument(format!(
                "file name of {} bytes; at most {MAX_FILE_NAME}",
                r.file_name.len()
            )));
        }
        let file = if r.file_name.is_empty() { "grid.yaml".to_string() } else { r.file_name };
        let submitted = blocking(&self.0, move |s| s.submit(&file, &r.grid_yaml)).await?;
        tracing::info!(sweep = %submitted.sweep_id, jobs = submitted.jobs, created = submitted.created, "submit {}", submitted.name);
        Ok(Response::new(pb::SubmitResponse {
            sweep_id: submitted.sweep_id.to_string(),
            jobs: submitted.jobs,
            created: submitted.created,
            name: submitted.name,
        }))
    }

    async fn status(&self, request: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let sweep = optional_sweep(&request.into_inner().sweep_id)?;
        Ok(Response::new(blocking(&self.0, move |s| status_snapshot(s, sweep)).await?))
    }

    type WatchStream = BoxStream<pb::StatusResponse>;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let sweep = optional_sweep(&r.sweep_id)?;
        let interval = Duration::from_millis(u64::from(if r.interval_ms == 0 { 1000 } else { r.interval_ms.max(100) }));
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let scheduler = Arc::clone(&self.0);
        tokio::spawn(async move {
            loop {
                let snapshot = blocking(&scheduler, move |s| status_snapshot(s, sweep)).await;
                if tx.send(snapshot).await.is_err() {
                    return; // the client went away
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ResultsStream = BoxStream<pb::ResultRow>;

    async fn results(&self, request: Request<pb::ResultsRequest>) -> Result<Response<Self::ResultsStream>, Status> {
        let r = request.into_inner();
        let sweep: SweepId = parse(&r.sweep_id)?;
        let filters: Vec<(String, String)> = r.filters.into_iter().map(|f| (f.key, f.value)).collect();
        // The first page is read before answering, so an unknown sweep or column is the
        // call's error; later pages stream as the client reads (a page at a time in memory).
        let first = {
            let filters = filters.clone();
            blocking(&self.0, move |s| s.results_page(sweep, &filters, None, RESULTS_PAGE)).await?
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let scheduler = Arc::clone(&self.0);
        tokio::spawn(async move {
            let mut page = first;
            loop {
                for row in page.rows {
                    let item = serde_json::to_string(&row)
                        .map(|json| pb::ResultRow { json })
                        .map_err(|e| Status::internal(e.to_string()));
                    if tx.send(item).await.is_err() {
                        return; // the client went away
                    }
                }
                let Some(after) = page.next else { return };
                let filters = filters.clone();
                match blocking(&scheduler, move |s| s.results_page(sweep, &filters, Some(&after), RESULTS_PAGE)).await {
                    Ok(next) => page = next,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel(&self, request: Request<pb::CancelRequest>) -> Result<Response<pb::CancelResponse>, Status> {
        let sweep: SweepId = parse(&request.into_inner().sweep_id)?;
        let cancelled = blocking(&self.0, move |s| s.cancel(sweep)).await?;
        Ok(Response::new(pb::CancelResponse { cancelled }))
    }

    async fn retry(&self, request: Request<pb::RetryRequest>) -> Result<Response<pb::RetryResponse>, Status> {
        let r = request.into_inner();
        if !r.failed {
            return Err(Status::invalid_argument("retry needs --failed (the only selection so far)"));
        }
        let sweep: SweepId = parse(&r.sweep_id)?;
        let requeued = blocking(&self.0, move |s| s.retry_failed(sweep)).await?;
        Ok(Response::new(pb::RetryResponse { requeued }))
    }

    async fn workers(&self, _request: Request<pb::WorkersRequest>) -> Result<Response<pb::WorkersResponse>, Status> {
        let (workers, now_ms) = blocking(&self.0, |s| Ok((s.workers()?, s.now_ms()))).await?;
        Ok(Response::new(pb::WorkersResponse { workers: workers.into_iter().map(to_pb_worker).collect(), now_ms }))
    }

    type CheckpointStream = BoxStream<pb::ExportCheckpointPiece>;

    async fn checkpoint(
        &self,
        request: Request<pb::ExportCheckpointRequest>,
    ) -> Result<Response<Self::CheckpointStream>, Status> {
        let job: JobId = parse(&request.into_inner().job_id)?;
        let (checkpoint, path) = blocking(&self.0, move |s| s.export_checkpoint(job)).await?;
        let info = pb::CheckpointMeta { epoch: checkpoint.epoch, size: checkpoint.size, sha256: checkpoint.sha256 };
        Ok(Response::new(stream_file(path, move |first, data| pb::ExportCheckpointPiece {
            info: first.then(|| info.clone()),
            data,
        })))
    }
}

/// One histogram piece from the wire into the store: what UploadHistograms does with each
/// message of its stream. True when the piece was new.
pub fn ingest_one<S: JobStore>(scheduler: &Scheduler<S>, chunk: pb::HistogramChunk) -> Result<bool, Status> {
    let chunk = Chunk::try_from(chunk)?;
    scheduler.ingest(&chunk).map_err(Status::from)
}

/// The worker-facing service.
#[derive(Debug)]
pub struct Workers<S: JobStore> {
    scheduler: Arc<Scheduler<S>>,
    hot: HotPath,
}

impl<S: JobStore> Workers<S> {
    /// The service over `scheduler` (fuzz targets call its handlers directly).
    pub fn new(scheduler: Arc<Scheduler<S>>) -> Workers<S> {
        Workers { scheduler, hot: HotPath::start() }
    }

    async fn fast<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        self.hot.run(&self.scheduler, work).await
    }
}

/// The worker's claim on a lease, from the fields every job call carries.
fn claim(worker: &str, token: u64, secret: &str) -> Result<Claim, Status> {
    Ok(Claim { worker: parse(worker)?, token: LeaseToken(token), secret: parse(secret)? })
}

fn split_of(s: &str) -> Result<Split, Status> {
    match s {
        "train" => Ok(Split::Train),
        "test" => Ok(Split::Test),
        other => Err(Status::invalid_argument(format!("split `{other}`: expected train or test"))),
    }
}

impl TryFrom<pb::HistogramChunk> for Chunk {
    type Error = Status;
    fn try_from(c: pb::HistogramChunk) -> Result<Self, Status> {
        Ok(Chunk {
            job_id: parse(&c.job_id)?,
            claim: claim(&c.worker_id, c.fencing_token, &c.lease_secret)?,
            sequence: c.sequence,
            key: Measurement {
                epoch: c.epoch,
                split: split_of(&c.split)?,
                layer: c.layer,
                layer_name: c.layer_name,
                bin_size: c.bin_size,
                loss: c.loss,
                accuracy: c.accuracy,
            },
            histogram: c.histogram,
            piece: c.piece,
            pieces: c.pieces,
        })
    }
}

#[tonic::async_trait]
impl<S: JobStore> WorkerService for Workers<S> {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Error::ProtocolMismatch { got: r.protocol_version, want: PROTOCOL_VERSION }.into());
        }
        let name = r.name.clone();
        let previous = optional_id::<WorkerId>(&r.previous_worker_id)?;
        let registration =
            blocking(&self.scheduler, move |s| s.register(&r.name, r.threads, &r.device, previous)).await?;
        let id = registration.id;
        if registration.reused {
            tracing::info!(worker = %id, "worker {name} registered again (reconnected)");
        } else {
            tracing::info!(worker = %id, "worker {name} registered");
        }
        let timing = self.scheduler.timing();
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id.to_string(),
            heartbeat_interval_ms: timing.heartbeat_interval_ms as u32,
            lease_ttl_ms: timing.lease_ttl_ms as u32,
        }))
    }

    async fn lease(&self, request: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseResponse>, Status> {
        let worker: WorkerId = parse(&request.into_inner().worker_id)?;
        let grant = self.fast(move |s| s.lease(worker)).await?;
        let lease = match grant {
            Some(g) => {
                tracing::info!(job = %g.job_id, token = %g.token, attempt = g.attempt, "leased to {worker}");
                Some(pb::Lease {
                    job_id: g.job_id.to_string(),
                    sweep_id: g.sweep_id.to_string(),
                    fencing_token: g.token.0,
                    lease_secret: g.secret.expose(),
                    attempt: g.attempt,
                    spec_json: serde_json::to_string(&g.spec).map_err(|e| Status::internal(e.to_string()))?,
                    deadline_ms: g.deadline_ms,
                    resume: g.resume.map(|c| pb::CheckpointInfo { epoch: c.epoch, size: c.size, sha256: c.sha256 }),
                    final_checkpoint: self.scheduler.keeps_final_checkpoints() && g.spec.checkpoint_every > 0,
                })
            }
            None => None,
        };
        Ok(Response::new(pb::LeaseResponse { lease, retry_after_ms: 1000 }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let job: JobId = parse(&r.job_id)?;
        let claim = claim(&r.worker_id, r.fencing_token, &r.lease_secret)?;
        let beat = self.fast(move |s| s.heartbeat(&claim, job, r.epoch)).await?;
        Ok(Response::new(pb::HeartbeatResponse { cancelled: beat.cancelled, deadline_ms: beat.deadline_ms }))
    }

    async fn upload_histograms(
        &self,
        request: Request<Streaming<pb::HistogramChunk>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let mut stream = request.into_inner();
        let (mut accepted, mut duplicates) = (0, 0);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let scheduler = Arc::clone(&self.scheduler);
            let ingested = tokio::task::spawn_blocking(move || ingest_one(&scheduler, chunk))
                .await
                .map_err(|e| Status::internal(format!("store task failed: {e}")))??;
            if ingested {
                accepted += 1;
            } else {
                duplicates += 1;
            }
        }
        // Acknowledge only what is on disk.
        self.scheduler.durable().await?;
        Ok(Response::new(pb::UploadResponse { accepted, duplicates }))
    }

    async fn complete(&self, request: Request<pb::CompleteRequest>) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = request.into_inner();
        let job: JobId = parse(&r.job_id)?;
        let claim = claim(&r.worker_id, r.fencing_token, &r.lease_secret)?;
        let rows = blocking_durable(&self.scheduler, move |s| {
            s.complete(&claim, job, (&r.train_indices_hash, &r.test_indices_hash), r.chunks)
        })
        .await?;
        tracing::info!(job = %job, rows, "job done");
        Ok(Response::new(pb::CompleteResponse { rows }))
    }

    async fn fail(&self, request: Request<pb::FailRequest>) -> Result<Response<pb::FailResponse>, Status> {
        let r = request.into_inner();
        let job: JobId = parse(&r.job_id)?;
        let claim = claim(&r.worker_id, r.fencing_token, &r.lease_secret)?;
        let shown: String = r.reason.chars().take(200).collect();
        tracing::warn!(job = %job, release = r.release, "job ended without results: {shown}");
        self.fast(move |s| s.fail(&claim, job, &r.reason, r.release)).await?;
        Ok(Response::new(pb::FailResponse {}))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<Streaming<pb::CheckpointPiece>>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream.next().await.ok_or_else(|| Status::invalid_argument("empty checkpoint upload"))??;
        let (Some(c), Some(info)) = (first.claim, first.info) else {
            return Err(Status::invalid_argument("the first checkpoint piece must carry the claim and the info"));
        };
        let header = CheckpointHeader {
            job_id: parse(&c.job_id)?,
            claim: claim(&c.worker_id, c.fencing_token, &c.lease_secret)?,
            epoch: info.epoch,
            size: info.size,
            sha256: info.sha256,
        };
        // The file is written on one blocking thread; pieces reach it through a channel,
        // so a slow disk holds back the stream instead of piling pieces up in memory.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let writer = {
            let scheduler = Arc::clone(&self.scheduler);
            tokio::task::spawn_blocking(move || {
                let mut incoming = scheduler.begin_checkpoint(&header)?;
                while let Some(bytes) = rx.blocking_recv() {
                    incoming.write(&bytes)?;
                }
                scheduler.finish_checkpoint(&header, incoming)
            })
        };
        let mut failed = None;
        if !first.data.is_empty() {
            let _ = tx.send(first.data).await;
        }
        while let Some(piece) = stream.next().await {
            match piece {
                Ok(p) => {
                    if tx.send(p.data).await.is_err() {
                        break; // the writer refused; its error is the answer
                    }
                }
                Err(status) => {
                    failed = Some(status);
                    break;
                }
            }
        }
        // A broken stream closes the channel early: the writer then finds fewer bytes than
        // announced, refuses to finish, and its partial file is removed.
        drop(tx);
        if let Some(status) = failed {
            let _ = writer.await;
            return Err(status);
        }
        let committed = writer.await.map_err(|e| Status::internal(format!("checkpoint task failed: {e}")))??;
        Ok(Response::new(pb::CheckpointResponse { committed }))
    }

    type DownloadCheckpointStream = BoxStream<pb::CheckpointPiece>;

    async fn download_checkpoint(
        &self,
        request: Request<pb::CheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        let r = request.into_inner();
        let job: JobId = parse(&r.job_id)?;
        let claim = claim(&r.worker_id, r.fencing_token, &r.lease_secret)?;
        let (checkpoint, path) = blocking(&self.scheduler, move |s| s.resume_checkpoint(&claim, job)).await?;
        let info = pb::CheckpointInfo { epoch: checkpoint.epoch, size: checkpoint.size, sha256: checkpoint.sha256 };
        let stream = stream_file(path, move |first, data| pb::CheckpointPiece {
            claim: None,
            info: first.then(|| info.clone()),
            data,
        });
        Ok(Response::new(stream))
    }

    async fn discard_checkpoint(
        &self,
        request: Request<pb::DiscardCheckpointRequest>,
    ) -> Result<Response<pb::DiscardCheckpointResponse>, Status> {
        let r = request.into_inner();
        let c = r.claim.ok_or_else(|| Status::invalid_argument("the claim is missing"))?;
        let job: JobId = parse(&c.job_id)?;
        let claim = claim(&c.worker_id, c.fencing_token, &c.lease_secret)?;
        blocking(&self.scheduler, move |s| s.discard_checkpoint(&claim, job, &r.reason)).await?;
        Ok(Response::new(pb::DiscardCheckpointResponse {}))
    }
}

/// Streams a file in 1 MiB pieces read on a blocking thread; `piece(first, bytes)` makes
/// each message.
fn stream_file<T: Send + 'static>(path: PathBuf, piece: impl Fn(bool, Vec<u8>) -> T + Send + 'static) -> BoxStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<T, Status>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(Status::internal(format!("{}: {e}", path.display()))));
                return;
            }
        };
        let mut first = true;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf) {
                Ok(0) if !first => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(piece(first, buf))).is_err() {
                        return;
                    }
                    first = false;
                    if n == 0 {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(format!("{}: {e}", path.display()))));
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

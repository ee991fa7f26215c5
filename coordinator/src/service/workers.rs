//! The worker-facing service: registration, leases, heartbeats, histograms, endings and
//! checkpoints. Every call about a job presents its [`pb::LeaseClaim`].

use std::sync::Arc;

use ibsweep_proto::PROTOCOL_VERSION;
use ibsweep_proto::v1::worker_service_server::WorkerService;
use ibsweep_proto::v1::{self as pb};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, parse};
use super::lanes::{HotPath, blocking, blocking_durable};
use super::streaming::{BoxStream, checkpoint_pieces, receive_checkpoint};
use crate::error::{Error, Result};
use crate::ids::WorkerId;
use crate::scheduler::{Chunk, Scheduler};
use crate::store::JobStore;

/// How long an idle worker waits before asking for work again.
const RETRY_AFTER_MS: u32 = 1000;

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

#[tonic::async_trait]
impl<S: JobStore> WorkerService for Workers<S> {
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Error::ProtocolMismatch { got: r.protocol_version.to_string(), want: PROTOCOL_VERSION }.into());
        }
        let name = r.name.clone();
        let previous = convert::previous_worker(&r.previous_worker_id)?;
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
        let lease = grant.map(|g| {
            tracing::info!(job = %g.job_id, token = %g.token, attempt = g.attempt, "leased to {worker}");
            let final_checkpoint = self.scheduler.keeps_final_checkpoints() && g.spec.checkpoint_every > 0;
            convert::lease(&g, final_checkpoint)
        });
        Ok(Response::new(pb::LeaseResponse { lease, retry_after_ms: RETRY_AFTER_MS }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let (job, claim) = convert::claim(r.claim)?;
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
        let (job, claim) = convert::claim(r.claim)?;
        let rows = blocking_durable(&self.scheduler, move |s| {
            s.complete(&claim, job, (&r.train_indices_hash, &r.test_indices_hash), r.chunks)
        })
        .await?;
        tracing::info!(job = %job, rows, "job done");
        Ok(Response::new(pb::CompleteResponse { rows }))
    }

    async fn fail(&self, request: Request<pb::FailRequest>) -> Result<Response<pb::FailResponse>, Status> {
        let r = request.into_inner();
        let (job, claim) = convert::claim(r.claim)?;
        let shown: String = r.reason.chars().take(200).collect();
        tracing::warn!(job = %job, release = r.release, "job ended without results: {shown}");
        self.fast(move |s| s.fail(&claim, job, &r.reason, r.release)).await?;
        Ok(Response::new(pb::FailResponse {}))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<Streaming<pb::UploadCheckpointPiece>>,
    ) -> Result<Response<pb::UploadCheckpointResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream.next().await.ok_or_else(|| Status::invalid_argument("empty checkpoint upload"))??;
        let (header, data) = convert::checkpoint_header(first)?;
        let committed = receive_checkpoint(&self.scheduler, header, data, stream).await?;
        Ok(Response::new(pb::UploadCheckpointResponse { committed }))
    }

    type DownloadCheckpointStream = BoxStream<pb::CheckpointPiece>;

    async fn download_checkpoint(
        &self,
        request: Request<pb::DownloadCheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        let (job, claim) = convert::claim(request.into_inner().claim)?;
        let (checkpoint, path) = blocking(&self.scheduler, move |s| s.resume_checkpoint(&claim, job)).await?;
        Ok(Response::new(checkpoint_pieces(path, convert::checkpoint_info(&checkpoint))))
    }

    async fn discard_checkpoint(
        &self,
        request: Request<pb::DiscardCheckpointRequest>,
    ) -> Result<Response<pb::DiscardCheckpointResponse>, Status> {
        let r = request.into_inner();
        let (job, claim) = convert::claim(r.claim)?;
        blocking(&self.scheduler, move |s| s.discard_checkpoint(&claim, job, &r.reason)).await?;
        Ok(Response::new(pb::DiscardCheckpointResponse {}))
    }
}

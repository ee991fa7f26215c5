//! The people-facing service: submit, follow, query, control.

use std::sync::Arc;
use std::time::Duration;

use ibsweep_proto::v1::sweep_service_server::SweepService;
use ibsweep_proto::v1::{self as pb};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{self, parse};
use super::lanes::blocking;
use super::streaming::{BoxStream, checkpoint_pieces};
use crate::error::Result;
use crate::ids::{JobId, SweepId};
use crate::scheduler::Scheduler;
use crate::store::JobStore;

/// Result rows read from the store per step of a Results stream.
const RESULTS_PAGE: usize = 2048;

/// Jobs read per step of a Jobs stream.
const JOBS_PAGE: usize = 512;

/// Longest grid file name accepted (the file's contents are bounded by the grid parser).
const MAX_FILE_NAME: usize = 4096;

/// The people-facing service.
#[derive(Debug)]
pub struct Sweeps<S: JobStore>(Arc<Scheduler<S>>);

impl<S: JobStore> Sweeps<S> {
    /// The service over `scheduler` (fuzz targets call its handlers directly).
    pub fn new(scheduler: Arc<Scheduler<S>>) -> Sweeps<S> {
        Sweeps(scheduler)
    }
}

pub(super) fn status_snapshot<S: JobStore>(s: &Scheduler<S>, sweep: Option<SweepId>) -> Result<pb::StatusResponse> {
    Ok(pb::StatusResponse {
        sweeps: s.status(sweep)?.into_iter().map(convert::sweep_status).collect(),
        workers: s.workers()?.into_iter().map(convert::worker).collect(),
        now_ms: s.now_ms(),
        store_problem: s.write_refusal().map(|e| e.to_string()).unwrap_or_default(),
    })
}

/// Streams pages of a paged query: `first` is read before answering (so an unknown
/// sweep or column is the call's own error); the rest are read as the client reads, one
/// page in memory at a time. `read(cursor)` gives a page's items and the next cursor.
fn paged<S, C, T>(
    scheduler: &Arc<Scheduler<S>>,
    first: (Vec<T>, Option<C>),
    read: impl Fn(&Scheduler<S>, C) -> Result<(Vec<T>, Option<C>)> + Send + Sync + Clone + 'static,
) -> BoxStream<T>
where
    S: JobStore,
    C: Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let scheduler = Arc::clone(scheduler);
    tokio::spawn(async move {
        let (mut items, mut next) = first;
        loop {
            for item in items {
                if tx.send(Ok(item)).await.is_err() {
                    return; // the client went away
                }
            }
            let Some(cursor) = next else { return };
            let read = read.clone();
            match blocking(&scheduler, move |s| read(s, cursor)).await {
                Ok(page) => (items, next) = page,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

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
        let sweep = convert::optional_sweep(&request.into_inner().sweep_id)?;
        Ok(Response::new(blocking(&self.0, move |s| status_snapshot(s, sweep)).await?))
    }

    type WatchStream = BoxStream<pb::StatusResponse>;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let sweep = convert::optional_sweep(&r.sweep_id)?;
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
        let filters: Arc<Vec<(String, String)>> = Arc::new(r.filters.into_iter().map(|f| (f.key, f.value)).collect());
        let read = move |s: &Scheduler<S>, after: Option<Vec<u8>>| {
            let page = s.results_page(sweep, &filters, after.as_deref(), RESULTS_PAGE)?;
            Ok((page.rows.iter().map(pb::ResultRow::from).collect(), page.next.map(Some)))
        };
        let first = {
            let read = read.clone();
            blocking(&self.0, move |s| read(s, None)).await?
        };
        Ok(Response::new(paged(&self.0, first, read)))
    }

    type JobsStream = BoxStream<pb::JobInfo>;

    async fn jobs(&self, request: Request<pb::JobsRequest>) -> Result<Response<Self::JobsStream>, Status> {
        let sweep: SweepId = parse(&request.into_inner().sweep_id)?;
        let read = move |s: &Scheduler<S>, from: u64| {
            let (jobs, next) = s.jobs_page(sweep, from, JOBS_PAGE)?;
            Ok((jobs.into_iter().map(|(job, spec)| convert::job_info(job, &spec)).collect(), next))
        };
        let first = {
            let read = read.clone();
            blocking(&self.0, move |s| read(s, 0)).await?
        };
        Ok(Response::new(paged(&self.0, first, read)))
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
        Ok(Response::new(pb::WorkersResponse { workers: workers.into_iter().map(convert::worker).collect(), now_ms }))
    }

    type ExportCheckpointStream = BoxStream<pb::CheckpointPiece>;

    async fn export_checkpoint(
        &self,
        request: Request<pb::ExportCheckpointRequest>,
    ) -> Result<Response<Self::ExportCheckpointStream>, Status> {
        let job: JobId = parse(&request.into_inner().job_id)?;
        let (checkpoint, path) = blocking(&self.0, move |s| s.export_checkpoint(job)).await?;
        Ok(Response::new(checkpoint_pieces(path, convert::checkpoint_info(&checkpoint))))
    }

    type BackupStream = BoxStream<pb::BackupPiece>;

    /// The snapshot is taken under the commit lock (commits wait for the trees to be read
    /// and the checkpoint files pinned), then written out on a blocking thread as the
    /// client reads it, through a bounded channel.
    async fn backup(&self, _request: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let snapshot = blocking(&self.0, |s| s.snapshot()).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let now = self.0.now_ms();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let sink = PieceSink { tx: tx.clone(), buffer: Vec::with_capacity(PIECE) };
            match snapshot.write(sink, now) {
                Ok(header) => tracing::info!(
                    records = header.records,
                    checkpoints = header.checkpoints,
                    seconds = started.elapsed().as_secs_f64(),
                    "backup sent"
                ),
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::from(e)));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Backup pieces' size.
const PIECE: usize = 1 << 20;

/// A writer that sends what it is given as [`pb::BackupPiece`]s of [`PIECE`] bytes.
struct PieceSink {
    tx: tokio::sync::mpsc::Sender<Result<pb::BackupPiece, Status>>,
    buffer: Vec<u8>,
}

impl PieceSink {
    fn send(&mut self) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(Ok(pb::BackupPiece { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl std::io::Write for PieceSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(PIECE - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() { self.send() } else { Ok(()) }
    }
}

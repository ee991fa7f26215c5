//! The client library the `coordinator` commands use: one connection path (address, TLS,
//! token: [`ibsweep_proto::connect`]) and typed calls whose errors say what to do.

use ibsweep_proto::connect::{Bearer, ClientConfig};
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::results::MiRow;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Errors of client calls, as one line for a person.
pub type ClientResult<T> = anyhow::Result<T>;

/// A connected sweep-service client.
#[derive(Debug, Clone)]
pub struct Client {
    inner: SweepServiceClient<InterceptedService<Channel, Bearer>>,
    url: String,
}

impl Client {
    pub async fn connect(config: &ClientConfig) -> ClientResult<Client> {
        let (channel, bearer) = config.connect().await?;
        let inner = SweepServiceClient::with_interceptor(channel, bearer).max_decoding_message_size(64 << 20);
        Ok(Client { inner, url: config.url.clone() })
    }

    /// One message per status code, naming the fix.
    fn error(&self, s: tonic::Status) -> anyhow::Error {
        let url = &self.url;
        match s.code() {
            tonic::Code::Unavailable => {
                anyhow::anyhow!(
                    "cannot reach the coordinator at {url}: is `coordinator serve` running? ({})",
                    s.message()
                )
            }
            tonic::Code::Unauthenticated => anyhow::anyhow!(
                "the coordinator at {url} refused the call: {} (IBSWEEP_TOKEN or --token-file holds the user token)",
                s.message()
            ),
            tonic::Code::PermissionDenied => {
                anyhow::anyhow!("the coordinator at {url} refused the call: {}", s.message())
            }
            _ => anyhow::anyhow!("{}", s.message()),
        }
    }

    pub async fn submit(&mut self, file_name: String, grid_yaml: String) -> ClientResult<pb::SubmitResponse> {
        let r = self.inner.submit(pb::SubmitRequest { grid_yaml, file_name }).await;
        r.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    pub async fn status(&mut self, sweep: Option<String>) -> ClientResult<pb::StatusResponse> {
        let r = self.inner.status(pb::StatusRequest { sweep_id: sweep.unwrap_or_default() }).await;
        r.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Status snapshots every `interval_ms` until the stream ends.
    pub async fn watch(&mut self, sweep: Option<String>, interval_ms: u32) -> ClientResult<Watch> {
        let r = self.inner.watch(pb::WatchRequest { sweep_id: sweep.unwrap_or_default(), interval_ms }).await;
        let stream = r.map_err(|s| self.error(s))?.into_inner();
        Ok(Watch { stream, client: self.clone() })
    }

    /// Every result row of a sweep matching `key=value` filters.
    pub async fn results(&mut self, sweep: &str, filters: &[String]) -> ClientResult<Vec<MiRow>> {
        let filters = parse_filters(filters)?;
        let r = self.inner.results(pb::ResultsRequest { sweep_id: sweep.to_string(), filters }).await;
        let mut stream = r.map_err(|s| self.error(s))?.into_inner();
        let mut rows = Vec::new();
        while let Some(row) = stream.message().await.map_err(|s| self.error(s))? {
            rows.push(MiRow::try_from(row).map_err(|e| anyhow::anyhow!("the coordinator sent a bad result row: {e}"))?);
        }
        Ok(rows)
    }

    /// Every job of a sweep with its attempts, in expansion order.
    pub async fn jobs(&mut self, sweep: &str) -> ClientResult<Vec<pb::JobInfo>> {
        let r = self.inner.jobs(pb::JobsRequest { sweep_id: sweep.to_string() }).await;
        let mut stream = r.map_err(|s| self.error(s))?.into_inner();
        let mut jobs = Vec::new();
        while let Some(job) = stream.message().await.map_err(|s| self.error(s))? {
            jobs.push(job);
        }
        Ok(jobs)
    }

    pub async fn cancel(&mut self, sweep: &str) -> ClientResult<u64> {
        let r = self.inner.cancel(pb::CancelRequest { sweep_id: sweep.to_string() }).await;
        r.map(|r| r.into_inner().cancelled).map_err(|s| self.error(s))
    }

    pub async fn retry_failed(&mut self, sweep: &str) -> ClientResult<u64> {
        let r = self.inner.retry(pb::RetryRequest { sweep_id: sweep.to_string(), failed: true }).await;
        r.map(|r| r.into_inner().requeued).map_err(|s| self.error(s))
    }

    pub async fn workers(&mut self) -> ClientResult<pb::WorkersResponse> {
        let r = self.inner.workers(pb::WorkersRequest {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// A snapshot of the whole store, written to `out` as it arrives; returns its bytes.
    pub async fn backup(&mut self, out: &mut dyn std::io::Write) -> ClientResult<u64> {
        use tokio_stream::StreamExt;
        let r = self.inner.backup(pb::BackupRequest {}).await;
        let mut stream = r.map_err(|s| self.error(s))?.into_inner();
        let mut bytes = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|s| self.error(s))?;
            out.write_all(&piece.data)?;
            bytes += piece.data.len() as u64;
        }
        Ok(bytes)
    }

    /// A job's kept checkpoint, written to `out` as it arrives; checked against the
    /// SHA-256 the coordinator announces before `out` is used.
    pub async fn checkpoint(&mut self, job: &str, out: &mut dyn std::io::Write) -> ClientResult<pb::CheckpointInfo> {
        use sha2::Digest;
        let r = self.inner.export_checkpoint(pb::ExportCheckpointRequest { job_id: job.to_string() }).await;
        let mut stream = r.map_err(|s| self.error(s))?.into_inner();
        let mut meta = None;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        while let Some(piece) = stream.message().await.map_err(|s| self.error(s))? {
            if let Some(info) = piece.info {
                meta = Some(info);
            }
            hasher.update(&piece.data);
            size += piece.data.len() as u64;
            out.write_all(&piece.data)?;
        }
        let meta = meta.ok_or_else(|| anyhow::anyhow!("the coordinator sent no checkpoint header"))?;
        let digest = crate::checkpoints::hex_digest(hasher);
        if size != meta.size || digest != meta.sha256 {
            anyhow::bail!(
                "the checkpoint arrived damaged: {size} bytes with sha256 {digest}, expected {} bytes with sha256 {}",
                meta.size,
                meta.sha256
            );
        }
        Ok(meta)
    }
}

/// A stream of status snapshots.
#[derive(Debug)]
pub struct Watch {
    stream: tonic::Streaming<pb::StatusResponse>,
    client: Client,
}

impl Watch {
    pub async fn next(&mut self) -> ClientResult<Option<pb::StatusResponse>> {
        self.stream.message().await.map_err(|s| self.client.error(s))
    }
}

/// `--where KEY=VALUE` flags as filters.
pub fn parse_filters(filters: &[String]) -> ClientResult<Vec<pb::Filter>> {
    filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| pb::Filter { key: k.trim().into(), value: v.trim().into() })
                .ok_or_else(|| anyhow::anyhow!("--where {f}: expected KEY=VALUE, e.g. --where layer_name=conv1"))
        })
        .collect()
}

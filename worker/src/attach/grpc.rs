//! [`CoordinatorApi`] over tonic: the worker's only module that builds or reads protobuf
//! messages, and the only place a gRPC status code is given its meaning ([`classify`]).

use std::time::Duration;

use ibsweep_proto::PROTOCOL_VERSION;
use ibsweep_proto::connect::{Bearer, ClientConfig};
use ibsweep_proto::v1::worker_service_client::WorkerServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::job::JobSpec;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::api::{
    CallError, CheckpointInfo, Claim, Completion, CoordinatorApi, Disposition, HistogramPiece, Lease, Offer,
    Registered, Registration,
};

/// Checkpoints travel in pieces of this size (gRPC messages stay small).
pub const MAX_PIECE_BYTES: usize = 1 << 20;

/// What a worker does about a status code.
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

fn error(status: tonic::Status) -> CallError {
    if status.code() == tonic::Code::ResourceExhausted {
        // A full disk on the coordinator, or a limit: either passes, and the work is kept.
        return CallError::new(
            Disposition::Retry,
            format!("the coordinator cannot take this now ({}); waiting, with the work kept", status.message()),
        );
    }
    CallError::new(classify(&status), status.message())
}

fn claim(c: &Claim) -> Option<pb::LeaseClaim> {
    Some(pb::LeaseClaim {
        worker_id: c.worker_id.clone(),
        job_id: c.job_id.clone(),
        fencing_token: c.token,
        lease_secret: c.secret.clone(),
    })
}

fn checkpoint_info(info: &pb::CheckpointInfo) -> CheckpointInfo {
    CheckpointInfo { epoch: info.epoch, size: info.size, sha256: info.sha256.clone() }
}

fn lease(worker_id: &str, l: pb::Lease) -> Lease {
    let claim = Claim {
        worker_id: worker_id.to_string(),
        job_id: l.job_id.clone(),
        token: l.fencing_token,
        secret: l.lease_secret.clone(),
    };
    let spec = match l.spec {
        Some(spec) => JobSpec::try_from(spec).map_err(|e| format!("unusable job spec: {e}")),
        None => Err("the lease carries no job spec".to_string()),
    };
    Lease {
        claim,
        attempt: l.attempt,
        spec,
        resume: l.resume.as_ref().map(checkpoint_info),
        final_checkpoint: l.final_checkpoint,
    }
}

type Client = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

/// The worker service of one coordinator, over one channel (which reconnects by itself).
#[derive(Debug, Clone)]
pub struct GrpcApi {
    client: Client,
}

impl GrpcApi {
    pub async fn connect(config: &ClientConfig) -> Result<GrpcApi, String> {
        let (channel, bearer) = config.connect().await.map_err(|e| e.to_string())?;
        let client = WorkerServiceClient::with_interceptor(channel, bearer).max_encoding_message_size(2 << 20);
        Ok(GrpcApi { client })
    }
}

impl CoordinatorApi for GrpcApi {
    async fn register(&self, r: &Registration) -> Result<Registered, CallError> {
        let request = pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: r.name.clone(),
            threads: r.threads,
            device: r.device.clone(),
            previous_worker_id: r.previous.clone().unwrap_or_default(),
        };
        let registered = self.client.clone().register(request).await.map_err(error)?.into_inner();
        Ok(Registered {
            worker_id: registered.worker_id,
            heartbeat_interval: Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(100))),
        })
    }

    async fn lease(&self, worker_id: &str) -> Result<Offer, CallError> {
        let request = pb::LeaseRequest { worker_id: worker_id.to_string() };
        let response = self.client.clone().lease(request).await.map_err(error)?.into_inner();
        Ok(match response.lease {
            Some(l) => Offer::Lease(Box::new(lease(worker_id, l))),
            None => Offer::RetryAfter(Duration::from_millis(u64::from(response.retry_after_ms.max(100)))),
        })
    }

    async fn heartbeat(&self, c: &Claim, epoch: u32) -> Result<bool, CallError> {
        let request = pb::HeartbeatRequest { claim: claim(c), epoch };
        Ok(self.client.clone().heartbeat(request).await.map_err(error)?.into_inner().cancelled)
    }

    async fn upload(&self, c: &Claim, pieces: &[HistogramPiece]) -> Result<(), CallError> {
        let chunks: Vec<pb::HistogramChunk> = pieces
            .iter()
            .map(|p| pb::HistogramChunk {
                claim: claim(c),
                sequence: p.sequence,
                measurement: Some((&p.key).into()),
                histogram: p.bytes.clone(),
                piece: p.piece,
                pieces: p.pieces,
                estimates: p.estimates.as_ref().map(|values| pb::LayerEstimates {
                    values: values.iter().map(pb::EstimateColumns::from).collect(),
                }),
            })
            .collect();
        self.client.clone().upload_histograms(tokio_stream::iter(chunks)).await.map_err(error)?;
        Ok(())
    }

    async fn complete(&self, c: &Claim, completion: &Completion) -> Result<u64, CallError> {
        let request = pb::CompleteRequest {
            claim: claim(c),
            train_indices_hash: completion.train_indices_hash.clone(),
            test_indices_hash: completion.test_indices_hash.clone(),
            chunks: completion.pieces,
        };
        Ok(self.client.clone().complete(request).await.map_err(error)?.into_inner().rows)
    }

    async fn fail(&self, c: &Claim, reason: &str, release: bool) -> Result<(), CallError> {
        let request = pb::FailRequest { claim: claim(c), reason: reason.to_string(), release };
        self.client.clone().fail(request).await.map_err(error)?;
        Ok(())
    }

    async fn upload_checkpoint(&self, c: &Claim, epoch: u32, bytes: &[u8]) -> Result<u64, CallError> {
        let info = pb::CheckpointInfo { epoch, size: bytes.len() as u64, sha256: crate::checkpoint::sha256_hex(bytes) };
        let mut pieces: Vec<pb::UploadCheckpointPiece> = bytes
            .chunks(MAX_PIECE_BYTES)
            .map(|data| pb::UploadCheckpointPiece { claim: None, info: None, data: data.to_vec() })
            .collect();
        if pieces.is_empty() {
            pieces.push(pb::UploadCheckpointPiece::default());
        }
        pieces[0].claim = claim(c);
        pieces[0].info = Some(info);
        let response = self.client.clone().upload_checkpoint(tokio_stream::iter(pieces)).await.map_err(error)?;
        Ok(response.into_inner().committed)
    }

    async fn download_checkpoint(&self, c: &Claim, info: &CheckpointInfo) -> Result<Vec<u8>, CallError> {
        let request = pb::DownloadCheckpointRequest { claim: claim(c) };
        let mut stream = self.client.clone().download_checkpoint(request).await.map_err(error)?.into_inner();
        let mut bytes = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0).min(1 << 30));
        while let Some(piece) = stream.message().await.map_err(error)? {
            bytes.extend_from_slice(&piece.data);
            if bytes.len() as u64 > info.size {
                return Err(CallError::new(Disposition::Fatal, "the checkpoint is longer than the lease says"));
            }
        }
        Ok(bytes)
    }

    async fn discard_checkpoint(&self, c: &Claim, reason: &str) -> Result<(), CallError> {
        let request = pb::DiscardCheckpointRequest { claim: claim(c), reason: reason.to_string() };
        self.client.clone().discard_checkpoint(request).await.map_err(error)?;
        Ok(())
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
            // A refused histogram is this job's failure, not a lost lease.
            (Code::InvalidArgument, Disposition::Fatal),
            (Code::Unauthenticated, Disposition::Fatal),
            (Code::PermissionDenied, Disposition::Fatal),
        ];
        for (code, want) in cases {
            assert_eq!(classify(&Status::new(code, "x")), want, "{code:?}");
        }
    }
}

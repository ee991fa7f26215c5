//! The request harness shared by the `requests` fuzz target (`coordinator/fuzz`) and its
//! short proptest in the normal suite: any bytes as one request message of either service,
//! decoded with prost and handed to the coordinator's handlers. Empty IDs, token 0 and an
//! empty secret are replaced by the live ones, so inputs reach ingest, completion and
//! failure instead of stopping at "not found".

use std::sync::Arc;

use ibsweep_proto::v1::sweep_service_server::SweepService;
use ibsweep_proto::v1::worker_service_server::WorkerService;
use ibsweep_proto::v1::{self as pb};
use prost::Message;
use tonic::Request;

use crate::checkpoints::CheckpointDir;
use crate::clock::ManualClock;
use crate::scheduler::{Scheduler, Timing};
use crate::service::{Sweeps, Workers};
use crate::store::MemoryStore;

const GRID: &str = "name: fuzz\nparameters:\n  dataset: {value: mnist}\n  width: {values: [1, 2]}\n  depth: {value: 1}\n  kernel: {value: 3}\n  epochs: {value: 1}\nmeasure: {epochs: every, splits: [test], bin_sizes: [0.67]}\ntrain: {train_size: 20, test_size: 20, batch_size: 10}\n";

/// One runtime for every input: its blocking-thread pool is reused, which is most of the
/// cost of an input otherwise.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime"))
}

/// A checkpoint directory per input (tests drive inputs from several threads at once),
/// removed when the input is done so nothing is left in the temp directory.
fn checkpoint_dir() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("ibsweep-harness-checkpoints-{}-{n}", std::process::id()))
}

struct Live {
    sweep: String,
    worker: String,
    lease: pb::Lease,
}

fn fill(value: &mut String, live: &str) {
    if value.is_empty() {
        *value = live.to_string();
    }
}

/// Puts the live lease into the claim, where the input left its fields empty.
fn fill_claim(live: &Live, claim: &mut Option<pb::LeaseClaim>) {
    let c = claim.get_or_insert_with(pb::LeaseClaim::default);
    fill(&mut c.worker_id, &live.worker);
    fill(&mut c.job_id, &live.lease.job_id);
    fill(&mut c.lease_secret, &live.lease.lease_secret);
    if c.fencing_token == 0 {
        c.fencing_token = live.lease.fencing_token;
    }
}

/// Decodes `data` (first byte: which message) and hands it to the matching handler over a
/// fresh in-memory coordinator that holds a sweep and a live lease. Panics only on a bug:
/// a handler panicking, or the counters going inconsistent.
pub fn drive(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else { return };
    let dir = checkpoint_dir();
    runtime().block_on(async {
        let scheduler = Arc::new(
            Scheduler::open(MemoryStore::new(), Arc::new(ManualClock::new(1_000_000)), Timing::default())
                .unwrap()
                .with_checkpoints(CheckpointDir::open(&dir, false, 1 << 20).unwrap())
                .unwrap(),
        );
        let (sweeps, workers) = (Sweeps::new(Arc::clone(&scheduler)), Workers::new(Arc::clone(&scheduler)));
        let sweep = sweeps
            .submit(Request::new(pb::SubmitRequest { grid_yaml: GRID.into(), file_name: "g.yaml".into() }))
            .await
            .unwrap()
            .into_inner()
            .sweep_id;
        let worker =
            workers.register(Request::new(pb::RegisterRequest::cpu("w", 1))).await.unwrap().into_inner().worker_id;
        let lease = workers
            .lease(Request::new(pb::LeaseRequest { worker_id: worker.clone() }))
            .await
            .unwrap()
            .into_inner()
            .lease
            .unwrap();
        let live = Live { sweep, worker, lease };
        match kind % 16 {
            0 => {
                if let Ok(m) = pb::SubmitRequest::decode(body) {
                    let _ = sweeps.submit(Request::new(m)).await;
                }
            }
            1 => {
                if let Ok(mut m) = pb::StatusRequest::decode(body) {
                    fill(&mut m.sweep_id, &live.sweep);
                    let _ = sweeps.status(Request::new(m)).await;
                }
            }
            2 => {
                if let Ok(mut m) = pb::ResultsRequest::decode(body) {
                    fill(&mut m.sweep_id, &live.sweep);
                    let _ = sweeps.results(Request::new(m)).await;
                }
            }
            3 => {
                if let Ok(mut m) = pb::CancelRequest::decode(body) {
                    fill(&mut m.sweep_id, &live.sweep);
                    let _ = sweeps.cancel(Request::new(m)).await;
                }
            }
            4 => {
                if let Ok(mut m) = pb::RetryRequest::decode(body) {
                    fill(&mut m.sweep_id, &live.sweep);
                    let _ = sweeps.retry(Request::new(m)).await;
                }
            }
            5 => {
                if let Ok(m) = pb::RegisterRequest::decode(body) {
                    let _ = workers.register(Request::new(m)).await;
                }
            }
            6 => {
                if let Ok(mut m) = pb::LeaseRequest::decode(body) {
                    fill(&mut m.worker_id, &live.worker);
                    let _ = workers.lease(Request::new(m)).await;
                }
            }
            7 => {
                if let Ok(mut m) = pb::HeartbeatRequest::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    let _ = workers.heartbeat(Request::new(m)).await;
                }
            }
            8 => {
                // Upload is a client stream; its handler converts each chunk and ingests it.
                if let Ok(mut m) = pb::HistogramChunk::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    let _ = crate::service::ingest_one(&scheduler, m);
                }
            }
            9 => {
                if let Ok(mut m) = pb::CompleteRequest::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    let _ = workers.complete(Request::new(m)).await;
                }
            }
            10 => {
                if let Ok(mut m) = pb::FailRequest::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    let _ = workers.fail(Request::new(m)).await;
                }
            }
            11 => {
                if let Ok(mut m) = pb::JobsRequest::decode(body) {
                    fill(&mut m.sweep_id, &live.sweep);
                    let _ = sweeps.jobs(Request::new(m)).await;
                }
            }
            12 => {
                // A one-piece checkpoint upload: the stream handler's steps, in order.
                if let Ok(mut m) = pb::UploadCheckpointPiece::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    if let Ok((header, data)) = crate::service::checkpoint_header(m)
                        && let Ok(mut incoming) = scheduler.begin_checkpoint(&header)
                        && incoming.write(&data).is_ok()
                    {
                        let _ = scheduler.finish_checkpoint(&header, incoming);
                    }
                }
            }
            13 => {
                if let Ok(mut m) = pb::DownloadCheckpointRequest::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    let _ = workers.download_checkpoint(Request::new(m)).await;
                }
            }
            14 => {
                if let Ok(mut m) = pb::DiscardCheckpointRequest::decode(body) {
                    fill_claim(&live, &mut m.claim);
                    let _ = workers.discard_checkpoint(Request::new(m)).await;
                }
            }
            15 => {
                if let Ok(mut m) = pb::ExportCheckpointRequest::decode(body) {
                    fill(&mut m.job_id, &live.lease.job_id);
                    let _ = sweeps.export_checkpoint(Request::new(m)).await;
                }
            }
            _ => {
                let _ = sweeps.workers(Request::new(pb::WorkersRequest {})).await;
            }
        }
        // Whatever happened, the counters stay consistent.
        let status = scheduler.status(None).unwrap();
        for s in status {
            let c = s.record.counts;
            assert!(c.running + c.done + c.failed + c.cancelled <= c.total, "{c:?}");
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

//! The attach loop driven through every failure path by an in-memory coordinator that
//! fails on cue (`attach::fake`): no server, real training of tiny jobs on MNIST.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ibsweep_proto::connect::ClientConfig;
use ibsweep_shared::job::JobSpec;
use ibsweep_worker::attach::api::{CheckpointInfo, Disposition};
use ibsweep_worker::attach::fake::{Call, FakeCoordinator, Seen};
use ibsweep_worker::attach::{AttachConfig, attach_with};
use ibsweep_worker::error::Error;
use ibsweep_worker::train::RunConfig;
use ibsweep_worker::{checkpoint, data};

/// libtorch's seed is process-global: tests that train take turns.
static TORCH: Mutex<()> = Mutex::new(());

fn spec(epochs: u32) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "dataset": "mnist", "width": 1, "depth": 1, "kernel": 3, "epochs": epochs,
        "batch_size": 10, "train_size": 20, "test_size": 20,
        "measure": {"epochs": [0, 1, epochs], "splits": ["test"], "bin_sizes": [0.67]},
    }))
    .unwrap()
}

fn config() -> AttachConfig {
    AttachConfig {
        client: ClientConfig::new("fake://"),
        name: "fake-test".into(),
        datasets: data::default_datasets_dir(),
        run: RunConfig { threads: 1, device: tch::Device::Cpu },
    }
}

/// Runs the attach loop against `fake` until `done` holds for what it saw (at most 60 s),
/// then shuts the worker down; returns what the loop returned and what the fake saw.
async fn run_until(fake: &FakeCoordinator, done: impl Fn(&Seen) -> bool) -> (Result<(), Error>, Seen) {
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let api = fake.clone();
    let worker = tokio::spawn(attach_with(config(), shutdown, move || {
        let api = api.clone();
        async move { Ok::<_, String>(api) }
    }));
    let started = Instant::now();
    while !done(&fake.seen()) && !worker.is_finished() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out; the fake saw {:?}", fake.seen().calls);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let result = tokio::time::timeout(Duration::from_secs(60), worker).await.expect("the worker stops").unwrap();
    (result, fake.seen())
}

fn completed(seen: &Seen) -> bool {
    !seen.completed.is_empty()
}

#[tokio::test]
async fn a_job_completes_with_every_piece_counted_once_through_transient_failures() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeCoordinator::new();
    fake.add_job("j1", spec(2));
    fake.fail_next(Call::Lease, 1, Disposition::Retry);
    fake.fail_next(Call::Upload, 3, Disposition::Retry);
    fake.fail_next(Call::Complete, 2, Disposition::Retry);
    let (result, seen) = run_until(&fake, completed).await;
    result.unwrap();
    let (job, completion) = &seen.completed[0];
    assert_eq!(job, "j1");
    // 3 measured epochs x 2 layers (conv1, softmax) x 1 bin, one piece each.
    assert_eq!(completion.pieces, 6);
    assert_eq!(seen.pieces["j1"].len(), 6);
    assert!(seen.failed.is_empty(), "{:?}", seen.failed);
    // A lease failure means reconnecting: the worker registered again under its old ID.
    assert_eq!(seen.registrations.len(), 2);
    assert_eq!(seen.registrations[1].previous.as_deref(), Some("fake-worker"));
    assert_eq!(seen.calls.iter().filter(|c| **c == Call::Upload).count(), 3 + 3);
}

#[tokio::test]
async fn a_lost_lease_drops_the_job_without_reporting_it() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeCoordinator::new();
    fake.add_job("lost", spec(2));
    fake.add_job("next", spec(2));
    fake.fail_next(Call::Upload, 1, Disposition::LeaseLost);
    let (result, seen) = run_until(&fake, completed).await;
    result.unwrap();
    assert_eq!(seen.completed.len(), 1);
    assert_eq!(seen.completed[0].0, "next", "the lost job is not completed");
    assert!(seen.failed.is_empty(), "someone else holds the lost job: nothing to report");
}

#[tokio::test]
async fn a_refused_histogram_or_an_unreadable_spec_fails_the_job() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeCoordinator::new();
    fake.add_unreadable_job("unreadable", "spec.dataset: unknown or unspecified value 9");
    fake.add_job("refused", spec(2));
    fake.fail_next(Call::Upload, 1, Disposition::Fatal);
    let (result, seen) = run_until(&fake, |s| s.failed.len() == 2).await;
    result.unwrap();
    assert_eq!(seen.failed[0], ("unreadable".into(), "spec.dataset: unknown or unspecified value 9".into(), false));
    let (job, reason, release) = &seen.failed[1];
    assert_eq!(job, "refused");
    assert!(reason.starts_with("the coordinator refused a histogram"), "{reason}");
    assert!(!release);
    assert!(seen.completed.is_empty());
}

#[tokio::test]
async fn a_cancelled_job_stops_at_its_heartbeat_and_says_so() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeCoordinator::new();
    fake.add_job("long", spec(100_000));
    fake.cancel_after_heartbeats(2);
    let (result, seen) = run_until(&fake, |s| !s.failed.is_empty()).await;
    result.unwrap();
    assert_eq!(seen.failed, vec![("long".to_string(), "cancelled".to_string(), false)]);
    assert!(seen.completed.is_empty());
}

#[tokio::test]
async fn an_unusable_checkpoint_is_discarded_and_the_job_starts_from_scratch() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeCoordinator::new();
    let garbage = b"not a safetensors file".to_vec();
    let info = CheckpointInfo { epoch: 1, size: garbage.len() as u64, sha256: checkpoint::sha256_hex(&garbage) };
    fake.add_resumed_job("resumed", spec(2), info, garbage);
    let (result, seen) = run_until(&fake, completed).await;
    result.unwrap();
    assert_eq!(seen.discarded.len(), 1);
    assert!(seen.discarded[0].1.contains("checkpoint"), "{:?}", seen.discarded);
    // From scratch: epoch 0 is measured again.
    assert!(seen.pieces["resumed"].values().any(|p| p.key.epoch == 0));
}

#[tokio::test]
async fn a_refused_registration_stops_the_worker_with_the_reason() {
    let fake = FakeCoordinator::new();
    fake.fail_next(Call::Register, 1, Disposition::Fatal);
    let (result, _) = run_until(&fake, |_| false).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("scripted Fatal of Register"), "{err}");
}

/// A checkpoint the coordinator keeps refusing (a full disk) is not thrown away: training
/// goes on, the checkpoint stays in memory and is delivered after the next upload that
/// gets through, unless a newer one replaced it first.
#[tokio::test]
async fn a_refused_checkpoint_is_kept_and_delivered_once_writes_are_accepted() {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let fake = FakeCoordinator::new();
    let mut job = spec(3);
    job.checkpoint_every = 1;
    job.measure.epochs = ibsweep_shared::job::EpochSchedule::Every;
    fake.add_job("j1", job);
    // Every try the first checkpoint upload gets.
    fake.fail_next(Call::UploadCheckpoint, 6, Disposition::Retry);
    let (result, seen) = run_until(&fake, completed).await;
    result.unwrap();
    let epochs: Vec<u32> = seen.checkpoints.iter().map(|(_, epoch, _)| *epoch).collect();
    assert_eq!(epochs.first(), Some(&1), "the refused checkpoint at epoch 1 arrives late, not never: {epochs:?}");
    assert!(epochs.contains(&2), "{epochs:?}");
    assert_eq!(seen.completed.len(), 1);
}

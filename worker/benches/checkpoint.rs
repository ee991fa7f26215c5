//! What a checkpoint costs (issue #12), for the widest conv model of the paper (width 12,
//! depth 6) and the fully connected one (Fig. 8: 5 convs of width 3, then 500-1024-500),
//! at paper scale (10,000 training images, batch 1,000, one libtorch thread):
//! - the baseline: one training epoch (with the test evaluation every epoch has);
//! - save: weights + Adam moments + RNG position into safetensors, and its SHA-256;
//! - upload: to a real coordinator over loopback, durable (fsync, rename, sled commit);
//! - resume: download, verify, decode and check against the network;
//! - overhead on training at the default interval (every 50 epochs, or 10 minutes);
//! - coordinator disk per running job.
//!
//!   cargo bench -p ibsweep-worker --bench checkpoint       (IBSWEEP_BENCH_EPOCHS=N, default 2)

use std::sync::Arc;
use std::time::{Duration, Instant};

use ibsweep_coordinator::checkpoints::CheckpointDir;
use ibsweep_coordinator::clock::SystemClock;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::service::ServeOptions;
use ibsweep_coordinator::store::SledStore;
use ibsweep_proto::connect::ClientConfig;
use ibsweep_shared::job::{DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_MINUTES, JobSpec};
use ibsweep_testkit::GridBuilder;
use ibsweep_testkit::in_process::Server;
use ibsweep_worker::attach::GrpcApi;
use ibsweep_worker::attach::api::{CheckpointInfo, CoordinatorApi, Offer, Registration};
use ibsweep_worker::checkpoint;
use ibsweep_worker::data;
use ibsweep_worker::train::{self, Event, JobData, Plan, RunConfig};

struct Figures {
    name: &'static str,
    params: usize,
    bytes: usize,
    epoch_s: f64,
    save_s: f64,
    upload_s: f64,
    resume_s: f64,
}

fn spec(extra: serde_json::Value, epochs: u32) -> JobSpec {
    let mut base = serde_json::json!({
        "dataset": "mnist", "width": 12, "depth": 6, "kernel": 3, "epochs": epochs, "seed": 0,
        "batch_size": 1000, "train_size": 10000, "test_size": 10000, "sampling": "per-class-with-replacement",
        // Measured only after the last epoch: the epochs timed are training + evaluation.
        "measure": {"epochs": [epochs], "splits": ["test"], "bin_sizes": [0.67]},
        "checkpoint_every": 1,
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

/// Trains `epochs` epochs, timing each and the checkpoint encoding after each.
fn train(spec: &JobSpec, data: &JobData) -> (f64, f64, Vec<u8>) {
    let config = RunConfig { threads: 1, device: tch::Device::Cpu };
    let mut epoch_times = Vec::new();
    let mut save_times = Vec::new();
    let mut last = Vec::new();
    let mut epoch_done = Instant::now();
    train::run_job_with(spec, data, &config, &Plan { checkpoints: true, ..Plan::default() }, &|| false, &mut |event| {
        match event {
            Event::Epoch(m) if m.epoch > 0 && m.epoch < spec.epochs => {
                epoch_times.push(m.seconds);
                epoch_done = Instant::now();
            }
            Event::Checkpoint { bytes, .. } => {
                let started = Instant::now();
                let _digest = checkpoint::sha256_hex(&bytes);
                // Encoding ran between the Epoch event and this one; hashing here.
                save_times.push(epoch_done.elapsed().as_secs_f64() + started.elapsed().as_secs_f64());
                last = bytes;
            }
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&epoch_times), mean(&save_times), last)
}

/// Uploads `bytes` as the job's checkpoint to a real coordinator, then downloads it as a
/// resumed lease would; returns (upload seconds, download seconds, bytes on disk).
async fn round_trip(spec: &JobSpec, bytes: &[u8]) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("store")).unwrap();
    let scheduler = Scheduler::open(store, Arc::new(SystemClock), Timing::default())
        .unwrap()
        .with_checkpoints(CheckpointDir::open(dir.path().join("checkpoints"), false, 1 << 32).unwrap())
        .unwrap();
    let scheduler = Arc::new(scheduler);
    let grid = GridBuilder::tiny("bench")
        .param("width", spec.width)
        .param("depth", spec.depth)
        .param("fc", format!("{:?}", spec.fc))
        .param("epochs", spec.epochs)
        .measure("epochs", format!("[{}]", spec.epochs))
        .train("batch_size", 1000)
        .train("train_size", 10_000)
        .train("test_size", 10_000)
        .train("sampling", "per-class-with-replacement")
        .train("checkpoint_every", 1)
        .build();
    scheduler.submit("bench.yaml", &grid).unwrap();
    let server = Server::start(Arc::clone(&scheduler), ServeOptions::default()).await;
    let config = ClientConfig::new(server.url.clone());
    let api = loop {
        match GrpcApi::connect(&config).await {
            Ok(api) => break api,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let registration = Registration { name: "bench".into(), threads: 1, device: "cpu".into(), previous: None };
    let worker = api.register(&registration).await.unwrap().worker_id;
    let Offer::Lease(lease) = api.lease(&worker).await.unwrap() else { panic!("the bench sweep has a job") };
    let started = Instant::now();
    api.upload_checkpoint(&lease.claim, 1, bytes).await.unwrap();
    let upload = started.elapsed().as_secs_f64();
    let disk = scheduler.checkpoint_bytes();
    let started = Instant::now();
    let info = CheckpointInfo { epoch: 1, size: bytes.len() as u64, sha256: checkpoint::sha256_hex(bytes) };
    let back = api.download_checkpoint(&lease.claim, &info).await.unwrap();
    let download = started.elapsed().as_secs_f64();
    assert_eq!(back, bytes);
    server.stop().await;
    (upload, download, disk)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    let epochs: u32 = std::env::var("IBSWEEP_BENCH_EPOCHS").ok().and_then(|s| s.parse().ok()).unwrap_or(2).max(2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let models = [
        ("conv w12 d6", serde_json::json!({})),
        ("fig8 fc 500-1024-500", serde_json::json!({"width": 3, "depth": 5, "fc": [500, 1024, 500]})),
    ];
    let mut figures = Vec::new();
    for (name, extra) in models {
        let spec = spec(extra, epochs + 1);
        let data = JobData::load(&spec, &data::default_datasets_dir()).unwrap();
        eprintln!("{name}: training {epochs} epochs ...");
        let (epoch_s, save_s, bytes) = train(&spec, &data);
        let (upload_s, download_s, disk) = runtime.block_on(round_trip(&spec, &bytes));
        let started = Instant::now();
        let state = checkpoint::decode(&spec, &bytes).unwrap();
        checkpoint::check_fits(&spec, &state).unwrap();
        let resume_s = download_s + started.elapsed().as_secs_f64();
        assert_eq!(disk, bytes.len() as u64);
        let params = bytes.len() / 12;
        figures.push(Figures { name, params, bytes: bytes.len(), epoch_s, save_s, upload_s, resume_s });
    }
    println!(
        "\n{:<22} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9} {:>14} {:>14}",
        "model", "params", "size MB", "epoch s", "save s", "upload s", "resume s", "every 50 ep.", "every 10 min"
    );
    for f in &figures {
        let cost = f.save_s + f.upload_s;
        let per_50 = cost / (f.epoch_s * f64::from(DEFAULT_CHECKPOINT_EVERY));
        // Whichever comes first: at most one checkpoint per 10 minutes of training.
        let interval = (f.epoch_s * f64::from(DEFAULT_CHECKPOINT_EVERY)).min(DEFAULT_CHECKPOINT_MINUTES * 60.0);
        let effective = cost / interval;
        println!(
            "{:<22} {:>9} {:>9.2} {:>9.3} {:>8.3} {:>9.3} {:>9.3} {:>13.3}% {:>13.3}%",
            f.name,
            f.params,
            f.bytes as f64 / 1e6,
            f.epoch_s,
            f.save_s,
            f.upload_s,
            f.resume_s,
            100.0 * per_50,
            100.0 * effective
        );
    }
    println!(
        "\noverhead = (save + upload) / (training time between checkpoints); target < 2 %. Coordinator disk per \
         running job = one checkpoint (two for the moment a newer one replaces it)."
    );
}

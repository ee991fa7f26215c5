//! The load generator (issue #13): a real `coordinator serve` (sled store, loopback) and N
//! simulated workers, each a gRPC client on its own connection doing what a worker does.
//!
//! Workloads, each at N = 1, 10, 100, 1,000 workers for a fixed time:
//! - `paper`: what workers do in a real sweep: lease, train (simulated: a sleep of
//!   IBSWEEP_LOAD_JOB_SECONDS, default 5, with a heartbeat every second), upload the job's
//!   histograms (10,000 entries per layer, 8 layers, 2 splits), complete. The workers start
//!   spread over one job time (a steady state, not a herd): the latency a worker sees with
//!   1,000 of them attached;
//! - `jobs`: the same without the training time: histogram ingest at saturation;
//! - `noop`: the same with the smallest job there is (2 histograms of one entry);
//! - `lease-fail`: Lease then Fail, the protocol the anchors were measured with.
//!
//! Then the restart: a 10^6-point sweep with 10^5 jobs finished, the coordinator killed
//! (`kill -9`) and started again: time until the first lease is served.
//!
//! And the floor: `lease-fail` against a null server (this binary again, answering Register,
//! Lease and Fail at once through tonic, storing nothing), so the table shows what these two
//! cores give a gRPC server and these clients before any scheduling or storage is done. Each
//! row prints the CPU both sides used (from /proc), per grant.
//!
//!   cargo bench -p ibsweep-coordinator --bench load
//!   IBSWEEP_LOAD_WORKERS=1,10,100,1000 IBSWEEP_LOAD_SECONDS=10 IBSWEEP_LOAD_FINISHED=100000 \
//!   IBSWEEP_LOAD_WORKLOADS=jobs,noop,lease-fail IBSWEEP_LOAD_PLOT=docs/load.png cargo bench ...
//!   IBSWEEP_LOAD_DIR=/dev/shm ...   (the store on tmpfs: flushes cost nothing)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ibsweep_proto::connect::Bearer;
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::worker_service_client::WorkerServiceClient;
use ibsweep_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::measure::LayerHistogram;
use ibsweep_testkit::process::{Proc, Serve, cpu_seconds};
use ibsweep_testkit::{GridBuilder, free_port};
use prost::Message;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Anchors: no-op tasks per second on this machine kind, each at its best documented
/// settings (issue #13).
const ANCHORS: [(&str, f64); 5] = [
    ("Optuna 5.0 GridSampler", 22.0),
    ("Slurm 22.05 arrays (Epilog tuned)", 42.0),
    ("Ray Tune 2.60 (reuse_actors)", 44.0),
    ("Slurm 22.05 submissions", 185.0),
    ("HyperQueue 0.27", 230.0),
];

const LAYERS: usize = 8;
const ENTRIES: u32 = 10_000;

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_string()).collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Open dashboard pages (`IBSWEEP_LOAD_EVENT_STREAMS`, default 0): this many
/// `/api/v1/events` streams held open and read through every run, as dashboards watching
/// the sweep hold them.
fn event_streams() -> usize {
    env_u64("IBSWEEP_LOAD_EVENT_STREAMS", 0) as usize
}

/// The coordinator under test, killed when dropped.
struct Coordinator {
    process: Proc,
    url: String,
    /// The HTTP API's port, when event streams are watched.
    http: Option<u16>,
}

impl Coordinator {
    fn start(data: &Path, port: u16) -> Coordinator {
        let http = (event_streams() > 0).then(free_port);
        let http_listen = http.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default();
        let mut serve = Serve::new(port, data, 120)
            .args(&["--max-workers", "100000", "--max-points", "2000000", "--worker-timeout", "3600"])
            .quiet("warn");
        if http.is_some() {
            serve = serve.args(&["--http-listen", &http_listen]);
        }
        Coordinator { url: serve.url(), process: serve.spawn(), http }
    }

    /// The null server: this bench binary again, in its own process like the coordinator.
    fn start_null(port: u16) -> Coordinator {
        let child = Command::new(std::env::current_exe().expect("the bench binary"))
            .env(NULL_SERVER_ENV, format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start the null server");
        Coordinator { process: Proc(child), url: format!("http://127.0.0.1:{port}"), http: None }
    }

    fn peak_rss_mb(&self) -> f64 {
        self.process.peak_rss_mb()
    }

    fn cpu_seconds(&self) -> f64 {
        self.process.cpu_seconds()
    }

    fn kill(self) {
        self.process.kill();
    }
}

/// `n` event streams read on threads of their own until `stop`; each thread returns the
/// events it heard.
fn watch_events(port: u16, n: usize, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    use std::io::{BufRead, Write};
    (0..n)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut tries = 0;
                let mut stream = loop {
                    match std::net::TcpStream::connect(("127.0.0.1", port)) {
                        Ok(stream) => break stream,
                        Err(e) if tries == 50 => panic!("the HTTP API at port {port}: {e}"),
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                    tries += 1;
                };
                write!(stream, "GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                let mut reader = std::io::BufReader::new(stream);
                let (mut events, mut line) = (0, String::new());
                while !stop.load(Ordering::SeqCst) {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => events += u64::from(line.starts_with("event:")),
                        Err(_) => {} // a quiet moment: the read timed out
                    }
                }
                events
            })
        })
        .collect()
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() { dir_size(&e.path()) } else { meta.len() }
        })
        .sum()
}

async fn channel(url: &str) -> Channel {
    for _ in 0..600 {
        if let Ok(c) = Channel::from_shared(url.to_string()).unwrap().connect().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the coordinator at {url} did not come up");
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Paper,
    Jobs,
    Noop,
    LeaseFail,
    /// `lease-fail` against the null server: the floor.
    Null,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Paper => "paper",
            Workload::Jobs => "jobs",
            Workload::Noop => "noop",
            Workload::LeaseFail => "lease-fail",
            Workload::Null => "null",
        }
    }

    fn grid(self, name: &str) -> String {
        match self {
            // 8 layers (7 convs + softmax), one measured epoch, both splits of 10,000.
            Workload::Paper | Workload::Jobs => GridBuilder::tiny(name)
                .param("depth", 7)
                .values("seed", 0..10_000)
                .measure("epochs", "[1]")
                .measure("splits", "[train, test]")
                .train("train_size", ENTRIES)
                .train("test_size", ENTRIES)
                .train("batch_size", 1000)
                .limit("max_attempts", 1)
                .build(),
            // A 10^6-point sweep of the smallest jobs.
            Workload::Noop | Workload::LeaseFail | Workload::Null => GridBuilder::tiny(name)
                .values("seed", 0..1000)
                .values("lr", (1..=1000).map(|i| f64::from(i) * 1e-6))
                .measure("epochs", "[0]")
                .train("train_size", 10)
                .train("test_size", 1)
                .train("batch_size", 1)
                .limit("max_attempts", 1)
                .build(),
        }
    }
}

/// The histogram bytes a job delivers per layer: `entries` patterns of one sample each.
fn histogram(entries: u32) -> Vec<u8> {
    let mut h = LayerHistogram::new(10);
    let hashes: Vec<u128> =
        (0..entries).map(|i| u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).collect();
    let labels: Vec<u32> = (0..entries).map(|i| i % 10).collect();
    h.add(&hashes, &labels).unwrap();
    h.to_bytes()
}

#[derive(Default)]
struct Latencies {
    lease: Vec<Duration>,
    heartbeat: Vec<Duration>,
    upload: Vec<Duration>,
    complete: Vec<Duration>,
}

impl Latencies {
    fn extend(&mut self, other: Latencies) {
        self.lease.extend(other.lease);
        self.heartbeat.extend(other.heartbeat);
        self.upload.extend(other.upload);
        self.complete.extend(other.complete);
    }
}

fn quantiles(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    format!("{:.1}/{:.1}/{:.1}", at(0.5), at(0.99), v[v.len() - 1].as_secs_f64() * 1e3)
}

#[derive(Default)]
struct Totals {
    grants: AtomicU64,
    completions: AtomicU64,
    entries: AtomicU64,
    wire_bytes: AtomicU64,
    errors: AtomicU64,
}

impl Totals {
    /// A refused or failed call: counted and reported once; the simulated worker goes on.
    fn error(&self, status: &tonic::Status) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            eprintln!("  first error: {:?} {}", status.code(), status.message());
        }
    }
}

/// The call's answer, or (counting the error) on to the next job.
macro_rules! call {
    ($totals:expr, $call:expr) => {
        match $call.await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                $totals.error(&status);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
    };
}

/// One simulated worker until `stop`: returns its latencies.
async fn worker(
    url: String,
    workload: Workload,
    layers: Arc<Vec<Vec<u8>>>,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    job_time: Duration,
    start_after: Duration,
) -> Latencies {
    let mut client = WorkerServiceClient::with_interceptor(channel(&url).await, Bearer::default())
        .max_decoding_message_size(8 << 20);
    let mut lat = Latencies::default();
    let worker_id = loop {
        let registered = client.register(pb::RegisterRequest::cpu("load", 1)).await;
        match registered {
            Ok(r) => break r.into_inner().worker_id,
            Err(status) if !stop.load(Ordering::Relaxed) => {
                totals.error(&status);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return lat,
        }
    };
    tokio::time::sleep(start_after).await;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let lease = call!(totals, client.lease(pb::LeaseRequest { worker_id: worker_id.clone() }));
        lat.lease.push(t.elapsed());
        let Some(lease) = lease.lease else { break };
        totals.grants.fetch_add(1, Ordering::Relaxed);
        if matches!(workload, Workload::LeaseFail | Workload::Null) {
            call!(
                totals,
                client.fail(pb::FailRequest {
                    claim: Some(lease.claim(&worker_id)),
                    reason: "load test".into(),
                    release: false,
                })
            );
            continue;
        }
        let t = Instant::now();
        call!(totals, client.heartbeat(pb::HeartbeatRequest { claim: Some(lease.claim(&worker_id)), epoch: 0 }));
        lat.heartbeat.push(t.elapsed());
        if workload == Workload::Paper {
            // Training: a heartbeat every second, as the worker's heartbeat task sends them.
            let until = Instant::now() + job_time;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
                let t = Instant::now();
                let beat =
                    client.heartbeat(pb::HeartbeatRequest { claim: Some(lease.claim(&worker_id)), epoch: 1 }).await;
                match beat {
                    Ok(_) => lat.heartbeat.push(t.elapsed()),
                    Err(status) => totals.error(&status),
                }
            }
        }
        let (epoch, splits, names, entries): (u32, &[pb::Split], Vec<String>, u32) = match workload {
            Workload::Paper | Workload::Jobs => {
                let mut names: Vec<String> = (1..LAYERS).map(|i| format!("conv{i}")).collect();
                names.push("softmax".into());
                (1, &[pb::Split::Train, pb::Split::Test], names, ENTRIES)
            }
            _ => (0, &[pb::Split::Test], vec!["conv1".into(), "softmax".into()], 1),
        };
        let mut sequence = 0;
        for split in splits {
            let chunks: Vec<pb::HistogramChunk> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    sequence += 1;
                    pb::HistogramChunk {
                        claim: Some(lease.claim(&worker_id)),
                        sequence: sequence - 1,
                        measurement: Some(pb::Measurement {
                            epoch,
                            split: (*split).into(),
                            layer: i as u32 + 1,
                            layer_name: name.clone(),
                            bin_size: 0.67,
                            loss: 1.0,
                            accuracy: 0.5,
                        }),
                        histogram: layers[i].clone(),
                        piece: 0,
                        pieces: 1,
                        estimates: None,
                    }
                })
                .collect();
            let bytes: usize = chunks.iter().map(|c| c.encoded_len()).sum();
            let t = Instant::now();
            call!(totals, client.upload_histograms(tokio_stream::iter(chunks)));
            lat.upload.push(t.elapsed());
            totals.entries.fetch_add(u64::from(entries) * names.len() as u64, Ordering::Relaxed);
            totals.wire_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        let t = Instant::now();
        call!(
            totals,
            client.complete(pb::CompleteRequest {
                claim: Some(lease.claim(&worker_id)),
                train_indices_hash: "load".into(),
                test_indices_hash: "load".into(),
                chunks: sequence,
            })
        );
        lat.complete.push(t.elapsed());
        totals.completions.fetch_add(1, Ordering::Relaxed);
    }
    lat
}

struct Row {
    workload: Workload,
    workers: usize,
    grants_per_s: f64,
    completions_per_s: f64,
    entries_per_s: f64,
    bytes_per_entry: f64,
    lat: Latencies,
    rss_mb: f64,
    store_mb: f64,
    errors: u64,
    /// Cores used over the measured seconds by the server and by this load generator.
    server_cores: f64,
    client_cores: f64,
}

impl Row {
    /// Server CPU per grant, in ms.
    fn server_ms_per_grant(&self) -> f64 {
        if self.grants_per_s > 0.0 { self.server_cores / self.grants_per_s * 1e3 } else { 0.0 }
    }
}

/// Where the store under test lives: the system's temp directory (the local disk here), or
/// IBSWEEP_LOAD_DIR (e.g. /dev/shm, where a flush costs nothing: what durability costs).
fn store_dir() -> tempfile::TempDir {
    match std::env::var("IBSWEEP_LOAD_DIR") {
        Ok(parent) => tempfile::tempdir_in(parent).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

async fn run(workload: Workload, workers: usize, seconds: u64, job_time: Duration) -> Row {
    let dir = store_dir();
    let data = dir.path().join("store");
    let coordinator = match workload {
        Workload::Null => Coordinator::start_null(free_port()),
        _ => Coordinator::start(&data, free_port()),
    };
    if workload != Workload::Null {
        let mut sweeps = SweepServiceClient::with_interceptor(channel(&coordinator.url).await, Bearer::default());
        let grid = workload.grid("load");
        sweeps.submit(pb::SubmitRequest { grid_yaml: grid, file_name: "load.yaml".into() }).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watchers = coordinator.http.map(|port| watch_events(port, event_streams(), Arc::clone(&stop)));
    let layers = Arc::new(match workload {
        Workload::Paper | Workload::Jobs => vec![histogram(ENTRIES); LAYERS],
        _ => vec![histogram(1); 2],
    });
    let totals = Arc::new(Totals::default());
    // Workers of a real sweep do not all start in the same millisecond: in `paper` they start
    // spread over one job time, so the run is the steady state of `workers` attached workers
    // (one lease every job time each), not a thundering herd at second 0.
    let start_after = |i: usize| match workload {
        Workload::Paper => job_time.mul_f64(i as f64 / workers as f64),
        _ => Duration::ZERO,
    };
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            tokio::spawn(worker(
                coordinator.url.clone(),
                workload,
                Arc::clone(&layers),
                Arc::clone(&totals),
                Arc::clone(&stop),
                job_time,
                start_after(i),
            ))
        })
        .collect();
    // Count from when every worker is registered and working: warm-up is a second, or in
    // `paper` the job time over which the workers start.
    let warm_up = match workload {
        Workload::Paper => job_time.max(Duration::from_secs(1)),
        _ => Duration::from_secs(1),
    };
    tokio::time::sleep(warm_up).await;
    let before = (
        totals.grants.load(Ordering::SeqCst),
        totals.completions.load(Ordering::SeqCst),
        totals.entries.load(Ordering::SeqCst),
    );
    let cpu_before = (coordinator.cpu_seconds(), cpu_seconds("/proc/self/stat"));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = (coordinator.cpu_seconds(), cpu_seconds("/proc/self/stat"));
    let after = (
        totals.grants.load(Ordering::SeqCst),
        totals.completions.load(Ordering::SeqCst),
        totals.entries.load(Ordering::SeqCst),
    );
    stop.store(true, Ordering::SeqCst);
    let mut lat = Latencies::default();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    if let Some(watchers) = watchers {
        let n = watchers.len();
        let heard: u64 = watchers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        eprintln!("  {n} open event streams heard {heard} events ({:.0} per stream)", heard as f64 / n as f64);
    }
    let entries = totals.entries.load(Ordering::SeqCst);
    let row = Row {
        workload,
        workers,
        grants_per_s: (after.0 - before.0) as f64 / elapsed,
        completions_per_s: (after.1 - before.1) as f64 / elapsed,
        entries_per_s: (after.2 - before.2) as f64 / elapsed,
        bytes_per_entry: if entries > 0 {
            totals.wire_bytes.load(Ordering::SeqCst) as f64 / entries as f64
        } else {
            0.0
        },
        lat,
        rss_mb: coordinator.peak_rss_mb(),
        store_mb: dir_size(&data) as f64 / 1e6,
        errors: totals.errors.load(Ordering::SeqCst),
        server_cores: (cpu_after.0 - cpu_before.0) / elapsed,
        client_cores: (cpu_after.1 - cpu_before.1) / elapsed,
    };
    coordinator.kill();
    row
}

/// A 10^6-point sweep with `finished` jobs done, then `kill -9` and a restart: seconds from
/// the restart to the first lease served.
async fn restart(finished: u64) -> (f64, f64) {
    let dir = store_dir();
    let data = dir.path().join("store");
    let port = free_port();
    let coordinator = Coordinator::start(&data, port);
    let mut sweeps = SweepServiceClient::with_interceptor(channel(&coordinator.url).await, Bearer::default());
    let grid = Workload::Noop.grid("restart");
    sweeps.submit(pb::SubmitRequest { grid_yaml: grid, file_name: "restart.yaml".into() }).await.unwrap();
    let layers = Arc::new(vec![histogram(1); 2]);
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            tokio::spawn(worker(
                coordinator.url.clone(),
                Workload::Noop,
                Arc::clone(&layers),
                Arc::clone(&totals),
                Arc::clone(&stop),
                Duration::ZERO,
                Duration::ZERO,
            ))
        })
        .collect();
    let mut report = Instant::now();
    while totals.completions.load(Ordering::SeqCst) < finished {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if report.elapsed() >= Duration::from_secs(30) {
            report = Instant::now();
            eprintln!("  restart: {} of {finished} jobs finished", totals.completions.load(Ordering::SeqCst));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let store_mb = dir_size(&data) as f64 / 1e6;
    let backup_seconds = env_u64("IBSWEEP_LOAD_BACKUP_SECONDS", 10);
    if backup_seconds > 0 {
        backup_under_load(&coordinator.url, backup_seconds, finished, store_mb).await;
    }
    coordinator.kill();
    let started = Instant::now();
    let coordinator = Coordinator::start(&data, port);
    let mut client = loop {
        if let Ok(c) = Channel::from_shared(coordinator.url.clone()).unwrap().connect().await {
            break WorkerServiceClient::with_interceptor(c, Bearer::default());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let id = client.register(pb::RegisterRequest::cpu("after-restart", 1)).await.unwrap().into_inner().worker_id;
    let lease = client.lease(pb::LeaseRequest { worker_id: id }).await.unwrap().into_inner();
    assert!(lease.lease.is_some(), "a pending job after the restart");
    (started.elapsed().as_secs_f64(), store_mb)
}

/// Lease latency of 100 lease-fail workers for `seconds`, alone and then with backups of
/// the whole store taken back to back over gRPC, side by side; and what a backup costs.
async fn backup_under_load(url: &str, seconds: u64, finished: u64, store_mb: f64) {
    let mut quiet = leases_for(url, seconds, None).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut busy = leases_for(url, seconds, Some(file.path())).await;
    let backups = std::mem::take(&mut busy.1);
    let (n, mean_s) = (backups.len(), backups.iter().map(|b| b.0).sum::<f64>() / backups.len().max(1) as f64);
    let bytes = backups.last().map_or(0, |b| b.1);
    println!(
        "\nbackup of a 10^6-point sweep with {finished} jobs finished (store {store_mb:.0} MB on disk): {:.1} MB in \
         {mean_s:.2} s (mean of {n} back to back, while 100 lease-fail workers ran)",
        bytes as f64 / 1e6
    );
    let p = |v: &mut Vec<Duration>, q: f64| {
        v.sort_unstable();
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let (q50, q99, b50, b99) = (p(&mut quiet.0, 0.5), p(&mut quiet.0, 0.99), p(&mut busy.0, 0.5), p(&mut busy.0, 0.99));
    println!(
        "Lease latency, 100 lease-fail workers: p50 {q50:.1} ms / p99 {q99:.1} ms without a backup ({} grants), \
         p50 {b50:.1} ms / p99 {b99:.1} ms during backups ({} grants): {:.2}x / {:.2}x",
        quiet.0.len(),
        busy.0.len(),
        b50 / q50.max(1e-9),
        b99 / q99.max(1e-9)
    );
}

/// Lease latencies of 100 lease-fail workers for `seconds`; with `backup_to`, backups run
/// back to back meanwhile, each written to that file: their (seconds, bytes).
async fn leases_for(url: &str, seconds: u64, backup_to: Option<&Path>) -> (Vec<Duration>, Vec<(f64, u64)>) {
    use tokio_stream::StreamExt;
    let layers = Arc::new(vec![histogram(1); 2]);
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (layers, totals, stop) = (Arc::clone(&layers), Arc::clone(&totals), Arc::clone(&stop));
            tokio::spawn(worker(
                url.to_string(),
                Workload::LeaseFail,
                layers,
                totals,
                stop,
                Duration::ZERO,
                Duration::ZERO,
            ))
        })
        .collect();
    let backups = backup_to.map(|path| {
        let (url, path, stop) = (url.to_string(), path.to_path_buf(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut sweeps = SweepServiceClient::with_interceptor(channel(&url).await, Bearer::default());
            let mut taken = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
                let mut stream = sweeps.backup(pb::BackupRequest {}).await.unwrap().into_inner();
                let mut bytes = 0u64;
                while let Some(piece) = stream.next().await {
                    let piece = piece.unwrap();
                    std::io::Write::write_all(&mut out, &piece.data).unwrap();
                    bytes += piece.data.len() as u64;
                }
                std::io::Write::flush(&mut out).unwrap();
                taken.push((started.elapsed().as_secs_f64(), bytes));
            }
            taken
        })
    });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let mut lease = Vec::new();
    for t in tasks {
        lease.extend(t.await.unwrap().lease);
    }
    let taken = match backups {
        Some(task) => task.await.unwrap(),
        None => Vec::new(),
    };
    (lease, taken)
}

fn plot(rows: &[Row], path: &PathBuf) {
    use plotters::prelude::*;
    ibsweep_coordinator::report::plot::register_font().expect("a TrueType font for the plot");
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).unwrap();
    let (left, right) = root.split_horizontally(500);
    let workloads = [Workload::Paper, Workload::Jobs, Workload::Noop, Workload::LeaseFail, Workload::Null];
    let colors = [MAGENTA, RED, BLUE, GREEN, BLACK];
    let max_rate = rows.iter().map(|r| r.grants_per_s).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&left)
        .caption("durable grants/s", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..1000f64).log_scale(), 0f64..max_rate)
        .unwrap();
    chart.configure_mesh().x_desc("workers").draw().unwrap();
    for (w, c) in workloads.iter().zip(colors) {
        let pts: Vec<(f64, f64)> =
            rows.iter().filter(|r| r.workload == *w).map(|r| (r.workers as f64, r.grants_per_s)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c))
            .unwrap()
            .label(w.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], c));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).unwrap();
    }
    chart.configure_series_labels().border_style(BLACK).draw().unwrap();
    let p99 = |r: &Row| {
        let mut v = r.lat.lease.clone();
        v.sort_unstable();
        v.get(((v.len() as f64 * 0.99) as usize).min(v.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let max_p99 = rows.iter().map(p99).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&right)
        .caption("Lease p99 latency (ms)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..1000f64).log_scale(), (0.1f64..max_p99).log_scale())
        .unwrap();
    chart.configure_mesh().x_desc("workers").draw().unwrap();
    for (w, c) in workloads.iter().zip(colors) {
        let pts: Vec<(f64, f64)> =
            rows.iter().filter(|r| r.workload == *w).map(|r| (r.workers as f64, p99(r).max(0.1))).collect();
        chart.draw_series(LineSeries::new(pts.clone(), c)).unwrap();
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).unwrap();
    }
    root.present().unwrap();
}

/// Set to an address, the bench binary serves [`NullWorkers`] there instead of benchmarking.
const NULL_SERVER_ENV: &str = "IBSWEEP_LOAD_NULL_SERVER";

/// The floor: the worker protocol served by tonic with nothing behind it. Register, Lease and
/// Fail answer at once (every Lease grants the same made-up job); the rest are refused.
struct NullWorkers;

#[tonic::async_trait]
impl WorkerService for NullWorkers {
    async fn register(&self, _: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(pb::RegisterResponse { worker_id: "null".into(), ..Default::default() }))
    }

    async fn lease(&self, _: Request<pb::LeaseRequest>) -> Result<Response<pb::LeaseResponse>, Status> {
        let lease = pb::Lease { job_id: "null".into(), fencing_token: 1, ..Default::default() };
        Ok(Response::new(pb::LeaseResponse { lease: Some(lease), retry_after_ms: 0 }))
    }

    async fn fail(&self, _: Request<pb::FailRequest>) -> Result<Response<pb::FailResponse>, Status> {
        Ok(Response::new(pb::FailResponse {}))
    }

    async fn heartbeat(&self, _: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Err(null_refusal())
    }

    async fn upload_histograms(
        &self,
        _: Request<tonic::Streaming<pb::HistogramChunk>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        Err(null_refusal())
    }

    async fn complete(&self, _: Request<pb::CompleteRequest>) -> Result<Response<pb::CompleteResponse>, Status> {
        Err(null_refusal())
    }

    async fn upload_checkpoint(
        &self,
        _: Request<tonic::Streaming<pb::UploadCheckpointPiece>>,
    ) -> Result<Response<pb::UploadCheckpointResponse>, Status> {
        Err(null_refusal())
    }

    type DownloadCheckpointStream = tokio_stream::Empty<Result<pb::CheckpointPiece, Status>>;

    async fn download_checkpoint(
        &self,
        _: Request<pb::DownloadCheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        Err(null_refusal())
    }

    async fn discard_checkpoint(
        &self,
        _: Request<pb::DiscardCheckpointRequest>,
    ) -> Result<Response<pb::DiscardCheckpointResponse>, Status> {
        Err(null_refusal())
    }
}

fn null_refusal() -> Status {
    Status::unimplemented("the null server answers Register, Lease and Fail only")
}

/// Serves [`NullWorkers`] on `addr` until killed, on a runtime like the coordinator's.
fn null_server(addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime
        .block_on(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(WorkerServiceServer::new(NullWorkers))
                .serve(addr),
        )
        .expect("the null server");
}

fn main() {
    if let Ok(addr) = std::env::var(NULL_SERVER_ENV) {
        return null_server(&addr);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let workers: Vec<usize> =
        env_list("IBSWEEP_LOAD_WORKERS", "1,10,100,1000").iter().map(|s| s.parse().unwrap()).collect();
    let seconds = env_u64("IBSWEEP_LOAD_SECONDS", 10);
    let finished = env_u64("IBSWEEP_LOAD_FINISHED", 100_000);
    let job_time = Duration::from_secs(env_u64("IBSWEEP_LOAD_JOB_SECONDS", 5));
    let workloads: Vec<Workload> = env_list("IBSWEEP_LOAD_WORKLOADS", "paper,jobs,noop,lease-fail,null")
        .iter()
        .map(|w| match w.as_str() {
            "paper" => Workload::Paper,
            "jobs" => Workload::Jobs,
            "noop" => Workload::Noop,
            "lease-fail" => Workload::LeaseFail,
            "null" => Workload::Null,
            other => panic!("unknown workload {other} (paper, jobs, noop, lease-fail, null)"),
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rows = Vec::new();
    for &workload in &workloads {
        for &n in &workers {
            eprintln!("{}: {n} workers for {seconds} s ...", workload.name());
            rows.push(runtime.block_on(run(workload, n, seconds, job_time)));
        }
    }
    println!(
        "\n{:<10} {:>7} {:>10} {:>10} {:>12} {:>8} {:>16} {:>16} {:>16} {:>16} {:>8} {:>8} {:>6} {:>9} {:>8} {:>9}",
        "workload",
        "workers",
        "grants/s",
        "done/s",
        "entries/s",
        "B/entry",
        "Lease p50/99/max",
        "Heartbeat",
        "Upload",
        "Complete",
        "RSS MB",
        "store MB",
        "errors",
        "srv cores",
        "ms/grant",
        "gen cores"
    );
    for r in &mut rows {
        println!(
            "{:<10} {:>7} {:>10.0} {:>10.0} {:>12.0} {:>8.1} {:>16} {:>16} {:>16} {:>16} {:>8.0} {:>8.1} {:>6} {:>9.2} {:>8.3} {:>9.2}",
            r.workload.name(),
            r.workers,
            r.grants_per_s,
            r.completions_per_s,
            r.entries_per_s,
            r.bytes_per_entry,
            quantiles(&mut r.lat.lease),
            quantiles(&mut r.lat.heartbeat),
            quantiles(&mut r.lat.upload),
            quantiles(&mut r.lat.complete),
            r.rss_mb,
            r.store_mb,
            r.errors,
            r.server_cores,
            r.server_ms_per_grant(),
            r.client_cores
        );
    }
    println!("(latencies in ms; grants and completions are durable: acknowledged after the flush that covers them;");
    println!(
        " srv cores / gen cores: CPU used by the server and by this load generator; ms/grant: server CPU per grant)"
    );
    for null in rows.iter().filter(|r| r.workload == Workload::Null) {
        if let Some(real) = rows.iter().find(|r| r.workload == Workload::LeaseFail && r.workers == null.workers) {
            println!(
                "floor at {} workers: the null server answers {:.0} Lease+Fail/s; ibsweep grants {:.0}/s durably = {:.0} % of it",
                null.workers,
                null.grants_per_s,
                real.grants_per_s,
                real.grants_per_s / null.grants_per_s * 100.0
            );
        }
    }
    let best = |w: Workload, f: fn(&Row) -> f64| rows.iter().filter(|r| r.workload == w).map(f).fold(0.0, f64::max);
    let noop = best(Workload::Noop, |r| r.completions_per_s);
    let lease_fail = best(Workload::LeaseFail, |r| r.grants_per_s);
    if noop > 0.0 || lease_fail > 0.0 {
        println!("\nno-op tasks per second, best over the worker counts, against the anchors (same machine kind):");
        println!("{:<36} {:>10} {:>22} {:>22}", "anchor", "tasks/s", "ibsweep noop (ratio)", "lease-fail (ratio)");
        for (name, rate) in ANCHORS {
            println!(
                "{:<36} {:>10.0} {:>13.0} ({:>5.1}x) {:>13.0} ({:>5.1}x)",
                name,
                rate,
                noop,
                noop / rate,
                lease_fail,
                lease_fail / rate
            );
        }
    }
    if finished > 0 {
        eprintln!("restart: filling a 10^6-point sweep with {finished} finished jobs ...");
        let (secs, store_mb) = runtime.block_on(restart(finished));
        println!(
            "\nrestart with a 10^6-point sweep and {finished} jobs finished (store {store_mb:.0} MB): first lease served {secs:.2} s after the start (target < 5 s)"
        );
    }
    if let Ok(path) = std::env::var("IBSWEEP_LOAD_PLOT") {
        // cargo runs benches in the crate's directory: a relative path is the workspace's.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        plot(&rows, &path);
        println!("plot: {}", path.display());
    }
}

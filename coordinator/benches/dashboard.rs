//! The dashboard and HTTP API at the scale: a sweep of 1,000 jobs x 36 epochs x 8
//! layers x 2 splits (576,000 rows), built through the scheduler's own ingest and
//! completion on an in-memory store, served by `serve_http` on loopback.
//!
//! It times what each page asks for before it paints (the sweep page: status and the job
//! table; a job page: the job and its rows), the comparison views' aggregate (cold, then
//! cached), and the exports, each the median of a few runs. The Parquet download is printed
//! beside the CSV export of the same rows, the baseline it replaces in a notebook.
//!
//!   cargo bench -p ibsweep-coordinator --bench dashboard
//!   IBSWEEP_DASHBOARD_JOBS=100 cargo bench ...   (a smaller sweep)

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibsweep_coordinator::clock::SystemClock;
use ibsweep_coordinator::scheduler::{Chunk, Scheduler, Timing};
use ibsweep_coordinator::security::Security;
use ibsweep_coordinator::service::serve_http;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_shared::job::Split;
use ibsweep_shared::measure::LayerHistogram;
use ibsweep_shared::results::Measurement;
use ibsweep_testkit::GridBuilder;

const EPOCHS: u32 = 35; // measured: 0..=35, 36 epochs
const DEPTH: u32 = 7; // conv1..conv7 and softmax: 8 layers
const SAMPLES: u32 = 20;

fn histogram(offset: u32) -> Vec<u8> {
    let mut h = LayerHistogram::new(10);
    let hashes: Vec<u128> = (0..SAMPLES).map(|i| u128::from(offset + i % 7)).collect();
    let labels: Vec<u32> = (0..SAMPLES).map(|i| i % 10).collect();
    h.add(&hashes, &labels).unwrap();
    h.to_bytes()
}

/// A sweep of `jobs` finished jobs; returns the scheduler, the sweep and one job.
fn build(jobs: u32) -> (Arc<Scheduler<MemoryStore>>, String, String) {
    let timing = Timing { lease_ttl_ms: 3_600_000, heartbeat_interval_ms: 10_000, worker_timeout_ms: 3_600_000 };
    let scheduler = Arc::new(Scheduler::open(MemoryStore::new(), Arc::new(SystemClock), timing).unwrap());
    let widths = 10;
    let grid = GridBuilder::tiny("dashboard-scale")
        .values("width", 1..=widths)
        .values("seed", 0..jobs.div_ceil(widths))
        .param("depth", DEPTH)
        .param("epochs", EPOCHS)
        .measure("splits", "[train, test]")
        .build();
    let sweep = scheduler.submit("scale.yaml", &grid).unwrap().sweep_id;
    let worker = scheduler.register("bench", 1, "cpu", None).unwrap().id;
    let mut one = String::new();
    let started = Instant::now();
    for j in 0..jobs {
        let grant = scheduler.lease(worker).unwrap().unwrap();
        let claim = grant.claim(worker);
        let mut pieces = 0;
        for epoch in 0..=EPOCHS {
            for split in [Split::Train, Split::Test] {
                for layer in 1..=DEPTH + 1 {
                    let name = if layer <= DEPTH { format!("conv{layer}") } else { "softmax".into() };
                    let key = Measurement { epoch, split, layer, layer_name: name, bin_size: 0.67, loss: 1.0, accuracy: 0.5 };
                    let chunk = Chunk {
                        job_id: grant.job_id,
                        claim,
                        sequence: pieces,
                        key,
                        histogram: histogram(epoch * 10 + layer),
                        piece: 0,
                        pieces: 1,
                        estimates: None,
                    };
                    assert!(scheduler.ingest(&chunk).unwrap());
                    pieces += 1;
                }
            }
        }
        scheduler.complete(&claim, grant.job_id, ("a", "b"), pieces).unwrap();
        if j == 0 {
            one = grant.job_id.to_string();
        }
        if (j + 1) % 100 == 0 {
            eprintln!("{} jobs finished ({:.0} s)", j + 1, started.elapsed().as_secs_f64());
        }
    }
    (scheduler, sweep.to_string(), one)
}

/// GET `path`; (seconds, body bytes).
fn get(addr: std::net::SocketAddr, path: &str) -> (f64, usize) {
    let start = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer bench\r\n\r\n").unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(bytes.starts_with(b"HTTP/1.0 200") || bytes.starts_with(b"HTTP/1.1 200"), "{path}: {}", String::from_utf8_lossy(&bytes[..end]));
    (seconds, bytes.len() - end - 4)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let jobs = std::env::var("IBSWEEP_DASHBOARD_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (scheduler, sweep, job) = build(jobs);
    let rows = scheduler.results(sweep.parse().unwrap(), &[]).unwrap().len();
    eprintln!("{rows} rows in {jobs} jobs");
    let security = Security { user_token: Some("bench".into()), worker_token: None, tls: None };
    let (gate, _) = security.gates();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(serve_http(listener, Arc::clone(&scheduler), gate, std::future::pending()));
    std::thread::sleep(Duration::from_millis(100));

    let time = |path: &str, runs: usize| -> (f64, usize) {
        let mut seconds = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let (s, n) = get(addr, path);
            seconds.push(s);
            size = n;
        }
        (median(seconds), size)
    };
    let aggregate = format!("/api/v1/sweeps/{sweep}/aggregate?by=width&split=test&estimator=binning");
    let (cold, _) = get(addr, &aggregate);
    let rows_of = |what: &str, secs: f64, bytes: usize| {
        println!("{what:<44} {:>10.1} ms {:>12} bytes", secs * 1e3, bytes);
    };
    println!("\n{rows} rows ({jobs} jobs x 36 epochs x 8 layers x 2 splits), in-process serve_http on loopback\n");
    println!("{:<44} {:>13} {:>18}", "request (median of 5)", "time", "size");
    let page = ["/", "/assets/app.js", "/assets/uPlot.iife.min.js"].map(|p| time(p, 5));
    let status = time(&format!("/api/v1/sweeps/{sweep}"), 5);
    let table = time(&format!("/api/v1/sweeps/{sweep}/jobs?limit=10000"), 5);
    let first_paint = page.iter().map(|p| p.0).sum::<f64>() + status.0 + table.0;
    rows_of("sweep page: html + js + uPlot", page.iter().map(|p| p.0).sum(), page.iter().map(|p| p.1).sum());
    rows_of("sweep page: status", status.0, status.1);
    rows_of("sweep page: job table (1,000 jobs)", table.0, table.1);
    rows_of("sweep page: before first paint (sum)", first_paint, 0);
    rows_of("comparison aggregate, cold", cold, 0);
    let warm = time(&aggregate, 5);
    rows_of("comparison aggregate, cached", warm.0, warm.1);
    let job_info = time(&format!("/api/v1/jobs/{job}"), 5);
    let job_rows = time(&format!("/api/v1/jobs/{job}/results.jsonl"), 5);
    rows_of("job page: job", job_info.0, job_info.1);
    rows_of("job page: rows (576)", job_rows.0, job_rows.1);
    rows_of("job page: before first paint (sum)", job_info.0 + job_rows.0, 0);
    let csv = time(&format!("/api/v1/sweeps/{sweep}/results.csv"), 3);
    let parquet = time(&format!("/api/v1/sweeps/{sweep}/results.parquet"), 3);
    let jsonl = time(&format!("/api/v1/sweeps/{sweep}/results.jsonl"), 3);
    rows_of("results.csv (baseline)", csv.0, csv.1);
    rows_of("results.jsonl", jsonl.0, jsonl.1);
    rows_of("results.parquet", parquet.0, parquet.1);
    println!("\nparquet / csv: time x{:.2}, size x{:.3}", parquet.0 / csv.0, parquet.1 as f64 / csv.1 as f64);
}

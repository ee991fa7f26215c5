//! The `coordinator` command line: `serve`, and the client commands people and scripts use.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_shared::results::{CsvWriter, MiRow};
use tonic::transport::Channel;

use crate::plot::{self, ImageFormat};
use crate::scheduler::{Limits, Timing};
use crate::service::{self, Config};

/// ibsweep coordinator: stores sweeps, hands jobs to workers, merges their histograms into
/// mutual-information results.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about)]
pub struct Cli {
    /// The coordinator to talk to (client commands).
    #[arg(long, global = true, env = "IBSWEEP_COORDINATOR", default_value = "http://127.0.0.1:50051")]
    pub coordinator: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator (gRPC server with a durable sled store).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "IBSWEEP_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// The store's directory (created if missing).
        #[arg(long, env = "IBSWEEP_DATA_DIR", default_value = "./ibsweep-data")]
        data_dir: PathBuf,
        /// Seconds without a heartbeat after which a job goes back to pending.
        #[arg(long, env = "IBSWEEP_LEASE_TTL", default_value_t = 60)]
        lease_ttl: u64,
        /// Most jobs one submitted sweep may have.
        #[arg(long, env = "IBSWEEP_MAX_POINTS", default_value_t = ibsweep_shared::grid::DEFAULT_MAX_POINTS)]
        max_points: u64,
        /// Seconds after which a silent worker drops out of `status` and `workers`.
        #[arg(long, env = "IBSWEEP_WORKER_TIMEOUT", default_value_t = 600)]
        worker_timeout: u64,
    },
    /// Expand a grid file into jobs (idempotent: the same grid returns the same sweep).
    Submit {
        #[arg(value_name = "GRID.yaml")]
        grid: PathBuf,
        /// One JSON line: {"sweep_id": ..., "jobs": N, "created": bool}.
        #[arg(long)]
        json: bool,
    },
    /// Jobs per state, workers, failures with reasons.
    Status {
        /// One sweep (default: all).
        sweep: Option<String>,
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Live progress bars until every watched sweep has finished (plain lines without a TTY).
        #[arg(long)]
        watch: bool,
    },
    /// MI rows of a sweep.
    Results {
        sweep: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Keep rows whose column equals the value (as printed in CSV); repeatable.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Write to FILE instead of stdout: CSV for .csv, JSON lines for .json/.jsonl.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Information planes, MI paths and per-parameter comparisons as images.
    Plot {
        sweep: String,
        /// Directory for the figures (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Keep rows whose column equals the value; repeatable.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        #[arg(long, value_enum, default_value_t = ImageFormat::Png)]
        format: ImageFormat,
    },
    /// Stop every unfinished job of a sweep (running ones at their next heartbeat).
    Cancel { sweep: String },
    /// Re-queue jobs of a sweep.
    Retry {
        sweep: String,
        /// Re-queue the failed jobs, with a fresh set of attempts.
        #[arg(long, required = true)]
        failed: bool,
    },
    /// Attached workers, their current job and last heartbeat.
    Workers {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Errors of the command line, each saying what to do.
pub type CliResult<T> = anyhow::Result<T>;

async fn connect(url: &str) -> CliResult<SweepServiceClient<Channel>> {
    let endpoint =
        Channel::from_shared(url.to_string()).map_err(|e| anyhow::anyhow!("bad coordinator address {url}: {e}"))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach coordinator at {url}: is `coordinator serve` running? ({e})"))?;
    Ok(SweepServiceClient::new(channel).max_decoding_message_size(64 << 20))
}

fn status_error(url: &str, s: tonic::Status) -> anyhow::Error {
    if s.code() == tonic::Code::Unavailable {
        anyhow::anyhow!("cannot reach coordinator at {url}: is `coordinator serve` running? ({})", s.message())
    } else {
        anyhow::anyhow!("{}", s.message())
    }
}

fn threads(n: u32) -> String {
    if n == 1 { "1 thread".into() } else { format!("{n} threads") }
}

fn age(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    if s < 120 { format!("{s}s ago") } else { format!("{}m ago", s / 60) }
}

/// ", ETA N s" from the mean duration of finished jobs and the workers busy now; empty
/// before the first job finishes or once nothing is left.
fn eta(s: &pb::SweepStatus, status: &pb::StatusResponse) -> String {
    let c = s.counts.unwrap_or_default();
    if s.mean_job_seconds <= 0.0 || c.pending + c.running == 0 {
        return String::new();
    }
    let busy = status.workers.iter().filter(|w| !w.job_id.is_empty()).count().max(1) as f64;
    format!(", ETA {:.0} s", s.mean_job_seconds * (c.pending + c.running) as f64 / busy)
}

/// Human-readable status (the same text `status --watch` repeats).
pub fn render_status(status: &pb::StatusResponse) -> String {
    let mut out = String::new();
    if status.sweeps.is_empty() {
        out += "no sweeps; submit one with `coordinator submit GRID.yaml`\n";
    }
    for s in &status.sweeps {
        let c = s.counts.unwrap_or_default();
        let finished = c.done + c.failed + c.cancelled;
        let eta = eta(s, status);
        out += &format!(
            "sweep {} ({}){}: {}/{} finished: {} done, {} running, {} pending, {} failed, {} cancelled{eta}\n",
            s.sweep_id,
            s.name,
            if s.cancelled { " [cancelled]" } else { "" },
            finished,
            s.total,
            c.done,
            c.running,
            c.pending,
            c.failed,
            c.cancelled,
        );
        for f in &s.failures {
            out += &format!("  failed job {} {}\n", f.job_id, f.params_json);
            for r in &f.reasons {
                out += &format!("    {r}\n");
            }
        }
    }
    if !status.workers.is_empty() {
        out += "workers:\n";
        for w in &status.workers {
            let job =
                if w.job_id.is_empty() { "idle".to_string() } else { format!("job {} epoch {}", w.job_id, w.epoch) };
            out += &format!(
                "  {} ({}): {job}, last seen {}\n",
                w.name,
                threads(w.threads),
                age(status.now_ms, w.last_seen_ms)
            );
        }
    }
    out
}

fn table(rows: &[MiRow]) -> String {
    let mut out = format!(
        "{:<8} {:<13} {:>5} {:>5} {:>6} {:<7} {:<12} {:>4} {:>5} {:<5} {:<8} {:>5} {:>7} {:>9} {:>9} {:>8} {:>6}\n",
        "job",
        "dataset",
        "width",
        "depth",
        "kernel",
        "pooling",
        "fc",
        "seed",
        "epoch",
        "split",
        "layer",
        "bin",
        "n",
        "I(X;T)",
        "I(Y;T)",
        "loss",
        "acc"
    );
    for r in rows {
        out += &format!(
            "{:<8} {:<13} {:>5} {:>5} {:>6} {:<7} {:<12} {:>4} {:>5} {:<5} {:<8} {:>5} {:>7} {:>9.4} {:>9.4} {:>8.4} {:>6.3}\n",
            &r.job_id[..8.min(r.job_id.len())],
            r.dataset.as_str(),
            r.width,
            r.depth,
            r.kernel,
            r.pooling.as_str(),
            if r.fc.is_empty() { "-" } else { &r.fc },
            r.seed,
            r.epoch,
            r.split.as_str(),
            r.layer_name,
            r.bin_size,
            r.n,
            r.i_xt,
            r.i_yt,
            r.loss,
            r.accuracy
        );
    }
    out + "(bits)\n"
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> CliResult<()> {
    let url = cli.coordinator.clone();
    match cli.command {
        Command::Serve { listen, data_dir, lease_ttl, max_points, worker_timeout } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            if lease_ttl == 0 {
                anyhow::bail!("--lease-ttl must be at least 1 second");
            }
            let timing = Timing {
                lease_ttl_ms: lease_ttl * 1000,
                heartbeat_interval_ms: (lease_ttl * 1000 / 6).max(500),
                worker_timeout_ms: worker_timeout.saturating_mul(1000),
            };
            let shutdown = async {
                shutdown_signal().await;
                tracing::info!("shutting down: finishing requests in flight, flushing the store");
            };
            tracing::info!("store at {}", data_dir.display());
            service::serve(listener, Config { data_dir, timing, limits: Limits { max_points } }, shutdown).await?;
            Ok(())
        }
        Command::Submit { grid, json } => {
            let text =
                std::fs::read_to_string(&grid).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", grid.display()))?;
            let mut client = connect(&url).await?;
            let request = pb::SubmitRequest { grid_yaml: text, file_name: grid.display().to_string() };
            let r = client.submit(request).await.map_err(|s| status_error(&url, s))?.into_inner();
            if json {
                // Key order is part of the interface: sweep_id, jobs, created.
                println!(
                    "{{\"sweep_id\": {}, \"jobs\": {}, \"created\": {}}}",
                    serde_json::Value::from(r.sweep_id),
                    r.jobs,
                    r.created
                );
            } else if r.created {
                println!("sweep {} ({}): {} jobs submitted", r.sweep_id, r.name, r.jobs);
            } else {
                println!("sweep {} ({}): already submitted, {} jobs, nothing created", r.sweep_id, r.name, r.jobs);
            }
            Ok(())
        }
        Command::Status { sweep, watch: true, .. } => watch(&url, sweep.unwrap_or_default()).await,
        Command::Status { sweep, json, .. } => {
            let mut client = connect(&url).await?;
            let r = client
                .status(pb::StatusRequest { sweep_id: sweep.unwrap_or_default() })
                .await
                .map_err(|s| status_error(&url, s))?
                .into_inner();
            if json {
                println!("{}", status_json(&r));
            } else {
                print!("{}", render_status(&r));
            }
            Ok(())
        }
        Command::Results { sweep, format, filters, out } => {
            let rows = fetch_rows(&url, &sweep, &filters).await?;
            let (format, sink): (Format, Box<dyn Write>) = match &out {
                Some(path) => {
                    let format = match path.extension().and_then(|e| e.to_str()) {
                        Some("csv") => Format::Csv,
                        Some("json" | "jsonl" | "ndjson") => Format::Json,
                        _ => anyhow::bail!("--out {}: use a .csv or .jsonl file name", path.display()),
                    };
                    let file = std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                    (format, Box::new(std::io::BufWriter::new(file)))
                }
                None => (format, Box::new(std::io::stdout().lock())),
            };
            write_rows(&rows, format, sink)?;
            if let Some(path) = out {
                eprintln!("wrote {} rows to {}", rows.len(), path.display());
            }
            Ok(())
        }
        Command::Plot { sweep, out, filters, format } => {
            let rows = fetch_rows(&url, &sweep, &filters).await?;
            if rows.is_empty() {
                anyhow::bail!(
                    "sweep {sweep} has no results yet (matching the filters); `coordinator status {sweep}` shows its progress"
                );
            }
            let written = tokio::task::spawn_blocking(move || plot::plot_all(&rows, &out, format)).await??;
            for path in &written {
                println!("{}", path.display());
            }
            eprintln!("wrote {} figures", written.len());
            Ok(())
        }
        Command::Cancel { sweep } => {
            let mut client = connect(&url).await?;
            let r = client
                .cancel(pb::CancelRequest { sweep_id: sweep.clone() })
                .await
                .map_err(|s| status_error(&url, s))?
                .into_inner();
            println!("sweep {sweep}: {} jobs cancelled (running ones stop at their next heartbeat)", r.cancelled);
            Ok(())
        }
        Command::Retry { sweep, failed } => {
            let mut client = connect(&url).await?;
            let r = client
                .retry(pb::RetryRequest { sweep_id: sweep.clone(), failed })
                .await
                .map_err(|s| status_error(&url, s))?
                .into_inner();
            println!("sweep {sweep}: {} failed jobs re-queued", r.requeued);
            Ok(())
        }
        Command::Workers { json } => {
            let mut client = connect(&url).await?;
            let r = client.workers(pb::WorkersRequest {}).await.map_err(|s| status_error(&url, s))?.into_inner();
            if json {
                for w in &r.workers {
                    println!(
                        "{}",
                        serde_json::json!({"worker_id": w.worker_id, "name": w.name, "job_id": w.job_id, "epoch": w.epoch, "threads": w.threads, "last_seen_ms": w.last_seen_ms})
                    );
                }
            } else if r.workers.is_empty() {
                println!("no workers have registered; start one with `worker --coordinator {url}`");
            } else {
                for w in &r.workers {
                    let job =
                        if w.job_id.is_empty() { "idle".into() } else { format!("job {} epoch {}", w.job_id, w.epoch) };
                    println!(
                        "{} {} ({}): {job}, last heartbeat {}",
                        w.worker_id,
                        w.name,
                        threads(w.threads),
                        age(r.now_ms, w.last_seen_ms)
                    );
                }
            }
            Ok(())
        }
    }
}

fn parse_filters(filters: &[String]) -> CliResult<Vec<pb::Filter>> {
    filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| pb::Filter { key: k.trim().into(), value: v.trim().into() })
                .ok_or_else(|| anyhow::anyhow!("--where {f}: expected KEY=VALUE, e.g. --where layer_name=conv1"))
        })
        .collect()
}

async fn fetch_rows(url: &str, sweep: &str, filters: &[String]) -> CliResult<Vec<MiRow>> {
    let filters = parse_filters(filters)?;
    let mut client = connect(url).await?;
    let mut stream = client
        .results(pb::ResultsRequest { sweep_id: sweep.to_string(), filters })
        .await
        .map_err(|s| status_error(url, s))?
        .into_inner();
    let mut rows = Vec::new();
    while let Some(row) = stream.message().await.map_err(|s| status_error(url, s))? {
        rows.push(serde_json::from_str::<MiRow>(&row.json)?);
    }
    Ok(rows)
}

fn write_rows(rows: &[MiRow], format: Format, mut out: Box<dyn Write>) -> CliResult<()> {
    match format {
        Format::Table => write!(out, "{}", table(rows))?,
        Format::Json => {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
        }
        Format::Csv if rows.is_empty() => writeln!(out, "{}", ibsweep_shared::results::CSV_HEADER)?,
        Format::Csv => {
            let mut csv = CsvWriter::new(&mut out);
            for row in rows {
                csv.write(row)?;
            }
            csv.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `status --watch`: a bar per sweep (finished jobs of all, ETA from finished job durations)
/// and a line per worker; plain periodic lines when stderr is not a terminal. Returns when
/// every watched sweep has nothing pending or running.
async fn watch(url: &str, sweep: String) -> CliResult<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let mut client = connect(url).await?;
    let mut stream = client
        .watch(pb::WatchRequest { sweep_id: sweep, interval_ms: 1000 })
        .await
        .map_err(|s| status_error(url, s))?
        .into_inner();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi =
        MultiProgress::with_draw_target(if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
        .expect("template")
        .progress_chars("=> ");
    let worker_style = ProgressStyle::with_template("  {spinner} {prefix}: {msg}").expect("template");
    let mut bars: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let mut workers: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let mut last_plain = String::new();
    let mut last_print = std::time::Instant::now();
    while let Some(snapshot) = stream.message().await.map_err(|s| status_error(url, s))? {
        for s in &snapshot.sweeps {
            let c = s.counts.unwrap_or_default();
            let bar = bars.entry(s.sweep_id.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(s.total));
                bar.set_style(style.clone());
                bar.set_prefix(s.name.clone());
                bar
            });
            bar.set_position(c.done + c.failed + c.cancelled);
            let eta = eta(s, &snapshot);
            bar.set_message(format!(
                "{} done, {} failed, {} running, {} pending{eta}",
                c.done, c.failed, c.running, c.pending
            ));
        }
        for w in &snapshot.workers {
            if snapshot.now_ms.saturating_sub(w.last_seen_ms) > 300_000 {
                continue; // long gone
            }
            let line = workers.entry(w.worker_id.clone()).or_insert_with(|| {
                let line = multi.add(ProgressBar::new_spinner());
                line.set_style(worker_style.clone());
                line.set_prefix(w.name.clone());
                line
            });
            line.set_message(if w.job_id.is_empty() {
                "idle".into()
            } else {
                format!("job {} epoch {}", &w.job_id[..8.min(w.job_id.len())], w.epoch)
            });
            line.tick();
        }
        if !tty {
            // One line per sweep when its counts change, and at least every 10 s.
            let key: String = snapshot.sweeps.iter().map(|s| format!("{:?}", s.counts)).collect();
            if key != last_plain || last_print.elapsed() >= std::time::Duration::from_secs(10) {
                let workers: Vec<String> = snapshot
                    .workers
                    .iter()
                    .filter(|w| snapshot.now_ms.saturating_sub(w.last_seen_ms) < 300_000)
                    .map(|w| {
                        if w.job_id.is_empty() {
                            format!("{} idle", w.name)
                        } else {
                            format!("{} epoch {}", w.name, w.epoch)
                        }
                    })
                    .collect();
                for line in render_status(&pb::StatusResponse { workers: vec![], ..snapshot.clone() })
                    .lines()
                    .filter(|l| l.starts_with("sweep "))
                {
                    println!("{line} | {}", workers.join(", "));
                }
                std::io::stdout().flush()?;
                last_plain = key;
                last_print = std::time::Instant::now();
            }
        }
        let finished = snapshot.sweeps.iter().all(|s| s.counts.as_ref().is_some_and(|c| c.pending + c.running == 0));
        if finished && !snapshot.sweeps.is_empty() {
            for bar in bars.values().chain(workers.values()) {
                bar.finish();
            }
            return Ok(());
        }
    }
    Ok(())
}

fn status_json(r: &pb::StatusResponse) -> serde_json::Value {
    serde_json::json!({
        "sweeps": r.sweeps.iter().map(|s| {
            let c = s.counts.unwrap_or_default();
            serde_json::json!({
                "sweep_id": s.sweep_id, "name": s.name, "total": s.total, "cancelled": s.cancelled,
                "pending": c.pending, "running": c.running, "done": c.done, "failed": c.failed, "cancelled_jobs": c.cancelled,
                "mean_job_seconds": s.mean_job_seconds,
                "failures": s.failures.iter().map(|f| serde_json::json!({"job_id": f.job_id, "params": f.params_json, "reasons": f.reasons})).collect::<Vec<_>>(),
            })
        }).collect::<Vec<_>>(),
        "workers": r.workers.iter().map(|w| serde_json::json!({"worker_id": w.worker_id, "name": w.name, "job_id": w.job_id, "epoch": w.epoch, "last_seen_ms": w.last_seen_ms})).collect::<Vec<_>>(),
    })
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

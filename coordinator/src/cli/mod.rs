//! The `coordinator` command line: `serve`, and the client commands people and scripts use.
//!
//! # Layout
//! - this module: the flags (clap derive, every one with an `IBSWEEP_*` fallback) and the
//!   dispatch; the connection comes from [`crate::client`], built once from the global flags.
//! - [`serve`]: `coordinator serve`.
//! - [`submit`], [`status`] (with `--watch`), [`results`] (and `plot`), [`control`] (cancel,
//!   retry, workers): one module per command.
//! - [`storage`]: backup, restore, verify.
//! - [`output`]: everything printed (status text and JSON, tables, CSV, worker lines).

mod control;
pub mod output;
mod results;
mod serve;
mod status;
mod storage;
mod submit;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use ibsweep_proto::connect::{ClientConfig, token_from};
use ibsweep_shared::results::Estimator;

use crate::client::Client;
use crate::report::plot::{ImageFormat, Kind as PlotKind};

pub use serve::ServeArgs;

/// ibsweep coordinator: stores sweeps, hands jobs to workers, merges their histograms into
/// mutual-information results.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about)]
pub struct Cli {
    /// The coordinator to talk to (client commands): http://HOST:PORT or https://HOST:PORT.
    #[arg(long, global = true, env = "IBSWEEP_COORDINATOR", default_value = "http://127.0.0.1:50051")]
    pub coordinator: String,
    /// The user token (client commands send it; `serve` requires it on the sweep service).
    #[arg(long, global = true, env = "IBSWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the user token from this file instead (keeps it out of `ps` and shell history).
    #[arg(long, global = true, env = "IBSWEEP_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the coordinator's certificate, for https:// addresses.
    #[arg(long, global = true, env = "IBSWEEP_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator (gRPC server with a durable sled store).
    Serve(Box<ServeArgs>),
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
        /// Every job of the sweep, finished ones included, with each attempt (worker,
        /// start epoch, end, reason).
        #[arg(long, conflicts_with = "watch", requires = "sweep")]
        jobs: bool,
    },
    /// MI rows of a sweep.
    Results {
        sweep: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Keep rows whose column equals the value (as printed in CSV); repeatable.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Write to FILE instead of stdout: CSV for .csv, JSON lines for .json/.jsonl,
        /// Parquet for .parquet (typed columns, the CSV's names and order).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Information planes, MI paths and per-parameter comparisons as images.
    Plot {
        /// The sweep to plot (or `--from-csv`).
        #[arg(required_unless_present = "from_csv")]
        sweep: Option<String>,
        /// Plot rows exported earlier with `results --out FILE.csv` instead of asking a
        /// coordinator (results shared by a colleague, or a report made again offline).
        #[arg(long, value_name = "FILE.csv", conflicts_with = "sweep")]
        from_csv: Option<PathBuf>,
        /// Directory for the figures (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Keep rows whose column equals the value; repeatable.
        #[arg(long = "where", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        #[arg(long, value_enum, default_value_t = ImageFormat::Png)]
        format: ImageFormat,
        /// Draw only these kinds of figure (comma-separated; default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<PlotKind>,
        /// Draw only these estimators' rows (binning, kde-upper, kde-lower, renyi,
        /// sliced; comma-separated or repeated; default: every estimator the rows have).
        #[arg(long, value_delimiter = ',', value_name = "NAME")]
        estimator: Vec<Estimator>,
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
    /// Save a job's checkpoint (safetensors: weights `param/*`, Adam moments, metadata);
    /// finished jobs keep one only under `serve --keep-final-checkpoints`.
    Checkpoint {
        job: String,
        /// Where to write it (loads with `safetensors.torch.load_file` in PyTorch).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// A consistent snapshot of the whole store (and its checkpoints) in one checked file,
    /// taken while the coordinator serves; or, with --data-dir, from a stopped one.
    Backup {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Back up this data directory directly (its coordinator must be stopped).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Build a new store from a backup (into a missing or empty directory only).
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Check a stopped coordinator's store: every record, every cross-record invariant.
    Verify {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
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

/// Runs one command to completion.
pub async fn run(cli: Cli) -> CliResult<()> {
    let token = token_from(cli.token, cli.token_file.as_deref(), "--token")?;
    if let Command::Serve(args) = cli.command {
        return serve::run(*args, token).await;
    }
    // Commands that read only local files never reach for a coordinator, so they work
    // with none running.
    if let Command::Plot { from_csv: Some(csv), out, filters, format, only, estimator, .. } = cli.command {
        let figures = results::Figures { out, format, kinds: plot_kinds(only), estimators: estimator };
        return results::plot_csv(&csv, &filters, figures).await;
    }
    match &cli.command {
        Command::Backup { out, data_dir: Some(dir) } => return storage::backup_offline(dir, out),
        Command::Restore { file, data_dir } => return storage::restore(file, data_dir),
        Command::Verify { data_dir } => return storage::verify(data_dir),
        _ => {}
    }
    let url = cli.coordinator;
    let config = ClientConfig { url: url.clone(), token, tls_ca: cli.tls_ca, tls_identity: None };
    let mut client = Client::connect(&config).await?;
    match cli.command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Submit { grid, json } => submit::run(&mut client, &grid, json).await,
        Command::Status { sweep, json, watch, jobs } => status::run(&mut client, sweep, json, watch, jobs).await,
        Command::Results { sweep, format, filters, out } => {
            results::results(&mut client, &sweep, format, &filters, out.as_deref()).await
        }
        Command::Plot { sweep, out, filters, format, only, estimator, .. } => {
            let sweep = sweep.expect("clap requires a sweep or --from-csv, and --from-csv returned above");
            let figures = results::Figures { out, format, kinds: plot_kinds(only), estimators: estimator };
            results::plot(&mut client, &sweep, &filters, figures).await
        }
        Command::Cancel { sweep } => control::cancel(&mut client, &sweep).await,
        Command::Checkpoint { job, out } => control::checkpoint(&mut client, &job, &out).await,
        Command::Retry { sweep, failed: _ } => control::retry(&mut client, &sweep).await,
        Command::Workers { json } => control::workers(&mut client, &url, json).await,
        Command::Backup { out, data_dir: None } => storage::backup_online(&mut client, &out).await,
        Command::Backup { data_dir: Some(_), .. } | Command::Restore { .. } | Command::Verify { .. } => {
            unreachable!("handled above")
        }
    }
}

/// `--only`, or every kind when it is not given.
fn plot_kinds(only: Vec<PlotKind>) -> Vec<PlotKind> {
    if only.is_empty() { PlotKind::ALL.to_vec() } else { only }
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

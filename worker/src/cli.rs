//! The `worker` command line (clap derive; every flag has an `IBSWEEP_*` fallback).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ibsweep_proto::connect::{ClientConfig, token_from};

use crate::attach::{self, AttachConfig};
use crate::error::{Error, Result};
use crate::train::RunConfig;
use crate::{estimate, run};

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// ibsweep worker: trains the paper's CNNs with libtorch and measures every layer's
/// mutual information.
#[derive(Debug, Parser)]
#[command(name = "worker", version, about)]
pub struct Cli {
    /// Without a subcommand: attach to this coordinator and run its jobs until stopped.
    #[arg(long, env = "IBSWEEP_COORDINATOR", default_value = "http://127.0.0.1:50051")]
    pub coordinator: String,
    /// This worker's name in `coordinator workers` (default: host name and process ID).
    #[arg(long, env = "IBSWEEP_WORKER_NAME")]
    pub name: Option<String>,
    /// The worker token (`serve --worker-token`, or its `--token` when there is no worker token).
    #[arg(long, env = "IBSWEEP_WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the worker token from this file instead (keeps it out of `ps` and shell history).
    #[arg(long, env = "IBSWEEP_WORKER_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the coordinator's certificate, for https:// addresses.
    #[arg(long, env = "IBSWEEP_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// This worker's certificate (PEM), for a coordinator that requires mutual TLS.
    #[arg(long, env = "IBSWEEP_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// This worker's private key (PEM).
    #[arg(long, env = "IBSWEEP_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job on this machine without a coordinator and write its MI rows.
    Run(RunArgs),
    /// Estimate I(X;T) and I(Y;T) of saved activations (npy), one result per bin size.
    Estimate(EstimateArgs),
}

#[derive(Debug, clap::Args)]
pub struct EstimateArgs {
    /// Activations, float32 or float64, shape [N, ...] (flattened per sample, C order).
    #[arg(long, value_name = "A.npy")]
    pub activations: PathBuf,
    /// N integer labels, any integer dtype.
    #[arg(long, value_name = "Y.npy")]
    pub labels: PathBuf,
    /// Which estimator: binning, or one that sees inside wide layers (kde, renyi, sliced;
    /// these use all N rows given, so keep N to a few thousand: their cost grows as N²).
    #[arg(long, value_enum, default_value = "binning")]
    pub estimator: estimate::Estimator,
    /// Bin size (binning); repeat for several (one pass serves all).
    #[arg(long = "bin-size", value_name = "SIZE", default_values_t = [0.67])]
    pub bin_sizes: Vec<f64>,
    /// Variance of the Gaussian noise added to the layer (kde); repeat for several.
    #[arg(long = "noise-variance", value_name = "V", default_values_t = [0.1])]
    pub noise_variances: Vec<f64>,
    /// The network's inputs for the same N samples (renyi: the kernel on X), float, [N, ...].
    #[arg(long, value_name = "X.npy")]
    pub inputs: Option<PathBuf>,
    /// Rényi order α (renyi); repeat for several. 1 is the von Neumann limit.
    #[arg(long = "alpha", value_name = "A", default_values_t = [1.01, 2.0])]
    pub alphas: Vec<f64>,
    /// Kernel width on the activations (renyi): a number, `median` (of pairwise distances)
    /// or `alignment` (the width best aligned with the label kernel).
    #[arg(long, value_name = "S", default_value = "median")]
    pub sigma: crate::estimators::renyi::Sigma,
    /// Kernel width on the inputs (renyi): a number, `median` or `alignment`.
    #[arg(long, value_name = "S", default_value = "median")]
    pub input_sigma: crate::estimators::renyi::Sigma,
    /// Projection directions as the columns of a D x P matrix (sliced), float.
    #[arg(long, value_name = "P.npy")]
    pub projections: Option<PathBuf>,
    /// Neighbours of the k-NN estimate (sliced).
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// Precision of the kernel estimators' matrix products (f32: 4-5x faster, within 1e-3
    /// bits of f64; everything after them is f64).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::estimators::Precision,
    /// One JSON object per parameter value, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Where the data sets are and how many threads to use: shared by every command that trains.
#[derive(Debug, Clone, clap::Args)]
pub struct ComputeArgs {
    /// libtorch intra-op threads, and binning threads (default: the cores this process may use).
    #[arg(long, env = "IBSWEEP_THREADS")]
    pub threads: Option<usize>,
    /// Directory with mnist/ and fashion-mnist/ IDX files (default: the set-up script's cache).
    #[arg(long, visible_alias = "data-dir", env = "IBSWEEP_DATASETS", value_name = "DIR")]
    pub datasets: Option<PathBuf>,
    /// cpu, cuda, cuda:N, or auto (CUDA when libtorch sees one).
    #[arg(long, env = "IBSWEEP_DEVICE", default_value = "auto")]
    pub device: String,
}

impl ComputeArgs {
    pub fn datasets(&self) -> PathBuf {
        self.datasets.clone().unwrap_or_else(crate::data::default_datasets_dir)
    }

    pub fn run_config(&self) -> Result<RunConfig> {
        let threads = self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            return Err(Error::InvalidInput("--threads must be at least 1".into()));
        }
        let device = match self.device.as_str() {
            "auto" => tch::Device::cuda_if_available(),
            "cpu" => tch::Device::Cpu,
            "cuda" => tch::Device::Cuda(0),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => tch::Device::Cuda(n),
                None => {
                    return Err(Error::InvalidInput(format!("--device {other}: expected cpu, cuda, cuda:N or auto")));
                }
            },
        };
        if matches!(device, tch::Device::Cuda(_)) && !tch::Cuda::is_available() {
            return Err(Error::InvalidInput(format!(
                "--device {}: libtorch sees no CUDA device (this build is CPU-only unless LIBTORCH points at a CUDA libtorch)",
                self.device
            )));
        }
        Ok(RunConfig { threads, device })
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job: a YAML file with the keys of one grid point (see docs/usage.md).
    #[arg(value_name = "JOB.yaml")]
    pub job: PathBuf,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Runs the parsed command; `main` maps the error to a message and exit code.
pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        let token = token_from(cli.token, cli.token_file.as_deref(), "--token")
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let client = ClientConfig {
            url: cli.coordinator,
            token,
            tls_ca: cli.tls_ca,
            tls_identity: cli.tls_cert.zip(cli.tls_key),
        };
        // Bad TLS files or a malformed address are the user's to fix, not to retry.
        client.endpoint().map_err(|e| Error::InvalidInput(e.to_string()))?;
        client.bearer().map_err(|e| Error::InvalidInput(e.to_string()))?;
        let config = AttachConfig {
            client,
            name: cli.name.unwrap_or_else(attach::default_name),
            datasets: cli.compute.datasets(),
            run: cli.compute.run_config()?,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Setup(format!("cannot start the async runtime: {e}")))?;
        return runtime.block_on(async {
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            attach::attach(config, rx).await
        });
    };
    match command {
        Command::Run(args) => {
            let spec = run::read_job(&args.job)?;
            let config = args.compute.run_config()?;
            let interrupted = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&interrupted);
            ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
                .map_err(|e| Error::Setup(format!("cannot install the Ctrl-C handler: {e}")))?;
            run::run_local(&spec, &args.out, &args.compute.datasets(), config, interrupted)?;
            eprintln!("wrote {}", args.out.join("mi.csv").display());
            Ok(())
        }
        Command::Estimate(args) => {
            // The kernel estimators' matrix work runs on libtorch's threads.
            tch::set_num_threads(cli.compute.run_config()?.threads as i32);
            let rows = estimate::run(&estimate::Request {
                estimator: args.estimator,
                activations: args.activations,
                labels: args.labels,
                bin_sizes: args.bin_sizes,
                noise_variances: args.noise_variances,
                inputs: args.inputs,
                alphas: args.alphas,
                sigma: args.sigma,
                input_sigma: args.input_sigma,
                projections: args.projections,
                k: args.k,
                precision: args.precision,
            })?;
            if args.json {
                for row in &rows {
                    println!("{row}");
                }
            } else {
                print!("{}", estimate::table(&rows));
            }
            Ok(())
        }
    }
}

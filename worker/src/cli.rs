//! The `worker` command line (clap derive; every flag has an `IBSWEEP_*` fallback).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::estimate;

/// ibsweep worker: trains the paper's CNNs with libtorch and measures every layer's
/// mutual information.
#[derive(Debug, Parser)]
#[command(name = "worker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Bin size; repeat for several (one pass serves all).
    #[arg(long = "bin-size", value_name = "SIZE", default_values_t = [0.67])]
    pub bin_sizes: Vec<f64>,
    /// One JSON object per bin size, one per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command; `main` maps the error to a message and exit code.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Estimate(args) => {
            let rows = estimate::estimate(&args.activations, &args.labels, &args.bin_sizes)?;
            if args.json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row).map_err(|e| Error::InvalidInput(e.to_string()))?);
                }
            } else {
                print!("{}", estimate::table(&rows));
            }
            Ok(())
        }
    }
}

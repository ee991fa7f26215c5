use std::process::ExitCode;

use clap::Parser;

/// ibsweep worker: trains CNNs with libtorch and measures each layer's information.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}

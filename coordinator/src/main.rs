use std::process::ExitCode;

use clap::Parser;
use ibsweep_coordinator::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coordinator: error: {e:#}");
            // A lost or damaged store gets its own code, so a supervisor can tell a restart
            // that helps (75) from one that cannot (65): docs/reliability.md.
            ExitCode::from(e.downcast_ref::<ibsweep_coordinator::error::Error>().map_or(1, |e| e.exit_code()))
        }
    }
}

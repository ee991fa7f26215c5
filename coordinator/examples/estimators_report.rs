//! Regenerates the estimator comparison's figures and tables (`docs/estimators.md`) from
//! its stored results:
//!
//!     cargo run --release -p ibsweep-coordinator --example estimators_report [-- --check]
//!
//! Reads `docs/estimators/{results,sweeps}.csv`, draws each sweep's figures into
//! `docs/estimators/<sweep name>/` (test split; information planes side by side for every
//! estimator setting that has an I(X;T), MI paths for sliced MI) and rewrites the generated
//! tables of `docs/estimators.md`. With `--check` it only reports whether the tables match
//! the data (what `tests/estimators_report.rs` asserts). `deploy/reproduce.sh
//! estimators-report` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use ibsweep_coordinator::report::estimators::Inputs;
use ibsweep_coordinator::report::plot::{self, ImageFormat, Kind};
use ibsweep_coordinator::report::reproduction::fill;
use ibsweep_shared::job::Split;
use ibsweep_shared::results::{Estimator, MiRow};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("estimators_report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("docs/estimators");
    let doc_path = root.join("docs/estimators.md");
    let inputs = Inputs::load(&dir)?;
    let tables = inputs.tables();
    let doc = std::fs::read_to_string(&doc_path).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    let filled = fill(&doc, &tables)?;
    if check {
        if filled != doc {
            return Err(format!("{} does not match its data; run without --check to regenerate", doc_path.display()));
        }
        eprintln!("estimators_report: {} tables match {} rows", tables.len(), inputs.rows.len());
        return Ok(());
    }
    for sweep in &inputs.sweeps {
        let test: Vec<MiRow> =
            inputs.rows.iter().filter(|r| r.sweep_id == sweep.sweep_id && r.split == Split::Test).cloned().collect();
        if test.is_empty() {
            eprintln!("estimators_report: no rows for {} yet", sweep.figure);
            continue;
        }
        let out = dir.join(&sweep.figure);
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        // Per data set, so that the data set itself is not plotted as a swept parameter.
        let mut written = Vec::new();
        let datasets: std::collections::BTreeSet<&str> = test.iter().map(|r| r.dataset.as_str()).collect();
        for dataset in datasets {
            let (planes, sliced): (Vec<MiRow>, Vec<MiRow>) = test
                .iter()
                .filter(|r| r.dataset.as_str() == dataset)
                .cloned()
                .partition(|r| r.estimator != Estimator::Sliced);
            written.extend(plot::plot(&planes, &out, ImageFormat::Png, &[Kind::Compare]).map_err(|e| e.to_string())?);
            written.extend(plot::plot(&sliced, &out, ImageFormat::Png, &[Kind::Paths]).map_err(|e| e.to_string())?);
        }
        eprintln!("estimators_report: {} figures for {} in {}", written.len(), sweep.figure, out.display());
    }
    std::fs::write(&doc_path, filled).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    eprintln!("estimators_report: {} tables written into {}", tables.len(), doc_path.display());
    Ok(())
}

//! Regenerates the paper reproduction's figures and tables from its stored results:
//!
//!     cargo run --release -p ibsweep-coordinator --example reproduction [-- --check]
//!
//! Reads `docs/reproduction/{results,sweeps,reference}.csv`, draws each sweep's figures into
//! `docs/reproduction/<sweep name>/` and rewrites the generated tables of
//! `docs/reproduction.md`. With `--check` it only reports whether the document's tables match
//! the data (what `tests/reproduction.rs` asserts). `deploy/reproduce.sh report` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use ibsweep_coordinator::report::plot::{self, ImageFormat, Kind};
use ibsweep_coordinator::report::reproduction::{self, Inputs, PAPER_BIN};
use ibsweep_shared::job::Split;
use ibsweep_shared::results::MiRow;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reproduction: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("docs/reproduction");
    let doc_path = root.join("docs/reproduction.md");
    let Inputs { rows, sweeps, reference } = Inputs::load(&dir)?;
    let tables = reproduction::tables(&rows, &sweeps, &reference);
    let doc = std::fs::read_to_string(&doc_path).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    let filled = reproduction::fill(&doc, &tables)?;
    if check {
        if filled != doc {
            return Err(format!("{} does not match its data; run without --check to regenerate", doc_path.display()));
        }
        eprintln!("reproduction: {} tables match {} rows", tables.len(), rows.len());
        return Ok(());
    }
    for sweep in &sweeps {
        let mine: Vec<MiRow> = rows.iter().filter(|r| r.sweep_id == sweep.sweep_id).cloned().collect();
        if mine.is_empty() {
            eprintln!("reproduction: no rows for {} yet", sweep.figure);
            continue;
        }
        let out = dir.join(&sweep.figure);
        if out.exists() {
            std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        // Per data set, so that the data set itself is not plotted as a swept parameter.
        let mut written = Vec::new();
        let datasets: std::collections::BTreeSet<&str> = mine.iter().map(|r| r.dataset.as_str()).collect();
        for dataset in datasets {
            let paper: Vec<MiRow> = mine
                .iter()
                .filter(|r| r.dataset.as_str() == dataset && r.bin_size == Some(PAPER_BIN))
                .cloned()
                .collect();
            let mut kinds = vec![Kind::Compare];
            if paper.iter().any(|r| r.seed != paper[0].seed) {
                kinds.push(Kind::Paths);
            }
            written.extend(plot::plot(&paper, &out, ImageFormat::Png, &kinds).map_err(|e| e.to_string())?);
            let test: Vec<MiRow> =
                mine.iter().filter(|r| r.dataset.as_str() == dataset && r.split == Split::Test).cloned().collect();
            written.extend(plot::plot(&test, &out, ImageFormat::Png, &[Kind::Bins]).map_err(|e| e.to_string())?);
        }
        eprintln!("reproduction: {} figures for {} in {}", written.len(), sweep.figure, out.display());
    }
    std::fs::write(&doc_path, filled).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    eprintln!("reproduction: {} tables written into {}", tables.len(), doc_path.display());
    Ok(())
}

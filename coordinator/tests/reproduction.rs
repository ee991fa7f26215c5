//! The reproduction report cannot drift from its data: every generated table in
//! `docs/reproduction.md` is recomputed from `docs/reproduction/results.csv` (with `sweeps.csv`
//! and `reference.csv`) and must equal what is committed. Regenerate with
//! `cargo run --release -p ibsweep-coordinator --example reproduction`.

use std::path::PathBuf;

use ibsweep_coordinator::reproduction::{self, ReferenceRow, SweepEntry};
use ibsweep_shared::results::read_csv_file;

#[test]
fn the_reports_tables_equal_what_its_results_give() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("docs/reproduction");
    let rows = read_csv_file(&dir.join("results.csv")).unwrap();
    let sweeps: Vec<SweepEntry> = reproduction::read_table(&dir.join("sweeps.csv")).unwrap();
    let reference: Vec<ReferenceRow> = reproduction::read_table(&dir.join("reference.csv")).unwrap();
    assert!(!rows.is_empty() && !sweeps.is_empty() && !reference.is_empty());
    for sweep in &sweeps {
        assert!(rows.iter().any(|r| r.sweep_id == sweep.sweep_id), "no rows for {} in results.csv", sweep.figure);
    }
    let tables = reproduction::tables(&rows, &sweeps, &reference);
    let doc = std::fs::read_to_string(root.join("docs/reproduction.md")).unwrap();
    let filled = reproduction::fill(&doc, &tables).unwrap();
    if filled != doc {
        let first = doc.lines().zip(filled.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "docs/reproduction.md differs from its data from line {} on:\n  committed: {:?}\n  from data: {:?}\n\
             regenerate with `cargo run --release -p ibsweep-coordinator --example reproduction`",
            first + 1,
            doc.lines().nth(first),
            filled.lines().nth(first)
        );
    }
}

//! pyarrow reads our Parquet files unchanged: the committed estimators' results (every
//! estimator's columns, nulls where a row has no value) written as `results --out
//! FILE.parquet` writes them, and a file streamed in row groups as the HTTP API sends it,
//! each checked value by value against its CSV (`tests/python/parquet_matches_csv.py`).
//!
//! pyarrow comes with the venv `deploy/setup.sh` installs; without it the test says so
//! and skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use ibsweep_coordinator::parquet::{ParquetRows, ROW_GROUP, write_file};
use ibsweep_shared::results::{CsvWriter, MiRow, read_csv_file};

fn python() -> Option<PathBuf> {
    let cache = std::env::var_os("IBSWEEP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ibsweep"));
    let python = cache.join("bench-venv/bin/python");
    let ok = Command::new(&python).args(["-c", "import pyarrow"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: no pyarrow at {} (deploy/setup.sh installs it)", python.display());
    }
    ok.then_some(python)
}

fn pyarrow_check(python: &Path, parquet: &Path, csv: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/parquet_matches_csv.py");
    let out = Command::new(python).arg(script).arg(parquet).arg(csv).output().unwrap();
    assert!(out.status.success(), "pyarrow disagrees: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pyarrow_reads_the_rows_of_every_estimator_as_the_csv_has_them() {
    let Some(python) = python() else { return };
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/estimators/results.csv");
    let rows = read_csv_file(&csv).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("results.parquet");
    write_file(&parquet, &rows).unwrap();
    let summary = pyarrow_check(&python, &parquet, &csv);
    assert_eq!(summary["rows"], rows.len());
    assert!(summary["nulls"].as_u64().unwrap() > 0, "{summary}");
}

#[test]
fn pyarrow_reads_a_file_streamed_in_row_groups() {
    let Some(python) = python() else { return };
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reproduction/results.csv");
    let rows: Vec<MiRow> = read_csv_file(&csv).unwrap().into_iter().cycle().take(2 * ROW_GROUP + 7).collect();
    let dir = tempfile::tempdir().unwrap();
    let (parquet, csv) = (dir.path().join("streamed.parquet"), dir.path().join("streamed.csv"));
    let mut streamed = ParquetRows::new(Vec::new()).unwrap();
    let mut bytes = Vec::new();
    for page in rows.chunks(2_000) {
        streamed.write(page).unwrap();
        bytes.extend(streamed.take_written().unwrap());
    }
    bytes.extend(streamed.finish().unwrap());
    std::fs::write(&parquet, bytes).unwrap();
    let mut text = Vec::new();
    let mut writer = CsvWriter::new(&mut text);
    for row in &rows {
        writer.write(row).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    std::fs::write(&csv, text).unwrap();
    let summary = pyarrow_check(&python, &parquet, &csv);
    assert_eq!((summary["rows"].as_u64(), summary["row_groups"].as_u64()), (Some(rows.len() as u64), Some(3)));
}

//! The corpus of malformed grids in `tests/bad-grids/`: each `NAME.yaml` must be refused
//! with exactly the text in `NAME.err` (file:line:column: key: message), quickly, and
//! without writing anything to the store. `IBSWEEP_BLESS=1` rewrites the `.err` files
//! (review the diff before committing).

use std::path::Path;
use std::sync::Arc;

use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::error::Error;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::store::{JobStore, SledStore, Tree};

#[test]
fn every_bad_grid_is_refused_with_its_located_error_and_writes_nothing() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-grids");
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let s = Scheduler::open(store, Arc::new(ManualClock::new(1_000_000)), Timing::default()).unwrap();
    let bless = std::env::var_os("IBSWEEP_BLESS").is_some();
    let mut grids: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    grids.sort();
    assert!(grids.len() >= 30, "the corpus has {} grids", grids.len());
    let mut mismatches = Vec::new();
    for grid in &grids {
        let name = grid.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(grid).unwrap();
        let started = std::time::Instant::now();
        let err = match s.submit(&name, &text) {
            Ok(submitted) => panic!("{name} was accepted as sweep {}", submitted.sweep_id),
            Err(Error::InvalidArgument(message)) => message,
            Err(other) => panic!("{name}: not an InvalidArgument: {other}"),
        };
        // A generous bound: the point is that nothing walks a huge product or allocates
        // in proportion to a hostile number.
        assert!(started.elapsed().as_secs() < 5, "{name} took {:?}", started.elapsed());
        assert!(err.starts_with(&format!("{name}:")), "{name}: the error must start with file:line: {err}");
        let expected_path = grid.with_extension("err");
        if bless {
            std::fs::write(&expected_path, format!("{err}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing (IBSWEEP_BLESS=1 writes it)", expected_path.display()));
        if expected.trim_end() != err {
            mismatches.push(format!("{name}\n  expected: {}\n  got:      {err}", expected.trim_end()));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    for tree in [Tree::Sweeps, Tree::Grids, Tree::Jobs, Tree::JobIndex] {
        assert!(s.store().scan(tree, &[]).unwrap().is_empty(), "a refused grid wrote to {}", tree.name());
    }
}

//! The estimator comparison cannot drift from its data: every generated table in
//! `docs/estimators.md` is recomputed from `docs/estimators/results.csv` (with `sweeps.csv`)
//! and must equal what is committed. Regenerate with
//! `cargo run --release -p ibsweep-coordinator --example estimators_report`.

use std::path::PathBuf;

use ibsweep_coordinator::report::estimators::Inputs;
use ibsweep_coordinator::report::reproduction::fill;
use ibsweep_shared::results::Estimator;

#[test]
fn the_estimator_reports_tables_equal_what_its_results_give() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let inputs = Inputs::load(&root.join("docs/estimators")).unwrap();
    assert_eq!(inputs.sweeps.len(), 2, "Fig. 4 and Fig. 7");
    for sweep in &inputs.sweeps {
        assert!(inputs.rows.iter().any(|r| r.sweep_id == sweep.sweep_id), "no rows for {}", sweep.figure);
    }
    for estimator in Estimator::ALL {
        assert!(inputs.rows.iter().any(|r| r.estimator == estimator), "no {} rows", estimator.as_str());
    }
    let doc = std::fs::read_to_string(root.join("docs/estimators.md")).unwrap();
    let filled = fill(&doc, &inputs.tables()).unwrap();
    if filled != doc {
        let first = doc.lines().zip(filled.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "docs/estimators.md differs from its data from line {} on:\n  committed: {:?}\n  from data: {:?}\n\
             regenerate with `cargo run --release -p ibsweep-coordinator --example estimators_report`",
            first + 1,
            doc.lines().nth(first),
            filled.lines().nth(first)
        );
    }
}

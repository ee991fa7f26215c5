//! The estimator comparison cannot drift from its data: every generated table in
//! `docs/estimators.md` is recomputed from `docs/estimators/results.csv` (with `sweeps.csv`)
//! and must equal what is committed. Regenerate with
//! `cargo run --release -p ibsweep-coordinator --example estimators_report`.

use std::path::PathBuf;

use ibsweep_coordinator::report::estimators::Inputs;
use ibsweep_coordinator::report::reproduction::{drift, fill};
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
    let regenerate = "cargo run --release -p ibsweep-coordinator --example estimators_report";
    if let Some(why) = drift("docs/estimators.md", &doc, &filled, regenerate) {
        panic!("{why}");
    }
}

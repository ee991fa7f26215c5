//! The reproduction report cannot drift from its data: every generated table in
//! `docs/reproduction.md` is recomputed from `docs/reproduction/results.csv` (with `sweeps.csv`
//! and `reference.csv`) and must equal what is committed. Regenerate with
//! `cargo run --release -p ibsweep-coordinator --example reproduction`.

use std::path::PathBuf;

use ibsweep_coordinator::report::reproduction::{self, Inputs};

#[test]
fn the_reports_tables_equal_what_its_results_give() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("docs/reproduction");
    let inputs = Inputs::load(&dir).unwrap();
    assert!(!inputs.rows.is_empty() && !inputs.sweeps.is_empty() && !inputs.reference.is_empty());
    for sweep in &inputs.sweeps {
        assert!(
            inputs.rows.iter().any(|r| r.sweep_id == sweep.sweep_id),
            "no rows for {} in results.csv",
            sweep.figure
        );
    }
    let tables = inputs.tables();
    let doc = std::fs::read_to_string(root.join("docs/reproduction.md")).unwrap();
    let filled = reproduction::fill(&doc, &tables).unwrap();
    let regenerate = "cargo run --release -p ibsweep-coordinator --example reproduction";
    if let Some(why) = reproduction::drift("docs/reproduction.md", &doc, &filled, regenerate) {
        panic!("{why}");
    }
}

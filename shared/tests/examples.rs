//! Every grid under `examples/` passes the same validation `coordinator submit` applies.

use ibsweep_shared::grid::Grid;

#[test]
fn every_example_grid_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nparameters:") {
            let grid = Grid::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(grid.job_count() > 0);
            checked.push((path.file_name().unwrap().to_string_lossy().into_owned(), grid.job_count()));
        }
    }
    checked.sort();
    let names: Vec<&str> = checked.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo.yaml",
            "fig4-width.yaml",
            "fig5-kernel.yaml",
            "fig6-depth.yaml",
            "fig7-pooling.yaml",
            "fig8-fc.yaml",
            "repro-fig4-width.yaml",
            "repro-fig5-kernel.yaml",
            "repro-fig6-depth.yaml",
            "repro-fig7-pooling.yaml",
            "repro-fig8-fc.yaml",
        ]
    );
    let jobs: Vec<u64> = checked.iter().map(|(_, j)| *j).collect();
    // The reproduction grids are the paper's at 20 epochs; Fig. 7's with three seeds.
    assert_eq!(jobs, [4, 8, 12, 8, 4, 4, 8, 12, 8, 12, 4]);
}

//! Every grid under `examples/` passes the same validation `coordinator submit` applies.

use ibsweep_shared::grid::Grid;

#[test]
fn every_example_grid_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue; // examples/estimators: checked below
        }
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

/// The reproduction grids are the paper's grids with fewer epochs (and, for Fig. 7, more
/// seeds; for Fig. 6, more bin sizes): the same architectures and data sets, the same data,
/// batch, learning rate and schedule. docs/reproduction.md states exactly this reduction.
#[test]
fn each_reproduction_grid_is_its_paper_grid_at_20_epochs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let points = |name: &str| -> Vec<ibsweep_shared::job::JobSpec> {
        let path = dir.join(name);
        let grid = Grid::parse(name, &std::fs::read_to_string(&path).unwrap()).unwrap();
        (0..grid.index_len()).filter_map(|i| grid.point(i)).map(|p| p.unwrap()).collect()
    };
    for fig in ["fig4-width", "fig5-kernel", "fig6-depth", "fig7-pooling", "fig8-fc"] {
        let paper = points(&format!("{fig}.yaml"));
        let repro = points(&format!("repro-{fig}.yaml"));
        let arch = |s: &ibsweep_shared::job::JobSpec| {
            format!(
                "{} w{} d{} k{} {} {:?} {}",
                s.dataset.as_str(),
                s.width,
                s.depth,
                s.kernel,
                s.pooling.as_str(),
                s.fc,
                s.activation.as_str()
            )
        };
        let mut want: Vec<String> = paper.iter().map(arch).collect();
        let mut got: Vec<String> = repro.iter().map(arch).collect();
        want.sort();
        got.sort();
        got.dedup();
        assert_eq!(got, want, "{fig}: the architectures differ from the paper grid");
        let p = &paper[0];
        for r in &repro {
            assert_eq!(r.epochs, 20, "{fig}");
            assert_eq!(
                (r.batch_size, r.lr, r.train_size, r.test_size, r.sampling, &r.measure.epochs),
                (p.batch_size, p.lr, p.train_size, p.test_size, p.sampling, &p.measure.epochs),
                "{fig}"
            );
            assert!(r.measure.bin_sizes.iter().any(|b| b.get() == 0.67), "{fig}");
        }
    }
}

/// The estimator comparison's grids (`examples/estimators/`) are the reduced reproduction's
/// Fig. 4 and Fig. 7 grids with a `measure.estimators` section, measured on the test split
/// only and (Fig. 7) for seed 0 only: every job is one of the reproduction grid's jobs with
/// those changes, and every architecture of the reproduction grid is there.
#[test]
fn each_estimator_grid_is_its_reproduction_grid_with_estimators() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for fig in ["fig4-width", "fig7-pooling"] {
        let load = |path: std::path::PathBuf| {
            let text = std::fs::read_to_string(&path).unwrap();
            let grid = Grid::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
            (0..grid.index_len()).filter_map(|i| grid.point(i)).map(|p| p.unwrap()).collect::<Vec<_>>()
        };
        let repro = load(dir.join(format!("repro-{fig}.yaml")));
        let with = load(dir.join(format!("estimators/{fig}.yaml")));
        let architectures = |jobs: &[ibsweep_shared::job::JobSpec]| {
            let mut a: Vec<String> = jobs
                .iter()
                .map(|s| format!("{} w{} d{} {}", s.dataset.as_str(), s.width, s.depth, s.pooling.as_str()))
                .collect();
            a.sort();
            a.dedup();
            a
        };
        assert_eq!(architectures(&with), architectures(&repro), "{fig}");
        for w in &with {
            let e = &w.measure.estimators;
            assert!(e.kde.is_some() && e.renyi.is_some() && e.sliced.is_some(), "{fig}: every MI estimator");
            assert!(e.activations.is_none(), "{fig}: sweeps do not carry activation histograms");
            assert_eq!(w.measure.splits, [ibsweep_shared::job::Split::Test], "{fig}");
            let mut stripped = w.clone();
            stripped.measure.estimators = Default::default();
            let matching = repro.iter().any(|r| {
                stripped.measure.splits = r.measure.splits.clone();
                stripped == *r
            });
            assert!(matching, "{fig}: a job that is not the reproduction's with estimators: {w:?}");
        }
    }
}

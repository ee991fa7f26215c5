//! KDE, Rényi and sliced MI in a real sweep (issue #23's wire): a coordinator and workers
//! from the real binaries run one job whose grid asks for every MI estimator. Its
//! estimates travel with the epoch's histograms and come out of `coordinator results` in
//! long form beside the binning rows; a worker SIGKILLed after a checkpoint is resumed by
//! another, and the resumed job's rows (scales held since epoch 0 included) equal an
//! uninterrupted run's. `--where estimator=...` and `plot --estimator` read them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ibsweep_testkit::process::*;
use ibsweep_testkit::{GridBuilder, free_port};

const EPOCHS: u32 = 6;
/// conv1, conv2, softmax.
const LAYERS: usize = 3;
/// Per layer, epoch and split: KDE upper and lower at one absolute and one relative
/// variance, Rényi at one α and two σ (median, alignment), sliced MI.
const ESTIMATES: usize = 4 + 2 + 1;

fn grid() -> String {
    GridBuilder::tiny("estimators")
        .param("width", 2)
        .param("depth", 2)
        .param("seed", 5)
        .param("epochs", EPOCHS)
        .measure("splits", "[train, test]")
        .measure(
            "estimators",
            "{kde: {noise_variance: [0.1], relative_noise: [0.5], samples: 100}, \
             renyi: {alpha: [2], sigma: [median, alignment], samples: 100}, sliced: {projections: 16, k: 3}}",
        )
        .train("train_size", 1000)
        .train("test_size", 500)
        .train("batch_size", 100)
        .train("checkpoint_every", 1)
        .limit("max_attempts", 5)
        .build()
}

type Row = BTreeMap<String, String>;

/// Runs the grid to the end on a coordinator of its own; returns it (still serving), its
/// URL, the sweep and its rows.
fn run_sweep(dir: &Path, name: &str, interrupt: bool) -> (Proc, String, String, Vec<Row>) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let coordinator = serve(port, &dir.join(format!("{name}-store")), 2);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, grid()).unwrap();
    let (sweep, jobs) = submit(&url, &path);
    assert_eq!(jobs, 1);
    if interrupt {
        let first = attach(&url, &format!("{name}-w1"), dir);
        wait_for("a checkpoint at epoch 3", Duration::from_secs(300), || {
            status(&url, &sweep)["running_jobs"][0]["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 3)
        });
        first.kill();
    }
    let worker = attach(&url, &format!("{name}-w2"), dir);
    wait_for(&format!("the {name} run"), Duration::from_secs(600), || count(&status(&url, &sweep), "done") == Some(1));
    drop(worker);
    let rows = results(&url, &sweep);
    (coordinator, url, sweep, rows)
}

#[test]
fn a_sweeps_estimates_travel_with_its_histograms_and_a_resumed_job_reproduces_them() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (reference, _, _, expected) = run_sweep(dir, "reference", false);
    drop(reference);
    let measured = (EPOCHS as usize + 1) * 2 * LAYERS;
    assert_eq!(expected.len(), measured * (1 + ESTIMATES), "one binning row and {ESTIMATES} estimates per layer");

    let by = |estimator: &str| -> Vec<&Row> { expected.iter().filter(|r| r["estimator"] == estimator).collect() };
    assert_eq!(by("binning").len(), measured);
    for (name, rows) in [("kde-upper", 2), ("kde-lower", 2), ("renyi", 2), ("sliced", 1)] {
        assert_eq!(by(name).len(), measured * rows, "{name}");
    }
    for r in &expected {
        let number = |k: &str| r[k].parse::<f64>().unwrap_or_else(|_| panic!("{k} of {r:?}"));
        let n = number("n");
        match r["estimator"].as_str() {
            "binning" => assert!(!r["bin_size"].is_empty() && r["noise_variance"].is_empty(), "{r:?}"),
            "sliced" => {
                assert_eq!(n, if r["split"] == "train" { 1000.0 } else { 500.0 });
                assert!(r["i_xt"].is_empty() && r["bin_size"].is_empty(), "sliced MI has no I(X;T): {r:?}");
                assert_eq!((r["projections"].as_str(), r["k"].as_str()), ("16", "3"));
                assert!(number("i_yt_stderr") >= 0.0);
            }
            other => {
                assert_eq!(n, 100.0, "{other} sees the 100-image sample");
                assert_eq!(r["sample_hash"].len(), 16, "{r:?}");
                assert!(number("i_xt") <= n.log2() + 1e-9, "{r:?}");
            }
        }
        if r["estimator"] == "renyi" {
            assert_eq!(r["alpha"], "2.0");
            assert!(["median", "alignment"].contains(&r["sigma_rule"].as_str()), "{r:?}");
        }
    }
    // KDE's lower bound never exceeds its upper bound, row for row.
    let setting = |r: &Row| ["job_id", "epoch", "split", "layer", "noise_variance"].map(|k| r[k].clone());
    let lower: BTreeMap<[String; 5], &Row> = by("kde-lower").into_iter().map(|r| (setting(r), r)).collect();
    for upper in by("kde-upper") {
        let lower = lower[&setting(upper)];
        for column in ["i_xt", "i_yt"] {
            let (u, l): (f64, f64) = (upper[column].parse().unwrap(), lower[column].parse().unwrap());
            assert!(l <= u + 1e-9, "{column}: lower {l} > upper {u}");
        }
    }
    // Held scales: a relative variance and a median σ are fixed at epoch 0; an aligned σ
    // is chosen again at every epoch (and so moves).
    for (estimator, column) in [("kde-upper", "noise_variance"), ("renyi", "sigma")] {
        let mut per_layer: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        let held = |r: &&Row| r["relative_noise"] == "0.5" || r["sigma_rule"] == "median";
        for r in by(estimator).into_iter().filter(held) {
            per_layer
                .entry((r["split"].clone(), r["layer"].clone(), r["alpha"].clone()))
                .or_default()
                .push(r[column].clone());
        }
        for (layer, values) in per_layer {
            assert_eq!(values.len(), EPOCHS as usize + 1);
            assert!(values.iter().all(|v| *v == values[0]), "{estimator} {column} moved at {layer:?}: {values:?}");
        }
    }
    let aligned: Vec<&Row> = by("renyi").into_iter().filter(|r| r["sigma_rule"] == "alignment").collect();
    assert_eq!(aligned.len(), measured);
    let widths: std::collections::BTreeSet<&str> = aligned.iter().map(|r| r["sigma"].as_str()).collect();
    assert!(widths.len() > LAYERS * 2, "aligned widths should follow training: {widths:?}");

    // Killed after a checkpoint and resumed elsewhere: the same rows, to the last digit.
    let (_coordinator, url, sweep, resumed) = run_sweep(dir, "resumed", true);
    let log = std::fs::read_to_string(dir.join("resumed-w2.log")).unwrap();
    assert!(log.contains("resuming from the checkpoint at epoch"), "the second worker did not resume:\n{log}");
    let strip = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .map(|r| r.iter().filter(|(k, _)| *k != "sweep_id").map(|(k, v)| (k.clone(), v.clone())).collect())
            .collect()
    };
    let (resumed, expected) = (strip(&resumed), strip(&expected));
    assert_eq!(resumed.len(), expected.len());
    let differ: Vec<(&Row, &Row)> = resumed.iter().zip(&expected).filter(|(a, b)| a != b).collect();
    if let Some((got, want)) = differ.first() {
        let columns: Vec<String> =
            got.iter().filter(|(k, v)| want[*k] != **v).map(|(k, v)| format!("{k}: {v} != {}", want[k])).collect();
        panic!(
            "a resumed job's rows must equal an uninterrupted run's: {} of {} differ; the first ({} epoch {} {} layer {}): {}",
            differ.len(),
            expected.len(),
            want["estimator"],
            want["epoch"],
            want["split"],
            want["layer"],
            columns.join(", ")
        );
    }

    // Filters and figures per estimator.
    let sliced =
        client(&url, &["results", &sweep, "--format", "csv", "--where", "estimator=sliced", "--where", "i_xt="]);
    assert!(sliced.status.success(), "{}", String::from_utf8_lossy(&sliced.stderr));
    assert_eq!(csv_rows(&sliced.stdout).len(), measured);
    let out = dir.join("figures");
    let plot = client(&url, &["plot", &sweep, "--out", out.to_str().unwrap(), "--estimator", "renyi,sliced"]);
    assert!(plot.status.success(), "{}", String::from_utf8_lossy(&plot.stderr));
    let files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().any(|f| f.starts_with("plane-") && f.contains("renyi-a2-sigmamedian")), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("paths-") && f.contains("sliced-P16-k3")), "{files:?}");
    assert!(
        !files.iter().any(|f| f.starts_with("plane-") && f.contains("sliced")),
        "sliced MI has no plane: {files:?}"
    );
    assert!(!files.iter().any(|f| f.contains("b0.67")), "binning was not asked for: {files:?}");
    let unknown = client(&url, &["plot", &sweep, "--out", out.to_str().unwrap(), "--estimator", "kde"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown estimator `kde`"));
}

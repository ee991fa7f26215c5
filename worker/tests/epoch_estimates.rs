//! `measure.estimators` in a real training run (`worker run` on MNIST): one row per
//! (epoch, split, layer, parameter value), scales held fixed across epochs, the same rows
//! on a second run, and binning's rows unchanged by the estimators being there.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const JOB: &str = "dataset: mnist
width: 3
depth: 2
kernel: 3
seed: 4
epochs: 2
batch_size: 100
train_size: 600
test_size: 600
measure:
  epochs: every
  splits: [train, test]
  bin_sizes: [0.67]
";

const ESTIMATORS: &str = "  estimators:
    kde: {noise_variance: [0.1], relative_noise: [0.5], samples: 300}
    renyi: {alpha: [1.01, 2], sigma: [median, 5.0], samples: 300}
    sliced: {projections: 32, k: 3}
    activations: {bins: 20}
";

fn run(dir: &Path, job: &str) -> Vec<Value> {
    let file = dir.join("job.yaml");
    std::fs::write(&file, job).unwrap();
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["--threads", "2", "run", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    match std::fs::read_to_string(out.join("estimates.jsonl")) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn estimators_run_in_training_alongside_binning() {
    let (with, without) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rows = run(with.path(), &format!("{JOB}{ESTIMATORS}"));
    assert!(run(without.path(), JOB).is_empty(), "no estimators, no estimates file");

    // 3 epochs x 2 splits x 3 layers x (2 kde + 2 alphas x 2 sigmas + 1 sliced + 1 activations).
    assert_eq!(rows.len(), 3 * 2 * 3 * (2 + 4 + 1 + 1), "{rows:?}");
    let value = |r: &Value, k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    let log2_m = 300f64.log2();
    let job: Value = serde_json::from_str(&std::fs::read_to_string(with.path().join("out/job.json")).unwrap()).unwrap();
    let features: std::collections::BTreeMap<&str, u64> = job["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["features"].as_u64().unwrap()))
        .collect();
    for r in &rows {
        match r["estimator"].as_str().unwrap() {
            "kde" => {
                assert_eq!(r["n"], 300);
                assert!(value(r, "i_xt_lower") <= value(r, "i_xt_upper") + 1e-9, "{r}");
                assert!(value(r, "i_xt_upper") <= log2_m + 1e-9, "{r}");
                assert_eq!(r["sample_hash"].as_str().unwrap().len(), 16);
            }
            "renyi" => assert!(value(r, "i_yt") <= value(r, "s_t").min(value(r, "s_y")) + 1e-9, "{r}"),
            "sliced" => {
                assert_eq!(r["n"], 600, "sliced MI sees the whole split");
                assert!(value(r, "i_yt_stderr") > 0.0, "{r}");
            }
            "activations" => {
                // tanh layers in [-1, 1], the softmax output in [0, 1]; nothing outside.
                let counts: Vec<u64> = r["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
                assert_eq!(counts.len(), 20);
                assert_eq!((r["below"].as_u64(), r["above"].as_u64()), (Some(0), Some(0)), "{r}");
                assert_eq!(counts.iter().sum::<u64>(), r["values"].as_u64().unwrap(), "{r}");
                let per_sample = features[r["layer_name"].as_str().unwrap()];
                assert_eq!(r["values"].as_u64().unwrap(), 600 * per_sample, "{r}");
                let low = if r["layer_name"] == "softmax" { 0.0 } else { -1.0 };
                assert_eq!((value(r, "low"), value(r, "high")), (low, 1.0), "{r}");
            }
            other => panic!("unexpected estimator {other}"),
        }
    }
    // A relative noise variance and a median width are fixed at the first measured epoch.
    for (estimator, key) in [("kde", "noise_variance"), ("renyi", "sigma")] {
        for split in ["train", "test"] {
            for layer in ["conv1", "conv2", "softmax"] {
                let values: BTreeSet<String> = rows
                    .iter()
                    .filter(|r| r["estimator"] == estimator && r["split"] == split && r["layer_name"] == layer)
                    .map(|r| r[key].to_string())
                    .collect();
                assert_eq!(values.len(), 2, "{estimator} {split} {layer}: one fixed and one held value, {values:?}");
            }
        }
    }
    // The sample is the same at every epoch, and differs between the splits.
    let hashes: BTreeSet<(String, String)> = rows
        .iter()
        .filter(|r| r["estimator"] == "kde")
        .map(|r| (r["split"].to_string(), r["sample_hash"].to_string()))
        .collect();
    assert_eq!(hashes.len(), 2, "{hashes:?}");

    // Binning's rows do not notice the estimators.
    let mi = |d: &Path| std::fs::read_to_string(d.join("out/mi.csv")).unwrap();
    assert_eq!(mi(with.path()), mi(without.path()));

    // And a second run gives the same estimates.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(run(again.path(), &format!("{JOB}{ESTIMATORS}")), rows);
}

//! `worker estimate` as a user runs it: npy files in, JSON lines or a table out, and clear
//! errors with exit code 2 for bad input. Results are compared with the definitions written
//! out independently (exact integer patterns, -sum p log2 p).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ibsweep_testkit::Rng;
use ibsweep_worker::estimate::write_npy;

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_worker"))
}

/// Tanh-like rows with many duplicates and imbalanced labels.
fn data(n: usize, features: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let pool: Vec<Vec<f32>> =
        (0..n / 5).map(|_| (0..features).map(|_| ((rng.unit() * 4.0 - 2.0).tanh()) as f32).collect()).collect();
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let row = &pool[(rng.next_u64() % pool.len() as u64) as usize];
        values.extend_from_slice(row);
        let u = rng.unit();
        labels.push(if u < 0.5 {
            0
        } else if u < 0.8 {
            3
        } else {
            (rng.next_u64() % 10) as i64
        });
    }
    (values, labels)
}

fn reference(values: &[f64], labels: &[i64], features: usize, bin: f64) -> [f64; 4] {
    let mut joint: BTreeMap<(Vec<i64>, i64), f64> = BTreeMap::new();
    let mut patterns: BTreeMap<Vec<i64>, f64> = BTreeMap::new();
    let mut ys: BTreeMap<i64, f64> = BTreeMap::new();
    for (row, &y) in values.chunks(features).zip(labels) {
        let code: Vec<i64> = row.iter().map(|&h| (h / bin).floor() as i64).collect();
        *joint.entry((code.clone(), y)).or_default() += 1.0;
        *patterns.entry(code).or_default() += 1.0;
        *ys.entry(y).or_default() += 1.0;
    }
    let n = labels.len() as f64;
    let h = |counts: Vec<f64>, total: f64| -> f64 { counts.iter().map(|c| -(c / total) * (c / total).log2()).sum() };
    let h_t = h(patterns.values().copied().collect(), n);
    let h_y = h(ys.values().copied().collect(), n);
    let h_t_y: f64 = ys
        .iter()
        .map(|(&y, &ny)| ny / n * h(joint.iter().filter(|((_, l), _)| *l == y).map(|(_, &c)| c).collect(), ny))
        .sum();
    [h_t, h_t_y, h_t - h_t_y, h_y]
}

fn run_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = worker().args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn json_matches_independent_reference_to_1e9_bits() {
    let dir = tempfile::tempdir().unwrap();
    let (a, y) = (dir.path().join("a.npy"), dir.path().join("y.npy"));
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let (n, features) = (5000, 12);
    let (values, labels) = data(n, features, &mut rng);
    write_npy(&a, &[n as u64, 3, 4], &values).unwrap();
    write_npy(&y, &[n as u64], &labels).unwrap();
    let rows = run_json(&[
        "estimate",
        "--activations",
        a.to_str().unwrap(),
        "--labels",
        y.to_str().unwrap(),
        "--bin-size",
        "0.67",
        "--bin-size",
        "0.05",
        "--json",
    ]);
    assert_eq!(rows.len(), 2);
    let wide: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    for (row, bin) in rows.iter().zip([0.67, 0.05]) {
        let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected_keys = ["bin_size", "n", "distinct", "h_t", "i_xt", "h_t_given_y", "i_yt", "h_y"];
        expected_keys.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected_keys);
        assert_eq!(row["bin_size"], bin);
        assert_eq!(row["n"], n);
        let [h_t, h_t_y, i_yt, h_y] = reference(&wide, &labels, features, bin);
        for (key, want) in [("h_t", h_t), ("i_xt", h_t), ("h_t_given_y", h_t_y), ("i_yt", i_yt), ("h_y", h_y)] {
            let got = row[key].as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{key} at {bin}: {got} vs {want}");
        }
    }
    // Rows repeat (drawn from a pool of n / 5) and a coarser bin merges more of them.
    assert!(rows[0]["distinct"].as_u64().unwrap() <= rows[1]["distinct"].as_u64().unwrap());
    assert!(rows[1]["distinct"].as_u64().unwrap() <= n as u64 / 5);

    // float64 input with u8 labels, and the table output.
    write_npy(&a, &[n as u64, features as u64], &wide).unwrap();
    let small: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    write_npy(&y, &[n as u64], &small).unwrap();
    let rows64 =
        run_json(&["estimate", "--activations", a.to_str().unwrap(), "--labels", y.to_str().unwrap(), "--json"]);
    assert_eq!(rows64[0]["h_t"], rows[0]["h_t"]);
    let out = worker()
        .args(["estimate", "--activations", a.to_str().unwrap(), "--labels", y.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("I(Y;T)") && table.contains("0.67"), "{table}");
}

fn expect_error(a: &Path, y: &Path, extra: &[&str], needle: &str) {
    let mut args = vec!["estimate", "--activations", a.to_str().unwrap(), "--labels", y.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = worker().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let (a, y) = (dir.path().join("a.npy"), dir.path().join("y.npy"));
    write_npy(&a, &[4, 2], &[0.1f32; 8]).unwrap();
    write_npy(&y, &[3], &[0i32, 1, 2]).unwrap();
    expect_error(&a, &y, &[], "has 4 samples but");
    write_npy(&y, &[4], &[0i32, 1, 2, 1]).unwrap();
    expect_error(&a, &y, &["--bin-size", "0"], "bin size 0");
    expect_error(&a, &y, &["--bin-size=-0.5"], "bin size -0.5");
    write_npy(&a, &[4, 2], &[1i32; 8]).unwrap();
    expect_error(&a, &y, &[], "use float32 or float64");
    write_npy(&a, &[0, 2], &[0f32; 0]).unwrap();
    expect_error(&a, &y, &[], "empty array");
    write_npy(&a, &[4, 2], &[0.1f32; 8]).unwrap();
    write_npy(&y, &[4], &[0.5f32; 4]).unwrap();
    expect_error(&a, &y, &[], "use an integer dtype");
    write_npy(&y, &[4], &[0i64, -1, 0, 0]).unwrap();
    expect_error(&a, &y, &[], "label -1");
    write_npy(&y, &[4], &[0i64; 4]).unwrap();
    write_npy(&a, &[4, 2], &[0.1, 0.2, f32::NAN, 0.0, 0.1, 0.1, 0.1, 0.1]).unwrap();
    expect_error(&a, &y, &[], "non-finite value NaN at sample 1, feature 0");
    std::fs::write(&a, b"not npy").unwrap();
    expect_error(&a, &y, &[], "not a readable npy file");
}

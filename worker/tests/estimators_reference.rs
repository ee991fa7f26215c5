//! The kernel estimators against NumPy ports of their reference code
//! (`bench/estimators_ref.py`), through `worker estimate` as a user runs it, on fixtures
//! with D = 20 and D = 1,024: within 1e-6 bits with f64 matrix products, 1e-3 with the
//! default f32 ones. Then the properties each estimator must have whatever the data, and
//! the errors hostile input gets.
//!
//! The NumPy ports need the venv that `deploy/setup.sh` installs; without it the reference
//! comparisons are skipped with a message (the property and error tests still run).

use std::path::{Path, PathBuf};
use std::process::Command;

use ibsweep_testkit::Rng;
use ibsweep_worker::estimate::{Activations, read_activations, read_labels, write_npy};
use serde_json::Value;

/// `--precision f64`, and the default f32 matrix products.
const F64_BITS: f64 = 1e-6;
const F32_BITS: f64 = 1e-3;

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_worker"))
}

fn python() -> Option<PathBuf> {
    let cache = std::env::var_os("IBSWEEP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ibsweep"));
    let python = cache.join("bench-venv/bin/python");
    let ok = Command::new(&python).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping the NumPy reference comparison: no NumPy at {} (run deploy/setup.sh)", python.display());
    }
    ok.then_some(python)
}

fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/estimators_ref.py")
}

/// Ten classes, `per_class` samples each: tanh of class centres plus noise, so the classes
/// overlap partly and every estimate is strictly between its bounds.
struct Fixture {
    dir: tempfile::TempDir,
    n: usize,
}

impl Fixture {
    fn new(rng: &mut Rng, per_class: usize, features: usize, input_features: usize, projections: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let n = per_class * 10;
        let centres: Vec<Vec<f64>> = (0..10).map(|_| (0..features).map(|_| rng.uniform(-1.5, 1.5)).collect()).collect();
        let mut a = Vec::with_capacity(n * features);
        let mut x = Vec::with_capacity(n * input_features);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % 10;
            a.extend(centres[class].iter().map(|c| (c + 0.8 * rng.normal()).tanh()));
            x.extend((0..input_features).map(|j| (class * j) as f64 / 100.0 + rng.unit()));
            y.push(class as i64);
        }
        let p: Vec<f64> = (0..features * projections).map(|_| rng.normal()).collect();
        write_npy(&dir.path().join("a.npy"), &[n as u64, features as u64], &a).unwrap();
        write_npy(&dir.path().join("x.npy"), &[n as u64, input_features as u64], &x).unwrap();
        write_npy(&dir.path().join("y.npy"), &[n as u64], &y).unwrap();
        write_npy(&dir.path().join("p.npy"), &[features as u64, projections as u64], &p).unwrap();
        Fixture { dir, n }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn estimate(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["estimate".to_string(), "--activations".into(), self.path("a.npy")];
        args.extend(["--labels".into(), self.path("y.npy"), "--json".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = worker().args(&args).output().unwrap();
        assert!(out.status.success(), "worker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        lines(&out.stdout)
    }

    fn reference(&self, python: &Path, args: &[&str]) -> Vec<Value> {
        let mut all = vec![reference_script().to_str().unwrap().to_string(), args[0].to_string()];
        all.extend([self.path("a.npy"), self.path("y.npy")]);
        all.extend(args[1..].iter().map(|s| s.to_string()));
        let out = Command::new(python).args(&all).output().unwrap();
        assert!(out.status.success(), "reference {all:?}: {}", String::from_utf8_lossy(&out.stderr));
        lines(&out.stdout)
    }
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every key of the reference row is in ours with the same value (numbers within
/// `tolerance` bits).
fn assert_agree(ours: &[Value], theirs: &[Value], tolerance: f64, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: row counts");
    for (o, t) in ours.iter().zip(theirs) {
        for (key, want) in t.as_object().unwrap() {
            let got = &o[key];
            match (got.as_f64(), want.as_f64()) {
                (Some(g), Some(w)) => {
                    assert!((g - w).abs() <= tolerance, "{what}: {key} = {g}, the reference says {w}")
                }
                _ => assert_eq!(got, want, "{what}: {key}"),
            }
        }
        assert_eq!(o.as_object().unwrap().len(), t.as_object().unwrap().len(), "{what}: keys of {o}");
    }
}

#[test]
fn every_estimator_matches_its_reference_code() {
    let Some(python) = python() else { return };
    let mut rng = Rng::new(23);
    for features in [20, 1024] {
        let f = Fixture::new(&mut rng, 20, features, 50, 16);
        let (x, p) = (f.path("x.npy"), f.path("p.npy"));
        let kde = f.reference(&python, &["kde", "0.1", "1.5"]);
        let renyi_median = f.reference(&python, &["renyi", &x, "median", "median", "1.01", "2", "3"]);
        let renyi_fixed = f.reference(&python, &["renyi", &x, "2.5", "4", "1.01"]);
        let renyi_aligned = f.reference(&python, &["renyi", &x, "alignment", "median", "1.01", "2"]);
        let sliced = f.reference(&python, &["sliced", &p, "3"]);
        for (precision, tolerance) in [("f64", F64_BITS), ("f32", F32_BITS)] {
            let what = |name: &str| format!("{name}, D = {features}, {precision} products");
            let run = |args: &[&str]| f.estimate(&[args, &["--precision", precision]].concat());
            let ours = run(&["--estimator", "kde", "--noise-variance", "0.1", "--noise-variance", "1.5"]);
            assert_agree(&ours, &kde, tolerance, &what("kde"));
            let ours =
                run(&["--estimator", "renyi", "--inputs", &x, "--alpha", "1.01", "--alpha", "2", "--alpha", "3"]);
            assert_agree(&ours, &renyi_median, tolerance, &what("renyi, median widths"));
            let ours = run(&[
                "--estimator",
                "renyi",
                "--inputs",
                &x,
                "--sigma",
                "2.5",
                "--input-sigma",
                "4",
                "--alpha",
                "1.01",
            ]);
            assert_agree(&ours, &renyi_fixed, tolerance, &what("renyi, fixed widths"));
            // The aligned width is an argmax over a grid: compared where both sides compute
            // the alignments from the same f64 distances.
            if precision == "f64" {
                let ours = run(&[
                    "--estimator",
                    "renyi",
                    "--inputs",
                    &x,
                    "--sigma",
                    "alignment",
                    "--alpha",
                    "1.01",
                    "--alpha",
                    "2",
                ]);
                assert_agree(&ours, &renyi_aligned, tolerance, &what("renyi, aligned width"));
            }
            let ours = run(&["--estimator", "sliced", "--projections", &p, "--k", "3"]);
            assert_agree(&ours, &sliced, tolerance, &what("sliced"));
            assert_eq!(ours[0]["n"], f.n);
        }
    }
}

#[test]
fn the_estimates_keep_their_bounds_and_ignore_sample_order() {
    let mut rng = Rng::new(7);
    let f = Fixture::new(&mut rng, 30, 64, 20, 8);
    let log2_n = (f.n as f64).log2();
    for row in f.estimate(&[
        "--estimator",
        "kde",
        "--noise-variance",
        "0.01",
        "--noise-variance",
        "0.3",
        "--noise-variance",
        "10",
    ]) {
        let v = |k: &str| row[k].as_f64().unwrap();
        assert!(0.0 <= v("i_xt_lower") && v("i_xt_lower") <= v("i_xt_upper") + 1e-12, "{row}");
        assert!(v("i_xt_upper") <= log2_n + 1e-9, "{row}");
        assert!(v("i_yt_lower") <= v("i_xt_lower") + 1e-9 && v("i_yt_upper") <= v("i_xt_upper") + 1e-9, "{row}");
    }
    let x = f.path("x.npy");
    for row in f.estimate(&["--estimator", "renyi", "--inputs", &x, "--alpha", "1", "--alpha", "1.01", "--alpha", "2"])
    {
        let v = |k: &str| row[k].as_f64().unwrap();
        assert!(v("i_yt") <= v("s_t").min(v("s_y")) + 1e-9, "{row}");
        assert!(v("i_xt") <= v("s_t").min(v("s_x")) + 1e-9, "{row}");
        if v("alpha") == 1.0 {
            // The label kernel's von Neumann entropy is the plug-in H(Y): 10 equal classes.
            assert!((v("s_y") - 10f64.log2()).abs() < 1e-9, "{row}");
        }
    }

    // The same samples in another order: every estimate is unchanged.
    // f64 products, so that only the order of the samples differs.
    let all = |f: &Fixture| {
        [
            f.estimate(&["--estimator", "kde", "--precision", "f64"]),
            f.estimate(&["--estimator", "renyi", "--inputs", &x, "--precision", "f64"]),
            f.estimate(&["--estimator", "sliced", "--projections", &f.path("p.npy"), "--precision", "f64"]),
        ]
    };
    let before = all(&f);
    permute(&f, &mut rng);
    let after = all(&f);
    for (b, a) in before.iter().zip(&after) {
        assert_agree(a, b, 1e-9, "permuted samples");
    }
}

/// Shuffles the fixture's samples (activations, inputs and labels together) in place.
fn permute(f: &Fixture, rng: &mut Rng) {
    let read = |name: &str| -> (Vec<f64>, Vec<u64>) {
        match read_activations(Path::new(&f.path(name))).unwrap() {
            (Activations::F64(values), n, width) => (values, vec![n as u64, width as u64]),
            (other, ..) => panic!("{name}: the fixture is f64, got {other:?}"),
        }
    };
    let mut order: Vec<usize> = (0..f.n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for name in ["a.npy", "x.npy"] {
        let (values, shape) = read(name);
        let width = shape[1] as usize;
        let shuffled: Vec<f64> = order.iter().flat_map(|&i| values[i * width..(i + 1) * width].to_vec()).collect();
        write_npy(&f.dir.path().join(name), &shape, &shuffled).unwrap();
    }
    let labels = read_labels(Path::new(&f.path("y.npy"))).unwrap();
    let shuffled: Vec<i64> = order.iter().map(|&i| i64::from(labels[i])).collect();
    write_npy(&f.dir.path().join("y.npy"), &[f.n as u64], &shuffled).unwrap();
}

#[test]
fn hostile_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let labels: Vec<i64> = (0..40).map(|i| i % 4).collect();
    write_npy(&dir.path().join("y.npy"), &[40], &labels).unwrap();
    let mut good: Vec<f64> = (0..40 * 5).map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0).collect();
    write_npy(&dir.path().join("good.npy"), &[40, 5], &good).unwrap();
    good[17] = f64::NAN;
    write_npy(&dir.path().join("nan.npy"), &[40, 5], &good).unwrap();
    write_npy(&dir.path().join("constant.npy"), &[40, 5], &vec![0.5f64; 200]).unwrap();
    write_npy(&dir.path().join("p.npy"), &[5, 4], &(0..20).map(|i| i as f64 - 9.5).collect::<Vec<_>>()).unwrap();
    let few: Vec<i64> = (0..40).map(|i| if i < 2 { 9 } else { i % 4 }).collect();
    write_npy(&dir.path().join("few.npy"), &[40], &few).unwrap();

    let expect = |args: &[&str], needle: &str| {
        let out = worker().arg("estimate").args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: expected `{needle}` in: {stderr}");
    };
    let (good, nan, constant, y, p) =
        (path("good.npy"), path("nan.npy"), path("constant.npy"), path("y.npy"), path("p.npy"));
    expect(
        &["--activations", &nan, "--labels", &y, "--estimator", "kde"],
        "non-finite value NaN at sample 3, feature 2",
    );
    expect(&["--activations", &constant, "--labels", &y, "--estimator", "kde"], "every sample is identical");
    expect(
        &["--activations", &constant, "--labels", &y, "--estimator", "sliced", "--projections", &p],
        "every sample is identical",
    );
    expect(
        &["--activations", &good, "--labels", &y, "--estimator", "kde", "--noise-variance", "0"],
        "noise variance must be a positive",
    );
    expect(
        &["--activations", &good, "--labels", &y, "--estimator", "renyi", "--inputs", &good, "--sigma=-1"],
        "sigma must be a positive number",
    );
    expect(&["--activations", &good, "--labels", &y, "--estimator", "renyi"], "--estimator renyi needs --inputs");
    expect(
        &["--activations", &good, "--labels", &path("few.npy"), "--estimator", "sliced", "--projections", &p],
        "class 9 has 2 samples; sliced needs at least 4",
    );
    expect(
        &["--activations", &good, "--labels", &y, "--estimator", "sliced", "--projections", &good],
        "projections for 40 features, the layer has 5",
    );
}

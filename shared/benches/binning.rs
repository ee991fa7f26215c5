//! Binning + hashing + counting of the widest paper layer (10,000 x 9,408 f32, 376 MB),
//! against the paper's NumPy pipeline on the same data, side by side.
//!
//! Run with `deploy/bench.sh binning` (it creates the NumPy virtual environment), or
//! `cargo bench -p ibsweep-shared --bench binning` with `IBSWEEP_BENCH_PYTHON` pointing at a
//! Python that has NumPy (the NumPy side is skipped, and said so, without one).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ibsweep_shared::measure::binning::Kernel;
use ibsweep_shared::measure::{BinSize, Binner, LayerHistogram};

const ROWS: usize = 10_000;
const FEATURES: usize = 9_408;
/// Whether half the rows repeat earlier ones (a saturating layer) or all are distinct (a wide
/// conv layer at the ceiling, the common case at bin 0.67). Set IBSWEEP_BENCH_REPEATS=1.
static REPEATS: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var("IBSWEEP_BENCH_REPEATS").is_ok_and(|v| v == "1"));

/// Tanh-like activations where about half the rows repeat, like a saturating layer.
fn layer() -> (Vec<f32>, Vec<u32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut values = Vec::with_capacity(ROWS * FEATURES);
    let mut labels = Vec::with_capacity(ROWS);
    for row in 0..ROWS {
        if *REPEATS && row % 2 == 1 && row > 1 {
            let copy = (next() as usize % row) * FEATURES;
            values.extend_from_within(copy..copy + FEATURES);
        } else {
            values
                .extend((0..FEATURES).map(|_| ((next() >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0).tanh() as f32));
        }
        labels.push((next() % 10) as u32);
    }
    (values, labels)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn rust_once(values: &[f32], labels: &[u32], kernel: Kernel) -> (f64, usize) {
    let binner = Binner::with_kernel(vec![BinSize::new(0.67).unwrap()], kernel);
    let start = Instant::now();
    let hashes = binner.hash_rows(values, FEATURES).unwrap();
    let mut histogram = LayerHistogram::new(10);
    histogram.add(&hashes[0], labels).unwrap();
    (start.elapsed().as_secs_f64(), histogram.distinct())
}

fn rust(values: &[f32], labels: &[u32], kernel: Kernel, threads: usize, reps: usize) -> (f64, usize) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let runs: Vec<(f64, usize)> = (0..reps).map(|_| rust_once(values, labels, kernel)).collect();
        (median(runs.iter().map(|r| r.0).collect()), runs[0].1)
    })
}

const NUMPY: &str = r#"
import sys, time, numpy as np
rows, features, path, labels_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
a = np.fromfile(path, dtype=np.float32).reshape(rows, features)
y = np.fromfile(labels_path, dtype=np.uint32)
times = []
for _ in range(3):
    t = time.perf_counter()
    codes = np.floor(a / 0.67)                       # the paper's binning
    view = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.dtype.itemsize * features)))
    _, inverse = np.unique(view, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse * 10 + y, minlength=(inverse.max() + 1) * 10)
    times.append(time.perf_counter() - t)
print(sorted(times)[1], inverse.max() + 1, np.__version__)
"#;

fn numpy(dir: &Path, values: &[f32], labels: &[u32]) -> Option<(f64, usize, String)> {
    let python = std::env::var("IBSWEEP_BENCH_PYTHON").ok()?;
    let data = dir.join("layer.f32");
    let label_file = dir.join("labels.u32");
    std::fs::write(&data, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    std::fs::write(&label_file, labels.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let out = Command::new(python)
        .args(["-c", NUMPY, &ROWS.to_string(), &FEATURES.to_string()])
        .arg(&data)
        .arg(&label_file)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("numpy side failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.to_string()))
}

/// The memory read limit: summing the array touches every byte once and does nothing else.
fn plain_sum(values: &[f32], threads: usize) -> f64 {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        median(
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    // Integer adds vectorize (float sums do not, being order-dependent).
                    let sum: u64 = values
                        .par_chunks(1 << 16)
                        .map(|c| c.iter().map(|v| u64::from(v.to_bits())).fold(0u64, u64::wrapping_add))
                        .reduce(|| 0, u64::wrapping_add);
                    std::hint::black_box(sum);
                    start.elapsed().as_secs_f64()
                })
                .collect(),
        )
    })
}

fn main() {
    let (values, labels) = layer();
    let gb = (values.len() * 4) as f64 / 1e9;
    let kind = if *REPEATS { "half the rows repeated" } else { "all rows distinct" };
    println!("layer: {ROWS} x {FEATURES} f32 = {:.0} MB, tanh-like, {kind}, bin 0.67, 10 labels", gb * 1e3);
    let kernel = Kernel::detect();
    let (portable_1, distinct) = rust(&values, &labels, Kernel::Portable, 1, 3);
    let (fast_1, _) = rust(&values, &labels, kernel, 1, 5);
    let (fast_2, _) = rust(&values, &labels, kernel, 2, 5);
    println!("{:<44} {:>9} {:>10} {:>12}", "pipeline", "seconds", "GB/s", "vs NumPy");
    let dir = std::env::temp_dir().join(format!("ibsweep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let reference = numpy(&dir, &values, &labels);
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = |t: f64| reference.as_ref().map_or("-".to_string(), |(n, _, _)| format!("{:.1}x", n / t));
    if let Some((t, d, version)) = &reference {
        println!(
            "{:<44} {:>9.3} {:>10.2} {:>12}",
            format!("NumPy {version} floor + unique rows (paper)"),
            t,
            gb / t,
            "1.0x"
        );
        println!("  (NumPy distinct patterns: {d}; ours: {distinct})");
    } else {
        println!("NumPy side skipped: set IBSWEEP_BENCH_PYTHON (deploy/bench.sh does)");
    }
    println!(
        "{:<44} {:>9.3} {:>10.2} {:>12}",
        "ibsweep, portable kernel, 1 thread",
        portable_1,
        gb / portable_1,
        ratio(portable_1)
    );
    println!(
        "{:<44} {:>9.3} {:>10.2} {:>12}",
        format!("ibsweep, {kernel:?} kernel, 1 thread"),
        fast_1,
        gb / fast_1,
        ratio(fast_1)
    );
    println!(
        "{:<44} {:>9.3} {:>10.2} {:>12}",
        format!("ibsweep, {kernel:?} kernel, 2 threads"),
        fast_2,
        gb / fast_2,
        ratio(fast_2)
    );
    println!("scaling 1 -> 2 threads: {:.2}x", fast_1 / fast_2);
    let (sum_1, sum_2) = (plain_sum(&values, 1), plain_sum(&values, 2));
    println!(
        "memory read limit (plain sum): 1 thread {:.3} s = {:.2} GB/s, 2 threads {:.3} s = {:.2} GB/s",
        sum_1,
        gb / sum_1,
        sum_2,
        gb / sum_2
    );
    println!("binning at {:.0}% of the 2-thread read limit", 100.0 * sum_2 / fast_2);
}

//! The loader on the real files installed by `deploy/setup.sh` (both data sets, both
//! halves), checked against facts from `../shared/perf-notes.md`.

use std::collections::HashSet;

use ibsweep_shared::job::Dataset;
use ibsweep_worker::data::{self, Part};

fn h_y(labels: &[u8]) -> f64 {
    let mut counts = [0u64; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let n = labels.len() as f64;
    -counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n * (c as f64 / n).log2()).sum::<f64>()
}

#[test]
fn both_data_sets_load_with_known_sizes_and_label_entropy() {
    let dir = data::default_datasets_dir();
    let cases = [
        (Dataset::Mnist, Part::Train, 60_000, 3.3198709),
        (Dataset::Mnist, Part::Test, 10_000, 3.3194225),
        (Dataset::FashionMnist, Part::Train, 60_000, std::f64::consts::LOG2_10),
        (Dataset::FashionMnist, Part::Test, 10_000, std::f64::consts::LOG2_10),
    ];
    for (dataset, part, n, entropy) in cases {
        let images = data::load(&dir, dataset, part).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(images.len(), n, "{dataset:?} {part:?}");
        assert_eq!(images.pixels.len(), n * data::PIXELS);
        assert!(images.pixels.iter().all(|p| (0.0..=1.0).contains(p)));
        assert!((h_y(&images.labels) - entropy).abs() < 1e-6, "{dataset:?} {part:?}");
    }
}

#[test]
fn every_test_image_is_distinct() {
    // Tests of the estimator's ceiling (I(X;T) = log2 N) rely on this.
    let images = data::load(&data::default_datasets_dir(), Dataset::Mnist, Part::Test).unwrap();
    let distinct: HashSet<Vec<u32>> =
        (0..images.len()).map(|i| images.image(i).iter().map(|p| p.to_bits()).collect()).collect();
    assert_eq!(distinct.len(), 10_000);
}

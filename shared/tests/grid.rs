//! Grid files: expansion order, include/exclude, and every class of error located in the file.

use ibsweep_shared::grid::Grid;
use ibsweep_shared::job::{Dataset, EpochSchedule, Pooling};

const GRID: &str = "\
name: width-mnist
description: Fig. 4
parameters:
  dataset: {values: [mnist, fashion-mnist]}
  width:   {values: [2, 4, 6]}
  depth:   {value: 6}
  kernel:  {value: 3}
  pooling: {value: none}
  fc:      {value: []}
  seed:    {values: [0, 1]}
  epochs:  {value: 100}
include:
  - {dataset: mnist, width: 6, fc: [500, 1024, 500], seed: 0}
exclude:
  - {dataset: fashion-mnist, width: 2}
measure: {epochs: \"log:36\", splits: [train, test], bin_sizes: [0.67]}
train: {train_size: 10000, test_size: 10000, batch_size: 1000, lr: 0.001, activation: tanh}
limits: {max_attempts: 3}
";

#[test]
fn expands_lazily_in_file_order_with_include_and_exclude() {
    let grid = Grid::parse("grid.yaml", GRID).unwrap();
    assert_eq!(grid.index_len(), 12 + 1);
    assert_eq!(grid.job_count(), 12 - 2 + 1);
    let p0 = grid.point(0).unwrap().unwrap();
    assert_eq!((p0.dataset, p0.width, p0.seed), (Dataset::Mnist, 2, 0));
    let p1 = grid.point(1).unwrap().unwrap();
    assert_eq!((p1.width, p1.seed), (2, 1), "seed (last parameter) varies fastest");
    // fashion-mnist x width 2 is excluded: indices 6 and 7.
    assert!(grid.point(6).is_none() && grid.point(7).is_none());
    assert_eq!(grid.point(8).unwrap().unwrap().width, 4);
    let extra = grid.point(12).unwrap().unwrap();
    assert_eq!((extra.fc.clone(), extra.depth, extra.epochs), (vec![500, 1024, 500], 6, 100));
    assert_eq!(p0.measure.epochs, EpochSchedule::Log(36));
    assert_eq!((p0.pooling, p0.lr, p0.batch_size), (Pooling::None, 0.001, 1000));
    assert!(grid.point(13).is_none());
    assert_eq!(grid.limits.max_attempts, 3);
    // Same content, same canonical form (the sweep ID); other content differs.
    assert_eq!(grid.canonical(), Grid::parse("other.yaml", GRID).unwrap().canonical());
    let other = Grid::parse("g", &GRID.replace("epochs:  {value: 100}", "epochs:  {value: 101}")).unwrap();
    assert_ne!(grid.canonical(), other.canonical());
}

fn error(text: &str) -> String {
    Grid::parse("grid.yaml", text).unwrap_err().to_string()
}

#[test]
fn every_error_names_file_line_and_key() {
    let unknown_param = GRID.replace("  epochs:  {value: 100}", "  epochs:  {value: 100}\n  widht: {value: 3}");
    let e = error(&unknown_param);
    assert!(e.starts_with("grid.yaml:12:3: parameters.widht: unknown parameter"), "{e}");

    let e = error(&GRID.replace("width:   {values: [2, 4, 6]}", "width:   {values: [2, four, 6]}"));
    assert!(e.starts_with("grid.yaml:5:3: parameters.width: value \"four\""), "{e}");

    let e = error(&GRID.replace("width:   {values: [2, 4, 6]}", "width:   {values: []}"));
    assert!(e.starts_with("grid.yaml:5:3: parameters.width: `values` is empty"), "{e}");

    let e = error(&GRID.replace("width:   {values: [2, 4, 6]}", "width:   {value: 2, values: [3]}"));
    assert!(e.contains("grid.yaml:5:3: parameters.width: give exactly one"), "{e}");

    let e = error(&GRID.replace("limits: {max_attempts: 3}", "limits: {max_attempts: 3}\ncolour: red"));
    assert!(e.starts_with("grid.yaml:19:1: colour: unknown field `colour`"), "{e}");

    let e = error(&GRID.replace("dataset: {values: [mnist, fashion-mnist]}", "dataset: {values: [mnist, cifar]}"));
    assert!(e.contains("parameters.dataset: value \"cifar\"") && e.contains("unknown variant"), "{e}");

    let e = error(&GRID.replace("measure: {epochs: \"log:36\"", "measure: {epochs: \"log:x\""));
    assert!(e.starts_with("grid.yaml:16:") && e.contains("log:N"), "{e}");

    // An impossible shape names the point and the parameter's line.
    let e = error(&GRID.replace("kernel:  {value: 3}", "kernel:  {values: [3, 11]}"));
    assert!(e.contains("point {") && e.contains("kernel=11") && e.contains("smaller than its kernel"), "{e}");
    assert!(e.starts_with("grid.yaml:7:3: "), "the kernel's line: {e}");

    let e = error(
        &GRID
            .replace("  - {dataset: mnist, width: 6, fc: [500, 1024, 500], seed: 0}", "  - {dataset: mnist, width: 6}"),
    );
    assert!(e.starts_with("grid.yaml:13:") && e.contains("include[0]: must set `seed`"), "{e}");

    let e = error(&GRID.replace("  - {dataset: fashion-mnist, width: 2}", "  - {dataset: fashion-mnist, colour: 2}"));
    assert!(e.contains("exclude[0]: unknown parameter `colour`"), "{e}");

    let everything = GRID
        .replace("  - {dataset: fashion-mnist, width: 2}", "  - {epochs: 100}")
        .replace("include:\n  - {dataset: mnist, width: 6, fc: [500, 1024, 500], seed: 0}\n", "");
    assert!(error(&everything).contains("no points"), "{}", error(&everything));

    assert!(error("name: x\n").contains("missing field `parameters`"));
    assert!(error(&GRID.replace("limits: {max_attempts: 3}", "limits: {max_attempts: 0}")).contains("max_attempts"));
}

#[test]
fn a_million_points_parse_without_expanding() {
    let widths: Vec<String> = (1..=1000).map(|w| w.to_string()).collect();
    let seeds: Vec<String> = (0..1000).map(|s| s.to_string()).collect();
    let text = format!(
        "name: big\nparameters:\n  dataset: {{value: mnist}}\n  width: {{values: [{}]}}\n  depth: {{value: 2}}\n  kernel: {{value: 3}}\n  seed: {{values: [{}]}}\n  epochs: {{value: 1}}\n",
        widths.join(", "),
        seeds.join(", ")
    );
    let grid = Grid::parse("big.yaml", &text).unwrap();
    assert_eq!(grid.job_count(), 1_000_000);
    let last = grid.point(999_999).unwrap().unwrap();
    assert_eq!((last.width, last.seed), (1000, 999));
}

#[test]
fn exclude_is_counted_without_walking_the_product() {
    // 10^4 x 10^4 x 10^3 = 10^11 points: walking them would take hours.
    let seeds: Vec<String> = (0..10_000).map(|s| s.to_string()).collect();
    let lrs: Vec<String> = (1..=10_000).map(|i| format!("{}e-6", i)).collect();
    let batches: Vec<String> = (1..=1000).map(|b| b.to_string()).collect();
    let text = format!(
        "name: huge\nparameters:\n  dataset: {{value: mnist}}\n  width: {{value: 2}}\n  depth: {{value: 1}}\n  kernel: {{value: 3}}\n  epochs: {{value: 1}}\n  seed: {{values: [{}]}}\n  lr: {{values: [{}]}}\n  batch_size: {{values: [{}]}}\nexclude:\n  - {{seed: 0}}\n  - {{lr: 1e-6}}\n  - {{seed: 0, batch_size: 5}}\ntrain: {{train_size: 1000, test_size: 1000}}\n",
        seeds.join(", "),
        lrs.join(", "),
        batches.join(", ")
    );
    let started = std::time::Instant::now();
    let grid = Grid::parse_limited("huge.yaml", &text, u64::MAX).unwrap();
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    // |seed=0 or lr=1e-6| = 10^4*10^3 + 10^4*10^3 - 10^3.
    assert_eq!(grid.job_count(), 100_000_000_000 - (10_000_000 + 10_000_000 - 1_000));
    // The default limit refuses it with the count named.
    let e = Grid::parse("huge.yaml", &text).unwrap_err().to_string();
    assert!(e.contains("100000000000 points, more than the 1000000"), "{e}");
}

#[test]
fn exclude_counts_match_a_walk_of_small_products() {
    let text = "\
name: small
parameters:
  dataset: {values: [mnist, fashion-mnist]}
  width: {values: [1, 2, 3]}
  depth: {values: [1, 2]}
  kernel: {value: 3}
  seed: {values: [0, 1, 2, 3]}
  epochs: {value: 1}
exclude:
  - {dataset: mnist, width: 2}
  - {width: 2, seed: 1}
  - {depth: 2, seed: 3}
  - {dataset: fashion-mnist, width: 3, depth: 1, seed: 0}
  - {width: 7}
  - {seed: 2}
include:
  - {dataset: mnist, width: 5, depth: 1, seed: 0}
";
    let grid = Grid::parse("small.yaml", text).unwrap();
    let walked = (0..grid.index_len()).filter(|&i| grid.point(i).is_some()).count() as u64;
    assert_eq!(grid.job_count(), walked);
    assert!(walked < 2 * 3 * 2 * 4 + 1);
}

mod mutated {
    use ibsweep_shared::grid::Grid;
    use proptest::prelude::*;

    const VALID: &str = "name: m\nparameters:\n  dataset: {values: [mnist, fashion-mnist]}\n  width: {values: [1, 2]}\n  depth: {value: 2}\n  kernel: {value: 3}\n  epochs: {value: 3}\nexclude:\n  - {width: 2}\nmeasure: {epochs: every, splits: [test], bin_sizes: [0.67]}\ntrain: {train_size: 100, test_size: 100, batch_size: 10}\n";

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The short, always-run version of the `grid` fuzz target.
        #[test]
        fn mutated_grids_parse_or_fail_cleanly(at in 0usize..VALID.len(), cut in 0usize..20, insert in ".{0,12}") {
            let mut text = VALID.to_string();
            let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let end = (at + cut).min(text.len());
            let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            text.replace_range(at..end, &insert);
            if let Ok(grid) = Grid::parse("m.yaml", &text) {
                for i in 0..grid.index_len().min(16) {
                    if let Some(point) = grid.point(i) {
                        point.unwrap().validate().unwrap();
                    }
                }
            }
        }
    }
}

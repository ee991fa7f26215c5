//! Figures from result rows: every kind is written, seeds are averaged into one point, and
//! both image formats work.

use ibsweep_coordinator::report::plot::{ImageFormat, Kind, plot, plot_all};
use ibsweep_shared::job::JobSpec;
use ibsweep_shared::measure::Estimate;
use ibsweep_shared::results::MiRow;

fn rows() -> Vec<MiRow> {
    let mut rows = Vec::new();
    for width in [2, 6] {
        for seed in [0, 1] {
            let spec: JobSpec = serde_json::from_value(serde_json::json!({
                "dataset": "mnist", "width": width, "depth": 2, "kernel": 3, "epochs": 4, "seed": seed,
            }))
            .unwrap();
            for epoch in 0..=4u32 {
                for (layer, name) in [(1, "conv1"), (2, "conv2"), (3, "softmax")] {
                    let x = 13.28 - f64::from(layer) * 2.0 + f64::from(epoch) * 0.3 + f64::from(seed as u32) * 0.6;
                    let e = Estimate {
                        n: 10_000,
                        distinct: 100,
                        h_t: x,
                        i_xt: x,
                        h_t_given_y: x - 2.0,
                        i_yt: 2.0 + f64::from(epoch) * 0.2,
                        h_y: 3.32,
                    };
                    let key = ibsweep_testkit::measurement(epoch, layer, name);
                    rows.push(MiRow::new("s", &format!("job-{width}-{seed}"), &spec, &key, &e));
                }
            }
        }
    }
    rows
}

#[test]
fn writes_planes_paths_and_comparisons_in_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let written = plot_all(&rows(), dir.path(), ImageFormat::Png).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    // Two points (widths), seeds averaged: a plane and a paths figure each, one comparison.
    assert_eq!(names.iter().filter(|n| n.starts_with("plane-")).count(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("paths-")).count(), 2, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("compare-width-")).count(), 1, "{names:?}");
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{}", path.display());
        assert!(bytes.len() > 10_000, "{} looks empty", path.display());
    }
    let svg = plot_all(&rows(), &dir.path().join("svg"), ImageFormat::Svg).unwrap();
    let text = std::fs::read_to_string(&svg[0]).unwrap();
    assert!(text.contains("<svg") && text.contains("I(Y;T) (bits)") && text.contains("mean of 2 seeds"));
}

#[test]
fn draws_only_the_kinds_asked_for_and_a_bin_size_figure_where_there_are_several_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = rows();
    assert!(plot(&rows, dir.path(), ImageFormat::Png, &[Kind::Bins]).unwrap().is_empty(), "one bin size: no figure");
    let coarse: Vec<MiRow> =
        rows.iter().map(|r| MiRow { bin_size: Some(2.0), i_xt: r.i_xt.map(|x| x / 2.0), ..r.clone() }).collect();
    rows.extend(coarse);
    let written = plot(&rows, dir.path(), ImageFormat::Png, &[Kind::Bins, Kind::Compare]).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("bins-")).count(), 2, "one per width: {names:?}");
    // A comparison per bin size; no planes or paths.
    assert_eq!(names.iter().filter(|n| n.starts_with("compare-width-")).count(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("bins-") || n.starts_with("compare-")), "{names:?}");
}

/// Writes the figures of `rows()` to IBSWEEP_PLOT_SAMPLE (for looking at them).
#[test]
fn sample_figures_when_asked() {
    if let Some(dir) = std::env::var_os("IBSWEEP_PLOT_SAMPLE") {
        plot_all(&rows(), std::path::Path::new(&dir), ImageFormat::Png).unwrap();
    }
}

/// `plot --from-csv` reads only the file: it works with no coordinator anywhere (the
/// address given is a closed port).
#[test]
fn plot_from_csv_needs_no_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("results.csv");
    let mut csv = ibsweep_shared::results::CsvWriter::new(std::fs::File::create(&csv_path).unwrap());
    for row in rows() {
        csv.write(&row).unwrap();
    }
    csv.flush().unwrap();
    drop(csv);
    let closed = ibsweep_testkit::closed_addr();
    let plots = dir.path().join("plots");
    let (csv_arg, plots_arg) = (csv_path.to_str().unwrap(), plots.to_str().unwrap());
    let out = ibsweep_testkit::process::client(
        &format!("http://{closed}"),
        &["plot", "--from-csv", csv_arg, "--only", "planes", "--out", plots_arg],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_dir(dir.path().join("plots")).unwrap().count();
    assert_eq!(written, 2, "one information plane per width");
}

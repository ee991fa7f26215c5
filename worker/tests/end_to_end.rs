//! The real binaries as processes: a coordinator, two workers, a tiny grid run to completion;
//! results equal `worker run` of the same job spec; a worker killed with SIGKILL and a
//! coordinator restarted mid-sweep lose nothing.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use ibsweep_testkit::process::{attach, client, csv_rows, status, submit, wait_for};
use ibsweep_testkit::{GridBuilder, free_port};

fn grid_text() -> String {
    GridBuilder::tiny("e2e")
        .values("dataset", ["mnist", "fashion-mnist"])
        .values("width", [2, 3])
        .param("depth", 2)
        .param("seed", 1)
        .param("epochs", 2)
        .measure("splits", "[train, test]")
        .measure("bin_sizes", "[0.67, 0.3]")
        .train("train_size", 500)
        .train("test_size", 500)
        .train("batch_size", 100)
        .limit("max_attempts", 3)
        .build()
}

fn mi_columns(row: &BTreeMap<String, String>) -> Vec<String> {
    ["epoch", "split", "layer_name", "bin_size", "n", "distinct", "h_t", "i_yt", "h_y", "loss", "accuracy"]
        .iter()
        .map(|k| row[*k].clone())
        .collect()
}

#[test]
fn coordinator_and_two_workers_run_a_grid_that_survives_kills_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("store");
    let mut coordinator = ibsweep_testkit::process::serve(port, &data, 3);
    let grid = dir.path().join("grid.yaml");
    std::fs::write(&grid, grid_text()).unwrap();
    let (sweep, jobs) = submit(&url, &grid);
    assert_eq!(jobs, 4);

    // A worker killed with SIGKILL mid-job: its lease expires (3 s) and the job runs again.
    let doomed = attach(&url, "doomed", dir.path());
    wait_for("the first lease", Duration::from_secs(60), || status(&url, &sweep)["running"].as_u64() == Some(1));
    drop(doomed);
    // The coordinator is restarted while that job is orphaned.
    drop(coordinator);
    coordinator = ibsweep_testkit::process::serve(port, &data, 3);
    let again = client(&url, &["submit", grid.to_str().unwrap(), "--json"]);
    wait_for("the restarted coordinator", Duration::from_secs(20), || status(&url, &sweep).is_object());
    let _ = again;
    let _w1 = attach(&url, "w1", dir.path());
    let _w2 = attach(&url, "w2", dir.path());
    wait_for("the sweep to finish", Duration::from_secs(300), || status(&url, &sweep)["done"].as_u64() == Some(4));
    let s = status(&url, &sweep);
    assert_eq!((s["failed"].as_u64(), s["pending"].as_u64(), s["running"].as_u64()), (Some(0), Some(0), Some(0)));

    let out = client(&url, &["results", &sweep, "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().next().unwrap(), ibsweep_shared::results::CSV_HEADER);
    let rows = csv_rows(&out.stdout);
    // 4 jobs x 3 epochs x 2 splits x 3 layers x 2 bin sizes.
    assert_eq!(rows.len(), 4 * 3 * 2 * 3 * 2);

    // Each job's rows equal `worker run` of the same spec (same seed, same thread count).
    let specs = [("mnist", 2), ("fashion-mnist", 3)];
    for (dataset, width) in specs {
        let job = dir.path().join(format!("{dataset}-{width}.yaml"));
        std::fs::write(
            &job,
            format!(
                "dataset: {dataset}\nwidth: {width}\ndepth: 2\nkernel: 3\nseed: 1\nepochs: 2\ntrain_size: 500\ntest_size: 500\nbatch_size: 100\nmeasure: {{epochs: every, splits: [train, test], bin_sizes: [0.67, 0.3]}}\n"
            ),
        )
        .unwrap();
        let out_dir = dir.path().join(format!("run-{dataset}-{width}"));
        let run = Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg("run")
            .arg(&job)
            .arg("--out")
            .arg(&out_dir)
            .args(["--threads", "1"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let local: Vec<Vec<String>> =
            csv_rows(&std::fs::read(out_dir.join("mi.csv")).unwrap()).iter().map(mi_columns).collect();
        let mut remote: Vec<Vec<String>> = rows
            .iter()
            .filter(|r| r["dataset"] == dataset && r["width"] == width.to_string())
            .map(mi_columns)
            .collect();
        let mut local_sorted = local.clone();
        local_sorted.sort();
        remote.sort();
        assert_eq!(remote, local_sorted, "{dataset} width {width}");
    }

    // The killed worker's attempt is in the job's history only as an expired lease.
    let filtered =
        client(&url, &["results", &sweep, "--where", "layer_name=softmax", "--where", "epoch=2", "--format", "json"]);
    assert_eq!(String::from_utf8(filtered.stdout).unwrap().lines().count(), 4 * 2 * 2);
    let workers = client(&url, &["workers", "--json"]);
    assert!(String::from_utf8(workers.stdout).unwrap().contains("\"w1\""));

    // Exported rows plot again without the coordinator: `plot --from-csv`, some kinds only.
    let csv = dir.path().join("export.csv");
    assert!(client(&url, &["results", &sweep, "--out", csv.to_str().unwrap()]).status.success());
    let figures = dir.path().join("figures");
    let out = client(
        &url,
        &["plot", "--from-csv", csv.to_str().unwrap(), "--only", "bins,compare", "--where", "split=test"]
            .into_iter()
            .chain(["--out", figures.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&figures).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    // 4 points measured at 2 bin sizes: a bin-size figure each; comparisons, no planes or paths.
    assert_eq!(names.iter().filter(|n| n.starts_with("bins-") && n.ends_with("-test.png")).count(), 4, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("compare-width-")), "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("bins-") || n.starts_with("compare-")), "{names:?}");
    std::fs::write(&csv, "not,a,results,file\n").unwrap();
    let bad = client(&url, &["plot", "--from-csv", csv.to_str().unwrap(), "--out", figures.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unexpected CSV header"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    drop(coordinator);
}

//! The real binaries as processes: a coordinator, two workers, a tiny grid run to completion;
//! results equal `worker run` of the same job spec; a worker killed with SIGKILL and a
//! coordinator restarted mid-sweep lose nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const GRID: &str = "\
name: e2e
parameters:
  dataset: {values: [mnist, fashion-mnist]}
  width: {values: [2, 3]}
  depth: {value: 2}
  kernel: {value: 3}
  seed: {value: 1}
  epochs: {value: 2}
measure: {epochs: every, splits: [train, test], bin_sizes: [0.67, 0.3]}
train: {train_size: 500, test_size: 500, batch_size: 100}
limits: {max_attempts: 3}
";

/// Kills its process when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn coordinator_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_worker")).with_file_name("coordinator");
    assert!(
        path.exists(),
        "{} is missing: run the whole workspace's tests (deploy/test.sh) or `cargo build -p ibsweep-coordinator`",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(port: u16, data: &Path) -> Proc {
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    Proc(
        Command::new(coordinator_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--lease-ttl", "3"])
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn attach(url: &str, name: &str, dir: &Path) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(["--coordinator", url, "--threads", "1", "--name", name])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn client(url: &str, args: &[&str]) -> Output {
    Command::new(coordinator_bin()).args(["--coordinator", url]).args(args).output().unwrap()
}

fn status(url: &str, sweep: &str) -> serde_json::Value {
    let out = client(url, &["status", sweep, "--json"]);
    if !out.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["sweeps"][0].clone()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mi_columns(row: &BTreeMap<String, String>) -> Vec<String> {
    ["epoch", "split", "layer_name", "bin_size", "n", "distinct", "h_t", "i_yt", "h_y", "loss", "accuracy"]
        .iter()
        .map(|k| row[*k].clone())
        .collect()
}

fn csv_rows(text: &[u8]) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text);
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}

#[test]
fn coordinator_and_two_workers_run_a_grid_that_survives_kills_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("store");
    let mut coordinator = serve(port, &data);
    let grid = dir.path().join("grid.yaml");
    std::fs::write(&grid, GRID).unwrap();
    let mut submitted = None;
    wait_for("the coordinator to accept a submission", Duration::from_secs(20), || {
        let out = client(&url, &["submit", grid.to_str().unwrap(), "--json"]);
        if out.status.success() {
            submitted = Some(String::from_utf8(out.stdout).unwrap());
        }
        out.status.success()
    });
    let submitted: serde_json::Value = serde_json::from_str(submitted.unwrap().trim()).unwrap();
    assert_eq!((submitted["jobs"].as_u64(), submitted["created"].as_bool()), (Some(4), Some(true)));
    let sweep = submitted["sweep_id"].as_str().unwrap().to_string();

    // A worker killed with SIGKILL mid-job: its lease expires (3 s) and the job runs again.
    let doomed = attach(&url, "doomed", dir.path());
    wait_for("the first lease", Duration::from_secs(60), || status(&url, &sweep)["running"].as_u64() == Some(1));
    drop(doomed);
    // The coordinator is restarted while that job is orphaned.
    drop(coordinator);
    coordinator = serve(port, &data);
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
    drop(coordinator);
}

//! Helpers for tests that drive the real binaries as processes on loopback: start and kill
//! coordinators and workers, run client commands, read status and results.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Kills its process when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL now (what a crash, an OOM kill or a pulled plug does).
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn coordinator_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_worker")).with_file_name("coordinator");
    assert!(
        path.exists(),
        "{} is missing: run the whole workspace's tests (deploy/test.sh) or `cargo build -p ibsweep-coordinator`",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `coordinator serve` on loopback with a short lease TTL; its log goes beside the store,
/// appended across restarts.
pub fn serve(port: u16, data: &Path, lease_ttl_s: u32) -> Proc {
    serve_with(port, data, lease_ttl_s, &[])
}

/// [`serve`] with more flags (TLS, tokens).
pub fn serve_with(port: u16, data: &Path, lease_ttl_s: u32, extra: &[&str]) -> Proc {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).unwrap();
    Proc(
        Command::new(coordinator_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--lease-ttl", &lease_ttl_s.to_string()])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// `worker --coordinator URL` with one libtorch thread; its log is `dir/NAME.log`.
pub fn attach(url: &str, name: &str, dir: &Path) -> Proc {
    attach_with(url, name, dir, &[])
}

/// [`attach`] with more flags (TLS, tokens).
pub fn attach_with(url: &str, name: &str, dir: &Path, extra: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(["--coordinator", url, "--threads", "1", "--name", name])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

pub fn client(url: &str, args: &[&str]) -> Output {
    Command::new(coordinator_bin()).args(["--coordinator", url]).args(args).output().unwrap()
}

/// The sweep's line of `status --json`, or Null while the coordinator is unreachable.
pub fn status(url: &str, sweep: &str) -> serde_json::Value {
    let out = client(url, &["status", sweep, "--json"]);
    if !out.status.success() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["sweeps"][0].clone()
}

pub fn count(status: &serde_json::Value, state: &str) -> Option<u64> {
    status[state].as_u64()
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Submits a grid (retrying while the coordinator starts) and returns its sweep ID.
pub fn submit(url: &str, grid: &Path) -> (String, u64) {
    let mut submitted = None;
    wait_for("the coordinator to accept a submission", Duration::from_secs(30), || {
        let out = client(url, &["submit", grid.to_str().unwrap(), "--json"]);
        if out.status.success() {
            submitted = Some(String::from_utf8(out.stdout).unwrap());
        }
        out.status.success()
    });
    let submitted: serde_json::Value = serde_json::from_str(submitted.unwrap().trim()).unwrap();
    (submitted["sweep_id"].as_str().unwrap().to_string(), submitted["jobs"].as_u64().unwrap())
}

pub fn csv_rows(text: &[u8]) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text);
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}

/// Every result row of a sweep, as CSV records, sorted.
pub fn results(url: &str, sweep: &str) -> Vec<BTreeMap<String, String>> {
    let out = client(url, &["results", sweep, "--format", "csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut rows = csv_rows(&out.stdout);
    rows.sort();
    rows
}

/// Runs a `deploy/` test script with the directory of this build's binaries; passes when it
/// prints `PASS_MARKER`, skips (printing why) when it exits 77.
pub fn run_deploy_script(script: &str, pass_marker: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(script);
    let bin = coordinator_bin();
    let out = Command::new("bash").arg(&script).arg(bin.parent().unwrap()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(77) {
        eprintln!("{stdout}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(pass_marker), "{stdout}");
}

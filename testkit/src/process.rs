//! The real binaries as child processes on loopback: coordinators that tests kill and
//! restart, workers, and the client commands a user types.

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

    /// Peak resident memory (VmHWM) in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User + system CPU seconds of a process, from its `/proc/.../stat` (fields 14 and 15, in
/// USER_HZ, which is 100 on Linux whatever the kernel's tick).
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// One of this build's binaries (`coordinator`, `worker`). Test and bench executables live
/// in `target/PROFILE/deps/`, the binaries one level up; cargo builds a package's binaries
/// before its integration tests, and `cargo test --workspace` builds both packages'.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("a directory");
    let dir = if dir.ends_with("deps") { dir.parent().expect("the profile directory") } else { dir };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the whole workspace's tests (deploy/test.sh) or `cargo build --bin {name}`",
        path.display()
    );
    path
}

/// Where a child's standard error goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    /// Discarded (load and crash benches: millions of lines).
    Null,
    /// Appended to `DATA_DIR.log`, beside the store, across restarts.
    BesideStore,
    /// Appended to this file (a store on a small file system the test fills).
    At(PathBuf),
}

/// `coordinator serve` on a loopback port, as a process.
#[derive(Debug, Clone)]
pub struct Serve {
    pub port: u16,
    pub data: PathBuf,
    pub lease_ttl_s: u32,
    pub args: Vec<String>,
    pub log: Log,
    /// `RUST_LOG` for the child; unset inherits the test's.
    pub rust_log: Option<String>,
}

impl Serve {
    pub fn new(port: u16, data: &Path, lease_ttl_s: u32) -> Serve {
        Serve { port, data: data.to_path_buf(), lease_ttl_s, args: Vec::new(), log: Log::BesideStore, rust_log: None }
    }

    /// More flags (TLS, tokens, limits).
    pub fn args(mut self, args: &[&str]) -> Serve {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn quiet(mut self, rust_log: &str) -> Serve {
        self.log = Log::Null;
        self.rust_log = Some(rust_log.to_string());
        self
    }

    /// The log goes to `path` instead of beside the store.
    pub fn log_to(mut self, path: &Path) -> Serve {
        self.log = Log::At(path.to_path_buf());
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&self) -> Proc {
        let mut command = Command::new(bin("coordinator"));
        command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--lease-ttl",
                &self.lease_ttl_s.to_string(),
            ])
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.args)
            .stdout(Stdio::null());
        if let Some(level) = &self.rust_log {
            command.env("RUST_LOG", level);
        }
        let append = |path: &Path| std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        match &self.log {
            Log::Null => command.stderr(Stdio::null()),
            Log::BesideStore => command.stderr(append(&self.data.with_extension("log"))),
            Log::At(path) => command.stderr(append(path)),
        };
        Proc(command.spawn().expect("start the coordinator"))
    }
}

/// `coordinator serve` on loopback with the given lease TTL; its log goes beside the store.
pub fn serve(port: u16, data: &Path, lease_ttl_s: u32) -> Proc {
    Serve::new(port, data, lease_ttl_s).spawn()
}

/// [`serve`] with more flags (TLS, tokens).
pub fn serve_with(port: u16, data: &Path, lease_ttl_s: u32, extra: &[&str]) -> Proc {
    Serve::new(port, data, lease_ttl_s).args(extra).spawn()
}

/// `worker --coordinator URL` with one libtorch thread; its log is `dir/NAME.log`.
pub fn attach(url: &str, name: &str, dir: &Path) -> Proc {
    attach_with(url, name, dir, &[])
}

/// [`attach`] with more flags (TLS, tokens).
pub fn attach_with(url: &str, name: &str, dir: &Path, extra: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc(
        Command::new(bin("worker"))
            .args(["--coordinator", url, "--threads", "1", "--name", name])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// A client command (`coordinator --coordinator URL ARGS...`), run to its end.
pub fn client(url: &str, args: &[&str]) -> Output {
    Command::new(bin("coordinator")).args(["--coordinator", url]).args(args).output().unwrap()
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

/// Polls `done` every 200 ms; fails the test naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Submits a grid (retrying while the coordinator starts) and returns its sweep ID and
/// number of jobs.
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

/// CSV text as one map per record, keyed by the header.
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
/// prints `pass_marker`, skips (printing why) when it exits 77.
pub fn run_deploy_script(script: &str, pass_marker: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(script);
    let bin = bin("coordinator");
    let out = Command::new("bash").arg(&script).arg(bin.parent().unwrap()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(77) {
        eprintln!("{stdout}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(pass_marker), "{stdout}");
}

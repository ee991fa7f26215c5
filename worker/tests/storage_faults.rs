//! Storage faults with the real binaries (issue #25): a full disk in the middle of a job
//! costs nothing, and a sweep backed up mid-run and restored elsewhere finishes with the
//! rows of an uninterrupted run.
//!
//! - Disk full: the coordinator's store sits on a 64 MiB tmpfs the test mounts (root only;
//!   skipped with a message otherwise) and fills in the middle of a job. For 30 s every
//!   write is refused with RESOURCE_EXHAUSTED naming the data directory, reads and
//!   `status` keep working, the metric says why, and the worker keeps its trained epochs.
//!   Once the filler goes, the coordinator reopens its store by itself and the sweep ends
//!   with rows identical to a fault-free run's.
//! - Backup: `coordinator backup` while a worker trains, both killed, `restore` into a new
//!   directory (checked by `verify`), a new coordinator and worker finish the job from the
//!   checkpoint inside the backup: identical rows again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ibsweep_testkit::process::*;
use ibsweep_testkit::{GridBuilder, free_port};

/// How long the disk stays full each time (`IBSWEEP_DISK_FULL_SECONDS`, default 30), and
/// how many times in the job (`IBSWEEP_DISK_FULL_TIMES`, default 1, at most 5): the test
/// suite runs one window, `deploy/chaos.sh` five longer ones.
fn refusal_windows() -> (Duration, u64) {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    (Duration::from_secs(env("IBSWEEP_DISK_FULL_SECONDS", 30)), env("IBSWEEP_DISK_FULL_TIMES", 1).clamp(1, 5))
}

/// Epochs between two refusal windows' starts: more than the epochs a worker trains ahead
/// of its refused uploads (its queue of 4, and the one in hand), so every window begins
/// while the job still runs.
const EPOCHS_PER_WINDOW: u64 = 6;

/// 16 epochs for one window, 6 more for each further one.
fn epochs() -> u64 {
    10 + EPOCHS_PER_WINDOW * refusal_windows().1
}

fn grid() -> String {
    GridBuilder::tiny("storage")
        .param("width", 2)
        .param("depth", 2)
        .param("seed", 3)
        .param("epochs", epochs())
        .measure("splits", "[train, test]")
        .train("train_size", 1000)
        .train("test_size", 500)
        .train("batch_size", 100)
        .train("checkpoint_every", 1)
        .limit("max_attempts", 3)
        .build()
}

type Row = BTreeMap<String, String>;

fn coordinator_at(data: &Path, log: &Path, metrics: Option<u16>) -> (Proc, String) {
    let port = free_port();
    let mut serve = Serve::new(port, data, 2).log_to(log);
    let listen;
    if let Some(m) = metrics {
        listen = format!("127.0.0.1:{m}");
        serve = serve.args(&["--metrics-listen", &listen]);
    }
    let url = serve.url();
    (serve.spawn(), url)
}

fn epoch_reached(url: &str, sweep: &str) -> u64 {
    status(url, sweep)["running_jobs"][0]["epoch"].as_u64().unwrap_or(0)
}

fn store_problem(url: &str) -> Option<String> {
    let out = client(url, &["status", "--json"]);
    assert!(out.status.success(), "status must work while writes fail: {}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["store_problem"].as_str().map(str::to_string)
}

fn metrics(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// A fault-free run's rows.
fn reference(dir: &Path) -> Vec<Row> {
    let data = dir.join("reference-store");
    let (coordinator, url) = coordinator_at(&data, &dir.join("reference.log"), None);
    let path = dir.join("storage.yaml");
    std::fs::write(&path, grid()).unwrap();
    let (sweep, _) = submit(&url, &path);
    let worker = attach(&url, "reference-w", dir);
    wait_for("the reference run", Duration::from_secs(600), || count(&status(&url, &sweep), "done") == Some(1));
    drop(worker);
    let rows = results(&url, &sweep);
    drop(coordinator);
    assert_eq!(rows.len() as u64, (epochs() + 1) * 2 * 3, "every epoch measured, 2 splits, 3 layers");
    rows
}

fn assert_same_rows(got: &[Row], want: &[Row], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        panic!("{what}: rows differ from the fault-free run's; first:\n{g:?}\n{w:?}");
    }
}

/// Mounts a tmpfs of `size` at `at`; false (and why, printed) when this process may not.
fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::fs::create_dir_all(at).unwrap();
    let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "SKIPPED the disk-full case: cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED the disk-full case: no `mount` ({e})");
            false
        }
    }
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// Writes 1 MiB blocks to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 1 << 20];
    let mut written = 0u64;
    while file.write_all(&block).is_ok() {
        written += block.len() as u64;
    }
    let _ = file.sync_all();
    written
}

fn disk_full_mid_job(dir: &Path, expected: &[Row]) {
    let mount = dir.join("small-fs");
    if !mount_tmpfs(&mount, "64m") {
        return;
    }
    let _unmount = Unmount(&mount);
    let data = mount.join("store");
    let metrics_port = free_port();
    let (coordinator, url) = coordinator_at(&data, &dir.join("full.log"), Some(metrics_port));
    let path = dir.join("storage.yaml");
    let (sweep, _) = submit(&url, &path);
    let worker = attach(&url, "full-w", dir);
    let (window, times) = refusal_windows();
    for cycle in 0..times {
        let at = 3 + EPOCHS_PER_WINDOW * cycle;
        wait_for(&format!("the job at epoch {at}"), Duration::from_secs(300), || {
            epoch_reached(&url, &sweep) >= at || count(&status(&url, &sweep), "done") == Some(1)
        });
        assert_ne!(count(&status(&url, &sweep), "done"), Some(1), "the job ended before refusal window {}", cycle + 1);
        let filler = mount.join("filler");
        let filled = fill(&filler);
        let full_at = Instant::now();
        // sled may still have room in the log segment it holds, and a job that is between
        // uploads writes little: probe with submissions (64 KiB grids under new names) until
        // a write needs a block the file system no longer has.
        let mut probes = 0;
        wait_for("a refused write", Duration::from_secs(120), || {
            if store_problem(&url).is_some() {
                return true;
            }
            probes += 1;
            let probe = dir.join("probe.yaml");
            let name = format!("probe-{cycle}-{probes}");
            let padding = format!("# {}\n", "x".repeat(64 * 1024));
            std::fs::write(&probe, padding + &GridBuilder::tiny(&name).build()).unwrap();
            let _ = client(&url, &["submit", probe.to_str().unwrap()]);
            false
        });
        let problem = store_problem(&url).unwrap();
        assert!(problem.contains("no space left") && problem.contains(data.to_str().unwrap()), "{problem}");

        // Writes are refused with the reason; reads and results keep working.
        let other = dir.join("other.yaml");
        std::fs::write(&other, GridBuilder::tiny("other").build()).unwrap();
        let refused = client(&url, &["submit", other.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains("no space left"), "{stderr}");
        assert!(stderr.contains(data.to_str().unwrap()), "the message names the data directory: {stderr}");
        assert!(client(&url, &["results", &sweep, "--format", "csv"]).status.success());
        let text = metrics(metrics_port);
        assert!(text.contains("ibsweep_store_writable 0"), "{text}");

        std::thread::sleep(window.saturating_sub(full_at.elapsed()));
        let epoch_during = epoch_reached(&url, &sweep);
        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        wait_for("the store to take writes again", Duration::from_secs(15), || store_problem(&url).is_none());
        eprintln!(
            "disk full {}/{times}: {filled} filler bytes, refused for {:.0} s at epoch {epoch_during}, writable again \
             {:.1} s after the filler went",
            cycle + 1,
            window.as_secs_f64(),
            freed.elapsed().as_secs_f64()
        );
    }
    wait_for("the sweep after the outage", Duration::from_secs(600), || {
        count(&status(&url, &sweep), "done") == Some(1)
    });
    let rows = results(&url, &sweep);
    assert!(metrics(metrics_port).contains("ibsweep_store_writable 1"));
    drop(worker);
    drop(coordinator);
    let log = std::fs::read_to_string(dir.join("full-w.log")).unwrap();
    assert!(log.contains("waiting, with the work kept"), "the worker must say what it waits for:\n{log}");
    assert!(!log.contains("dropping the job"), "the worker threw its job away:\n{log}");
    let served = std::fs::read_to_string(dir.join("full.log")).unwrap();
    assert!(!served.contains("lease expired"), "the outage cost the worker its lease:\n{served}");
    assert!(served.contains("the store takes writes again"), "{served}");
    assert_same_rows(&rows, expected, "after a full disk");
}

fn backup_mid_run_then_restore(dir: &Path, expected: &[Row]) {
    let data = dir.join("original-store");
    let (coordinator, url) = coordinator_at(&data, &dir.join("original.log"), None);
    let (sweep, _) = submit(&url, &dir.join("storage.yaml"));
    let worker = attach(&url, "original-w", dir);
    wait_for("a checkpoint at epoch 3", Duration::from_secs(300), || {
        status(&url, &sweep)["running_jobs"][0]["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 3)
    });
    let file = dir.join("mid-run.ibsnap");
    let out = client(&url, &["backup", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 checkpoint files"), "{said}");
    worker.kill();
    coordinator.kill();

    // A damaged or truncated backup is refused whole; so is a non-empty target.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.ibsnap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0x04;
    let flip = dir.join("flip.ibsnap");
    std::fs::write(&flip, &flipped).unwrap();
    for bad in [&cut, &flip] {
        let target = dir.join("never");
        let out = client(&url, &["restore", bad.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("SHA-256 does not match"), "{stderr}");
        assert!(!target.exists(), "nothing is restored from a damaged backup");
    }
    let restored = dir.join("restored-store");
    let out = client(&url, &["restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: every record decodes"));
    let again = client(&url, &["restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));

    let (coordinator, url) = coordinator_at(&restored, &dir.join("restored.log"), None);
    let worker = attach(&url, "restored-w", dir);
    wait_for("the restored sweep", Duration::from_secs(600), || count(&status(&url, &sweep), "done") == Some(1));
    let rows = results(&url, &sweep);
    drop(worker);
    drop(coordinator);
    let log = std::fs::read_to_string(dir.join("restored-w.log")).unwrap();
    assert!(log.contains("resuming from the checkpoint at epoch"), "the restored job did not resume:\n{log}");
    assert_same_rows(&rows, expected, "restored from a mid-run backup");

    // A stopped coordinator's directory backs up offline too, and verifies.
    let offline = dir.join("offline.ibsnap");
    let out = client(&url, &["backup", "--data-dir", restored.to_str().unwrap(), "--out", offline.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = client(&url, &["verify", "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn storage_faults_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = &dir.keep();
    let expected = reference(dir);
    disk_full_mid_job(dir, &expected);
    backup_mid_run_then_restore(dir, &expected);
}

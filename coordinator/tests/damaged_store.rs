//! Damaged stores with the real binary (issue #25): `coordinator serve` refuses, at start
//! and with exit code 65, a store that sled cannot open (a truncated file, a flipped bit)
//! and one whose records fail ibsweep's own checks (an undecodable job, counters that
//! disagree with the job records); it never panics and never serves from it.
//! `coordinator verify --data-dir` names the problems; `backup --data-dir` and `restore`
//! round-trip a good store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibsweep_coordinator::clock::SystemClock;
use ibsweep_coordinator::error::EXIT_STORE_DAMAGED;
use ibsweep_coordinator::records::SWEEPS;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::store::{JobStore, SledStore, Tree};
use ibsweep_testkit::process::bin;
use ibsweep_testkit::{GridBuilder, free_port};

/// A store with two sweeps, a running job and a worker, made through the library.
fn make_store(dir: &Path) {
    let scheduler = Scheduler::open(SledStore::open(dir).unwrap(), Arc::new(SystemClock), Timing::default()).unwrap();
    for name in ["first", "second"] {
        scheduler.submit(&format!("{name}.yaml"), &GridBuilder::tiny(name).values("width", [1, 2, 3]).build()).unwrap();
    }
    let worker = scheduler.register("w", 1, "cpu", None).unwrap().id;
    scheduler.lease(worker).unwrap().expect("a job");
    scheduler.flush().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `coordinator serve` on the store until it exits by itself (at most 30 s).
fn serve(data: &Path) -> Output {
    let mut child = Command::new(bin("coordinator"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the coordinator served a damaged store at {}", data.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn coordinator(args: &[&str]) -> Output {
    Command::new(bin("coordinator")).args(args).output().unwrap()
}

fn assert_refused(data: &Path, what: &str, detail: &str) {
    let out = serve(data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_STORE_DAMAGED)), "{what}: {stderr}");
    assert!(stderr.contains("is damaged") && stderr.contains(detail), "{what}: {stderr}");
    assert!(stderr.contains("coordinator restore"), "{what}: the message says how to restore: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let verify = coordinator(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(i32::from(EXIT_STORE_DAMAGED)), "{what}: verify must fail too");
}

/// Flips one bit inside the first occurrence of `needle` in sled's log file.
fn flip_inside(data: &Path, needle: &[u8]) {
    let path = data.join("db");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the text is in the log");
    bytes[at + 1] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
}

fn with_store(data: &Path, change: impl FnOnce(&SledStore)) {
    let store = SledStore::open(data).unwrap();
    change(&store);
    store.flush().unwrap();
}

#[test]
fn damaged_stores_are_refused_at_start_and_verify_names_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let good: PathBuf = dir.join("good");
    make_store(&good);
    let verify = coordinator(&["verify", "--data-dir", good.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.contains("ok: every record decodes"), "{said}");
    assert!(said.contains("sweeps") && said.contains("jobs"), "{said}");

    let truncated = dir.join("truncated");
    copy_dir(&good, &truncated);
    // sled preallocates its log segment: cut into what was written, not into the zeros.
    let db = truncated.join("db");
    let written = std::fs::read(&db).unwrap().iter().rposition(|&b| b != 0).unwrap() as u64;
    std::fs::OpenOptions::new().write(true).open(&db).unwrap().set_len(written / 2).unwrap();
    assert_refused(&truncated, "a truncated log", "");
    // Without sled's snapshot file sled takes the cut for a torn write and recovers the
    // prefix without a word; the durable-commit mark beside the store catches it.
    let bare = dir.join("truncated-bare");
    copy_dir(&truncated, &bare);
    for entry in std::fs::read_dir(&bare).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("snap.") {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert_refused(&bare, "a truncated log without a snapshot", "truncated or lost");

    let flipped = dir.join("flipped");
    copy_dir(&good, &flipped);
    flip_inside(&flipped, b"dataset");
    assert_refused(&flipped, "a flipped bit", "sled");

    // Damage sled cannot see: records that do not decode, or disagree with each other.
    let garbage = dir.join("garbage");
    copy_dir(&good, &garbage);
    with_store(&garbage, |store| {
        let (key, _) = store.scan(Tree::Jobs, &[]).unwrap().remove(0);
        store.transaction(&mut |txn| txn.insert(Tree::Jobs, &key, b"{\"not\": \"a job\"")).unwrap();
    });
    assert_refused(&garbage, "an undecodable job record", "jobs");
    let listed = coordinator(&["verify", "--data-dir", garbage.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("problem: jobs entry"), "{listed:?}");

    let inconsistent = dir.join("inconsistent");
    copy_dir(&good, &inconsistent);
    with_store(&inconsistent, |store| {
        for (key, value) in store.scan(Tree::Sweeps, &[]).unwrap() {
            let mut sweep = SWEEPS.decode(&value).unwrap();
            sweep.counts.running = 0;
            store.transaction(&mut |txn| SWEEPS.put(txn, &key, &sweep)).unwrap();
        }
    });
    assert_refused(&inconsistent, "counters that disagree with the jobs", "inconsistencies");
    let listed = coordinator(&["verify", "--data-dir", inconsistent.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("counters say 0 running"), "{listed:?}");

    // The good store backs up offline and restores whole; a second restore is refused.
    let file = dir.join("good.ibsnap");
    let out = coordinator(&["backup", "--data-dir", good.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = dir.join("restored");
    let out = coordinator(&["restore", file.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = SledStore::open(&restored).unwrap();
    let good_store = SledStore::open(&good).unwrap();
    for tree in Tree::ALL {
        assert_eq!(store.scan(tree, &[]).unwrap(), good_store.scan(tree, &[]).unwrap(), "{}", tree.name());
    }
}

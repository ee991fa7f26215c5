//! Fault tests with the real binaries on loopback (tiny models, seconds each):
//! - one sweep through random worker SIGKILLs and coordinator `kill -9` + restarts, whose
//!   results must equal a fault-free run of the same grid row for row (every job done
//!   exactly once);
//! - a worker frozen with SIGSTOP past its lease, then resumed: refused, its job counted once;
//! - the coordinator down for three lease TTLs: no attempt used (`max_attempts: 1`).
//!
//! Counts come from `IBSWEEP_CHAOS_WORKER_KILLS` (default 20) and
//! `IBSWEEP_CHAOS_COORDINATOR_KILLS` (default 5); `deploy/chaos.sh` runs 100 + 20 and
//! prints the figures `docs/reliability.md` records. `IBSWEEP_CHAOS_SEED` replays a run.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ibsweep_testkit::process::{Proc, attach, count, results, serve, status, submit, wait_for};
use ibsweep_testkit::{GridBuilder, Rng, free_port};

/// The tests here time real processes on two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const TTL_S: u32 = 2;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A pause drawn from `from..to` milliseconds.
fn millis(rng: &mut Rng, from: u64, to: u64) -> Duration {
    Duration::from_millis(from + rng.below(to - from))
}

fn grid(seeds: u64, max_attempts: u32, epochs: u32, train_size: u32) -> String {
    GridBuilder::tiny("chaos")
        .values("dataset", ["mnist", "fashion-mnist"])
        .values("width", [1, 2])
        .values("seed", 0..seeds)
        .param("epochs", epochs)
        .measure("splits", "[train, test]")
        .train("train_size", train_size)
        .train("test_size", 200)
        .train("batch_size", 100)
        .limit("max_attempts", max_attempts)
        .build()
}

/// Runs `grid` to completion on a fresh coordinator with `workers` workers, no faults.
fn fault_free(dir: &Path, grid_text: &str, workers: usize) -> Vec<std::collections::BTreeMap<String, String>> {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _coordinator = serve(port, &dir.join("reference-store"), 30);
    let grid = dir.join("reference.yaml");
    std::fs::write(&grid, grid_text).unwrap();
    let (sweep, jobs) = submit(&url, &grid);
    let _workers: Vec<Proc> = (0..workers).map(|i| attach(&url, &format!("ref{i}"), dir)).collect();
    wait_for("the fault-free sweep", Duration::from_secs(900), || count(&status(&url, &sweep), "done") == Some(jobs));
    results(&url, &sweep)
}

#[test]
fn a_sweep_survives_worker_kills_and_coordinator_kills_with_identical_results() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let worker_kills = env_or("IBSWEEP_CHAOS_WORKER_KILLS", 20);
    let coordinator_kills = env_or("IBSWEEP_CHAOS_COORDINATOR_KILLS", 5);
    let seed = env_or(
        "IBSWEEP_CHAOS_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    );
    eprintln!("chaos: seed {seed} (IBSWEEP_CHAOS_SEED={seed} replays the schedule)");
    let mut dice = Rng::new(seed);
    // Enough jobs that the faults land while there is still work.
    let seeds = ((worker_kills + 4 * coordinator_kills) / 2).max(5);
    let text = grid(seeds, 1_000, 2, 200);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let reference = fault_free(dir.path(), &text, 2);
    let reference_s = started.elapsed().as_secs_f64();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("store");
    let mut coordinator = Some(serve(port, &data, TTL_S));
    let grid_path = dir.path().join("chaos.yaml");
    std::fs::write(&grid_path, &text).unwrap();
    let (sweep, jobs) = submit(&url, &grid_path);
    let mut workers: Vec<Proc> = (0..3).map(|i| attach(&url, &format!("w{i}"), dir.path())).collect();
    let mut spawned = 3;
    let (mut worker_kills_done, mut coordinator_kills_done) = (0, 0);
    let chaos_started = Instant::now();
    let deadline = chaos_started + Duration::from_secs(600 + 6 * (worker_kills + coordinator_kills));
    while worker_kills_done < worker_kills || coordinator_kills_done < coordinator_kills {
        assert!(Instant::now() < deadline, "chaos took too long");
        std::thread::sleep(millis(&mut dice, 150, 600));
        let remaining = worker_kills - worker_kills_done + coordinator_kills - coordinator_kills_done;
        let kill_coordinator = coordinator_kills_done < coordinator_kills
            && dice.below(remaining) < coordinator_kills - coordinator_kills_done;
        if kill_coordinator {
            coordinator.take().expect("running").kill();
            coordinator_kills_done += 1;
            // Down for up to two TTLs: live leases must survive it.
            std::thread::sleep(millis(&mut dice, 0, 2_000 * u64::from(TTL_S)));
            coordinator = Some(serve(port, &data, TTL_S));
        } else {
            let victim = dice.below(workers.len() as u64) as usize;
            workers.swap_remove(victim).kill();
            worker_kills_done += 1;
            workers.push(attach(&url, &format!("w{spawned}"), dir.path()));
            spawned += 1;
        }
        let s = status(&url, &sweep);
        if count(&s, "done") == Some(jobs) {
            panic!(
                "the sweep finished after {worker_kills_done} worker and {coordinator_kills_done} coordinator kills; \
                 make it larger so every fault lands during it"
            );
        }
    }
    let chaos_s = chaos_started.elapsed().as_secs_f64();
    wait_for("the sweep to finish after the faults", Duration::from_secs(900), || {
        count(&status(&url, &sweep), "done") == Some(jobs)
    });
    let total_s = chaos_started.elapsed().as_secs_f64();
    let s = status(&url, &sweep);
    assert_eq!((count(&s, "failed"), count(&s, "pending"), count(&s, "running")), (Some(0), Some(0), Some(0)));
    let rows = results(&url, &sweep);
    // 2 epochs + the untrained network, 2 splits, 2 layers (conv1, softmax), 1 bin size.
    assert_eq!(rows.len() as u64, jobs * 3 * 2 * 2, "every job's rows exactly once");
    assert_eq!(rows.len(), reference.len());
    for (got, want) in rows.iter().zip(&reference) {
        assert_eq!(got, want, "a row differs from the fault-free run");
    }
    eprintln!(
        "chaos figures: jobs {jobs}, worker SIGKILLs {worker_kills_done}, coordinator kill -9 {coordinator_kills_done}, \
         workers started {spawned}, rows {} identical to the fault-free run, fault-free sweep {reference_s:.1} s, \
         faults injected over {chaos_s:.1} s, sweep done {total_s:.1} s after the first fault",
        rows.len()
    );
}

#[test]
fn a_frozen_worker_is_refused_when_it_wakes_and_its_job_counts_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _coordinator = serve(port, &dir.path().join("store"), TTL_S);
    let grid_path = dir.path().join("one.yaml");
    // One job long enough to be frozen mid-run.
    std::fs::write(
        &grid_path,
        grid(1, 3, 40, 2000).replace("[mnist, fashion-mnist]", "[mnist]").replace("[1, 2]", "[2]"),
    )
    .unwrap();
    let (sweep, jobs) = submit(&url, &grid_path);
    assert_eq!(jobs, 1);
    let frozen = attach(&url, "frozen", dir.path());
    wait_for("the job to start", Duration::from_secs(60), || count(&status(&url, &sweep), "running") == Some(1));
    std::thread::sleep(Duration::from_millis(500));
    frozen.signal("STOP");
    let _rescuer = attach(&url, "rescuer", dir.path());
    // The frozen lease expires and the rescuer takes the job (attempt 2).
    wait_for("the job to move to the rescuer", Duration::from_secs(60), || {
        let out = ibsweep_testkit::process::client(&url, &["workers", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .any(|w| w["name"] == "rescuer" && w["job_id"].as_str().is_some_and(|j| !j.is_empty()))
    });
    frozen.signal("CONT");
    wait_for("the sweep to finish", Duration::from_secs(300), || count(&status(&url, &sweep), "done") == Some(1));
    let log = std::fs::read_to_string(dir.path().join("frozen.log")).unwrap();
    assert!(log.contains("stale lease") || log.contains("lease lost"), "the woken worker was refused:\n{log}");
    let rows = results(&url, &sweep);
    assert_eq!(rows.len(), 41 * 2 * 2, "the job's rows exactly once");
    let s = status(&url, &sweep);
    assert_eq!((count(&s, "failed"), count(&s, "running")), (Some(0), Some(0)));
}

#[test]
fn a_coordinator_down_for_three_ttls_costs_no_attempt() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let data = dir.path().join("store");
    let coordinator = serve(port, &data, TTL_S);
    let grid_path = dir.path().join("one.yaml");
    // max_attempts 1: an expiry blamed on the worker would fail the job.
    std::fs::write(
        &grid_path,
        grid(1, 1, 30, 2000).replace("[mnist, fashion-mnist]", "[mnist]").replace("[1, 2]", "[2]"),
    )
    .unwrap();
    let (sweep, _) = submit(&url, &grid_path);
    let _worker = attach(&url, "steady", dir.path());
    wait_for("the job to start", Duration::from_secs(60), || count(&status(&url, &sweep), "running") == Some(1));
    coordinator.kill();
    std::thread::sleep(Duration::from_secs(3 * u64::from(TTL_S)));
    let _coordinator = serve(port, &data, TTL_S);
    wait_for("the sweep to finish", Duration::from_secs(300), || {
        let s = status(&url, &sweep);
        count(&s, "done") == Some(1) || count(&s, "failed") == Some(1)
    });
    let s = status(&url, &sweep);
    assert_eq!(count(&s, "done"), Some(1), "the outage was not held against the worker: {s}");
}

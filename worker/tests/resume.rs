//! Checkpoints and resume with the real binaries (issue #12's acceptance test): one job
//! whose workers are SIGKILLed at three random epochs, the coordinator `kill -9`ed and
//! restarted in between, and a fourth worker SIGTERMed (it finishes its epoch, checkpoints
//! and releases); a last worker finishes. The rows (MI, losses, accuracies) equal an
//! uninterrupted run's, the epochs trained across all attempts stay under 1.3x the job's,
//! and the kept final checkpoint exports as a safetensors file.

use std::path::Path;
use std::time::Duration;

use ibsweep_testkit::process::*;
use ibsweep_testkit::{GridBuilder, Rng, free_port};

const EPOCHS: u32 = 40;
const TTL_S: u32 = 2;

fn grid() -> String {
    grid_of(EPOCHS)
}

fn grid_of(epochs: u32) -> String {
    GridBuilder::tiny("resume")
        .param("width", 2)
        .param("depth", 2)
        .param("seed", 3)
        .param("epochs", epochs)
        .train("train_size", 2000)
        .train("test_size", 500)
        .train("batch_size", 100)
        .train("checkpoint_every", 1)
        .limit("max_attempts", 10)
        .build()
}

/// The running job of the sweep as `status --json` shows it (Null when none).
fn running(url: &str, sweep: &str) -> serde_json::Value {
    status(url, sweep)["running_jobs"][0].clone()
}

/// A deterministic pick in `from..=to`, so a failure replays.
fn pick(seed: u64, from: u32, to: u32) -> u32 {
    from + Rng::new(seed).below(u64::from(to - from + 1)) as u32
}

/// Epochs each worker finished training (epoch 0 is a measurement, not training).
fn epochs_trained(log: &Path) -> u32 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("epoch done"))
        .filter_map(|l| l.split("epoch=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok())
        .filter(|&e| e > 0)
        .count() as u32
}

fn reference(dir: &Path, grid_text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _coordinator = serve(port, &dir.join("reference-store"), 30);
    let path = dir.join("reference.yaml");
    std::fs::write(&path, grid_text).unwrap();
    let (sweep, _) = submit(&url, &path);
    let _worker = attach(&url, "reference", dir);
    wait_for("the uninterrupted run", Duration::from_secs(600), || count(&status(&url, &sweep), "done") == Some(1));
    results(&url, &sweep)
}

#[test]
fn a_job_killed_three_times_resumes_from_checkpoints_and_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let expected = reference(dir, &grid());
    assert_eq!(expected.len(), (EPOCHS as usize + 1) * 3);

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = dir.join("store");
    let keep = ["--keep-final-checkpoints"];
    let mut coordinator = Some(serve_with(port, &store, TTL_S, &keep));
    let grid_path = dir.join("grid.yaml");
    std::fs::write(&grid_path, grid()).unwrap();
    let (sweep, _) = submit(&url, &grid_path);
    let seed = std::env::var("IBSWEEP_RESUME_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let mut last_checkpoint = 0;
    // Three SIGKILLs at random epochs, then one SIGTERM.
    for (i, (from, to)) in [(4, 8), (12, 16), (20, 24), (28, 32)].into_iter().enumerate() {
        let target = pick(seed + i as u64, from, to);
        let name = format!("w{}", i + 1);
        let worker = attach(&url, &name, dir);
        wait_for(&format!("{name} to reach epoch {target}"), Duration::from_secs(300), || {
            let job = running(&url, &sweep);
            job["worker"] == name.as_str() && job["epoch"].as_u64().is_some_and(|e| e >= u64::from(target))
        });
        let job = running(&url, &sweep);
        assert!(
            job["start_epoch"].as_u64() >= Some(last_checkpoint),
            "attempt {} started at {} before the last checkpoint {last_checkpoint}: {job}",
            i + 1,
            job["start_epoch"]
        );
        if i < 3 {
            worker.kill();
        } else {
            worker.signal("TERM");
            wait_for(&format!("{name} to checkpoint and release"), Duration::from_secs(60), || {
                std::fs::read_to_string(dir.join(format!("{name}.log")))
                    .unwrap_or_default()
                    .contains("checkpoint stored")
                    && count(&status(&url, &sweep), "running") == Some(0)
            });
            drop(worker);
        }
        last_checkpoint = job["checkpoint_epoch"].as_u64().unwrap_or(0);
        if i == 1 {
            // The coordinator dies too; its checkpoint must survive the restart.
            coordinator.take().expect("running").kill();
            coordinator = Some(serve_with(port, &store, TTL_S, &keep));
        }
    }
    let last = attach(&url, "w5", dir);
    wait_for("the last worker to finish the job", Duration::from_secs(600), || {
        count(&status(&url, &sweep), "done") == Some(1)
    });
    drop(last);

    let rows = results(&url, &sweep);
    assert_eq!(rows, expected, "resumed attempts must reproduce the uninterrupted run exactly");
    let trained: u32 = (1..=5).map(|i| epochs_trained(&dir.join(format!("w{i}.log")))).sum();
    // Each SIGKILL can also lose the epoch in progress, which no log line counts.
    let with_partial = trained + 3;
    assert!(
        f64::from(with_partial) < 1.3 * f64::from(EPOCHS),
        "{with_partial} epochs trained across attempts for a {EPOCHS}-epoch job"
    );
    for i in 2..=5 {
        let log = std::fs::read_to_string(dir.join(format!("w{i}.log"))).unwrap();
        assert!(log.contains("resuming from the checkpoint at epoch"), "w{i} did not resume:\n{log}");
    }
    eprintln!(
        "resume figures: {trained} epochs trained (+3 partial) for {EPOCHS}, last checkpoint before the end {last_checkpoint}"
    );

    // The final weights stay (--keep-final-checkpoints) and export as safetensors.
    let job_id = rows[0]["job_id"].clone();
    let out = dir.join("final.safetensors");
    let export = client(&url, &["checkpoint", &job_id, "--out", out.to_str().unwrap()]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    assert!(String::from_utf8_lossy(&export.stdout).contains(&format!("checkpoint at epoch {EPOCHS}")));
    let bytes = std::fs::read(&out).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["epoch"], EPOCHS.to_string());
    assert!(header["param/conv1.weight"]["shape"] == serde_json::json!([2, 1, 3, 3]), "{header}");
    let files = std::fs::read_dir(store.join("checkpoints")).unwrap().count();
    assert_eq!(files, 1, "only the final checkpoint is kept");
    // The reference reader (the `safetensors` package PyTorch users load it with).
    let script = "import sys, safetensors.numpy as st\nt = st.load_file(sys.argv[1])\nprint(sorted(t)[0], t['param/conv1.weight'].shape, t['param/conv1.weight'].dtype)";
    match std::process::Command::new("python3").args(["-c", script]).arg(&out).output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("(2, 1, 3, 3) float32"), "{text}");
        }
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("skipped loading the export with Python: `pip install safetensors numpy` to check it");
        }
        Ok(o) => panic!("safetensors could not load the export: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("skipped loading the export with Python: {e}"),
    }
}

#[test]
fn a_corrupted_checkpoint_is_detected_and_the_next_worker_starts_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let text = grid_of(8);
    let expected = reference(dir, &text);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let store = dir.join("store");
    let _coordinator = serve(port, &store, TTL_S);
    let grid_path = dir.join("grid.yaml");
    std::fs::write(&grid_path, &text).unwrap();
    let (sweep, _) = submit(&url, &grid_path);
    let first = attach(&url, "w1", dir);
    wait_for("a checkpoint at epoch 3", Duration::from_secs(300), || {
        running(&url, &sweep)["checkpoint_epoch"].as_u64().is_some_and(|e| e >= 3)
    });
    first.kill();
    // Flip one byte of the stored checkpoint.
    let file = std::fs::read_dir(store.join("checkpoints")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let _second = attach(&url, "w2", dir);
    wait_for("the job to finish", Duration::from_secs(300), || count(&status(&url, &sweep), "done") == Some(1));
    assert_eq!(results(&url, &sweep), expected, "restarted from scratch, the rows are the uninterrupted run's");
    let log = std::fs::read_to_string(dir.join("w2.log")).unwrap();
    assert!(log.contains("cannot be used") && log.contains("fails verification"), "{log}");
    let coordinator_log = std::fs::read_to_string(store.with_extension("log")).unwrap();
    assert!(coordinator_log.contains("checkpoint discarded"), "{coordinator_log}");
}

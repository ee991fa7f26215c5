//! The Slurm deployment for real (`deploy/slurm-test.sh`) with this build's binaries: a
//! single-node Slurm from Debian's packages runs `deploy/slurm/worker.sbatch` as a job
//! array that finishes a sweep, and a task `scancel`led mid-job releases its job to the
//! other. Skipped with the script's message where Slurm cannot be installed or started.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn a_slurm_job_array_runs_a_sweep_and_a_cancelled_task_releases_its_job() {
    let bin = common::coordinator_bin();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm-test.sh");
    let out = Command::new("bash").arg(&script).arg(bin.parent().unwrap()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(77) {
        eprintln!("{stdout}");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("slurm: passed"), "{stdout}");
}

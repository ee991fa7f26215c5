//! The Slurm deployment for real (`deploy/slurm-test.sh`) with this build's binaries: a
//! single-node Slurm from Debian's packages runs `deploy/slurm/worker.sbatch` as a job
//! array that finishes a sweep, and a task `scancel`led mid-job releases its job to the
//! other. Skipped with the script's message where Slurm cannot be installed or started.

#[test]
fn a_slurm_job_array_runs_a_sweep_and_a_cancelled_task_releases_its_job() {
    ibsweep_testkit::process::run_deploy_script("slurm-test.sh", "slurm: passed");
}

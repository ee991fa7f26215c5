//! The container image built with buildah and a sweep run from it (deploy/container-test.sh);
//! skipped with a message where buildah cannot be installed or run.

#[test]
fn the_image_runs_a_sweep_with_its_own_coordinator_and_worker() {
    ibsweep_testkit::process::run_deploy_script("container-test.sh", "container: passed");
}

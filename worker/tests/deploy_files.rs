//! The deployment files under `deploy/` are checked by the tools that read them:
//! `systemd-analyze verify` for the units (with ExecStart pointed at the binaries this
//! build made). Skipped with a message where a tool is missing.

use std::path::Path;
use std::process::Command;

use ibsweep_testkit::process::bin;

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn systemd_units_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = [
        ("ibsweep-coordinator.service", "/usr/local/bin/coordinator", bin("coordinator")),
        ("ibsweep-worker@.service", "/usr/local/bin/worker", Path::new(env!("CARGO_BIN_EXE_worker")).to_path_buf()),
    ];
    for (unit, installed, built) in &units {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        assert!(text.contains(installed), "{unit} runs {installed}");
        // An instance of the template is what systemd verifies.
        let name = unit.replace("@.service", "@1.service");
        std::fs::write(dir.path().join(&name), text.replace(installed, &built.display().to_string())).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(dir.path().join(&name)).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{unit}: {stderr}");
        assert!(!stderr.contains("Unknown") && !stderr.contains("ignoring"), "{unit}: {stderr}");
        for hardening in ["DynamicUser=yes", "ProtectSystem=strict", "StateDirectory", "NoNewPrivileges=yes"] {
            assert!(
                text.contains(hardening) || (hardening == "StateDirectory" && unit.contains("worker")),
                "{unit} lacks {hardening}"
            );
        }
    }
}

/// kubernetes-validate from PyPI, pinned; installed with pip when missing.
fn kubernetes_validate() -> Option<std::path::PathBuf> {
    let found = |name: &str| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found("kubernetes-validate") {
        let pip =
            Command::new("python3").args(["-m", "pip", "install", "--quiet", "kubernetes-validate==1.37.0"]).output();
        if !pip.is_ok_and(|o| o.status.success()) || !found("kubernetes-validate") {
            return None;
        }
    }
    Some("kubernetes-validate".into())
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let Some(validate) = kubernetes_validate() else {
        eprintln!(
            "skipped: kubernetes-validate could not be installed (python3 -m pip install kubernetes-validate==1.37.0)"
        );
        return;
    };
    let k8s = deploy().join("k8s");
    let kustomization = std::fs::read_to_string(k8s.join("kustomization.yaml")).unwrap();
    let mut manifests: Vec<_> = std::fs::read_dir(&k8s)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    manifests.sort();
    // The kustomization lists every manifest but the alternative Indexed Job.
    for m in &manifests {
        let name = m.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            kustomization.contains(&format!("- {name}")),
            name != "worker-job.yaml",
            "{name} in kustomization.yaml"
        );
    }
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(&validate).args(["--strict", "-k", version]).args(&manifests).output().unwrap();
        assert!(
            out.status.success(),
            "{version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator is live: an unknown field fails strict validation.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text =
        std::fs::read_to_string(k8s.join("worker-deployment.yaml")).unwrap().replace("replicas: 2", "replica: 2");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(&validate).arg("--strict").arg(&bad).output().unwrap();
    assert!(!out.status.success(), "a misspelled field must fail validation");
}

/// `kubectl kustomize` (kustomize built in), when this machine has kubectl.
fn kustomize(dir: &std::path::Path) -> Option<String> {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_kustomize_build_is_what_is_validated() {
    let Some(validate) = kubernetes_validate() else {
        eprintln!("skipped: kubernetes-validate could not be installed");
        return;
    };
    let k8s = deploy().join("k8s");
    let Some(built) = kustomize(&k8s) else {
        eprintln!("skipped: no `kubectl kustomize` here (install kubectl, or Debian's kubernetes-client)");
        return;
    };
    // Every object of the base, with the common labels kustomize adds.
    for kind in ["StatefulSet", "Service", "Deployment"] {
        assert!(built.contains(&format!("kind: {kind}\n")), "kustomize output lacks a {kind}:\n{built}");
    }
    assert!(built.contains("app.kubernetes.io/part-of: ibsweep"), "{built}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("built.yaml");
    std::fs::write(&file, &built).unwrap();
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(&validate).args(["--strict", "-k", version]).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "kustomize output, {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// podman-compose from PyPI, pinned; installed with pip when missing.
fn podman_compose() -> Option<&'static str> {
    let found = || Command::new("podman-compose").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found() {
        let pip = Command::new("python3").args(["-m", "pip", "install", "--quiet", "podman-compose==1.6.0"]).output();
        if !pip.is_ok_and(|o| o.status.success()) || !found() {
            return None;
        }
    }
    Some("podman-compose")
}

#[test]
fn the_compose_file_parses_with_a_named_store_volume_and_scalable_workers() {
    let Some(compose) = podman_compose() else {
        eprintln!("skipped: podman-compose could not be installed (python3 -m pip install podman-compose==1.6.0)");
        return;
    };
    // The env file the compose file names, as docs/deploy.md makes it (throwaway values).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::copy(deploy().join("compose.yaml"), &file).unwrap();
    std::fs::write(dir.path().join("ibsweep.env"), "IBSWEEP_TOKEN=user\nIBSWEEP_WORKER_TOKEN=worker\n").unwrap();
    let out = Command::new(compose).arg("-f").arg(&file).arg("config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "coordinator:",
        "worker:",
        "ibsweep-store:/data",
        "env_file:",
        "stop_grace_period: 120s",
        "http://coordinator:50051",
    ] {
        assert!(config.contains(needle), "compose config lacks {needle}:\n{config}");
    }
    // A worker publishes no port and has no container name, so `--scale worker=N` works.
    let worker = config.split("  worker:").nth(1).unwrap();
    assert!(!worker.contains("ports:") && !worker.contains("container_name"), "{worker}");
}

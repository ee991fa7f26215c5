//! A sweep over TLS with both tokens, with the real binaries and certificates made by the
//! documented openssl recipe (`deploy/make-certs.sh`): the coordinator requires the user
//! token on the sweep service, the worker token and a client certificate on the worker
//! service. No log or output contains a token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ibsweep_testkit::process::{Proc, attach_with, bin, serve_with, wait_for};
use ibsweep_testkit::{GridBuilder, free_port};

fn grid_text() -> String {
    GridBuilder::tiny("secure")
        .values("dataset", ["mnist", "fashion-mnist"])
        .param("width", 2)
        .train("train_size", 200)
        .train("test_size", 200)
        .train("batch_size", 100)
        .build()
}

const USER_TOKEN: &str = "user-7c0ffee-token";
const WORKER_TOKEN: &str = "worker-5eed-token";

fn client(url: &str, dir: &Path, token_file: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin("coordinator"))
        .args(["--coordinator", url, "--tls-ca"])
        .arg(dir.join("certs/ca.pem"))
        .arg("--token-file")
        .arg(dir.join(token_file))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_sweep_over_tls_with_both_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/make-certs.sh");
    let made = Command::new(&script).arg(d.join("certs")).args(["127.0.0.1", "localhost"]).output().unwrap();
    if !made.status.success() && String::from_utf8_lossy(&made.stderr).contains("openssl is missing") {
        eprintln!("skipped: openssl is not installed (apt-get install openssl)");
        return;
    }
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::write(d.join("user.token"), format!("{USER_TOKEN}\n")).unwrap();
    std::fs::write(d.join("worker.token"), format!("{WORKER_TOKEN}\n")).unwrap();
    let certs = d.join("certs");
    let path = |name: &str| certs.join(name).display().to_string();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = d.join("store");
    let (user_file, worker_file) =
        (d.join("user.token").display().to_string(), d.join("worker.token").display().to_string());
    let _coordinator = serve_with(
        port,
        &data,
        5,
        &[
            "--tls-cert",
            &path("server.pem"),
            "--tls-key",
            &path("server.key"),
            "--tls-client-ca",
            &path("ca.pem"),
            "--token-file",
            &user_file,
            "--worker-token-file",
            &worker_file,
        ],
    );
    let grid = d.join("secure.yaml");
    std::fs::write(&grid, grid_text()).unwrap();
    let mut sweep = String::new();
    wait_for("the TLS coordinator to accept a submission", Duration::from_secs(30), || {
        let out = client(&url, d, "user.token", &["submit", grid.to_str().unwrap(), "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            sweep = v["sweep_id"].as_str().unwrap().to_string();
        }
        out.status.success()
    });
    // The worker token cannot submit; the user token cannot lease (the worker exits).
    let refused = client(&url, d, "worker.token", &["status"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("worker token cannot use the sweep service"));
    let wrong = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args([
            "--coordinator",
            &url,
            "--tls-ca",
            &path("ca.pem"),
            "--tls-cert",
            &path("worker.pem"),
            "--tls-key",
            &path("worker.key"),
        ])
        .args(["--token-file", &user_file])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a worker with the user token must stop");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("user token cannot use the worker service"));

    let worker: Proc = attach_with(
        &url,
        "tls-worker",
        d,
        &[
            "--tls-ca",
            &path("ca.pem"),
            "--tls-cert",
            &path("worker.pem"),
            "--tls-key",
            &path("worker.key"),
            "--token-file",
            &worker_file,
        ],
    );
    wait_for("the sweep over TLS", Duration::from_secs(300), || {
        let out = client(&url, d, "user.token", &["status", &sweep, "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["sweeps"][0]["done"].as_u64()
                == Some(2)
    });
    let out = client(&url, d, "user.token", &["results", &sweep, "--format", "csv"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        1 + 2 * 2 * 2,
        "header + 2 jobs x 2 epochs x 2 layers"
    );
    drop(worker);
    for log in [data.with_extension("log"), d.join("tls-worker.log")] {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains(USER_TOKEN) && !text.contains(WORKER_TOKEN), "{} shows a token", log.display());
    }
}

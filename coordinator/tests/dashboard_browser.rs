//! The dashboard in a real browser: headless Chromium from Debian (`chromium`,
//! `chromium-driver`), driven through WebDriver, against the coordinator's HTTP server with
//! a finished job and a running one. It logs in (a wrong token gets the login form back, no
//! data), opens the sweep, finds the running job's information plane drawn with points for
//! every layer, then stages a new epoch and sees the plane grow within 2 s, live.
//!
//! Without Chromium the test installs it (as root, with apt) or skips, naming the
//! packages. `IBSWEEP_SCREENSHOTS=DIR` keeps the screenshots it takes (docs/ has them).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{N, finish, open, register};
use ibsweep_coordinator::ids::WorkerId;
use ibsweep_coordinator::scheduler::{Chunk, Grant};
use ibsweep_shared::measure::LayerHistogram;
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::security::Security;
use ibsweep_coordinator::service::serve_http;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_testkit::GridBuilder;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Pixels of the job panel's information plane in the first two series colours (app.js's
/// COLOURS: conv1, softmax).
const PAINTED_PER_LAYER: &str = "
    const canvas = document.querySelector('#job-panel .plane canvas');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = [[0x25, 0x63, 0xeb], [0xdc, 0x26, 0x26]];
    return colours.map(([r, g, b]) => {
        let n = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (Math.abs(data[i] - r) < 24 && Math.abs(data[i + 1] - g) < 24 && Math.abs(data[i + 2] - b) < 24 && data[i + 3] > 200) n++;
        }
        return n;
    });";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium and ChromeDriver, installed if this process may; false (and why) if not.
fn browser() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    eprintln!("Chromium is missing: installing Debian's chromium and chromium-driver with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine's package lists may be missing or stale: refresh them once on failure.
    let ok = install()
        || (Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
            && install());
    if !ok || !Path::new(CHROMEDRIVER).exists() {
        eprintln!(
            "SKIPPED the browser test: no {CHROMIUM} or {CHROMEDRIVER}; install Debian's packages chromium and \
             chromium-driver (apt-get install chromium chromium-driver, as root)"
        );
        return false;
    }
    true
}

/// ChromeDriver in a process group of its own, killed whole on drop: Chromium outlives a
/// killed driver otherwise, and keeps the test's pipes open.
struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // After a failed check the browser may be what is stuck: no goodbye, just kill.
        if let Some(session) = self.session.take().filter(|_| !std::thread::panicking()) {
            let _ = request(self.port, "DELETE", &format!("/session/{session}"), None);
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium starts process groups of its own: its profile directory names it.
        let profile = format!("--user-data-dir={}", self.profile.display());
        let _ = Command::new("pkill").args(["-KILL", "-f", "--", &profile]).status();
    }
}

/// One WebDriver call; its `value`, or a panic naming the driver's error.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // ChromeDriver keeps the connection open whatever the request says: read the head,
    // then exactly Content-Length bytes.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    let body = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("an answer without Content-Length")?;
            if bytes.len() >= end + 4 + length {
                break String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).into_owned();
            }
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the driver closed the connection mid-answer".into());
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let value: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    match value["value"].get("error") {
        Some(error) => Err(format!("{error}: {}", value["value"]["message"])),
        None => Ok(value["value"].clone()),
    }
}

impl Driver {
    fn start(dir: &Path) -> Driver {
        let port = ibsweep_testkit::free_port();
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(CHROMEDRIVER).arg(format!("--port={port}")).arg(format!("--log-path={}", dir.join("chromedriver.log").display())),
            0,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let profile = dir.join("chromium-profile");
        let mut driver = Driver { child, port, session: None, profile: profile.clone() };
        let start = Instant::now();
        while request(port, "GET", "/status", None).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1400,1800",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let session = request(port, "POST", "/session", Some(&capabilities)).expect("a WebDriver session");
        driver.session = Some(session["sessionId"].as_str().unwrap().to_string());
        driver
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let session = self.session.as_deref().unwrap();
        request(self.port, method, &format!("/session/{session}{path}"), body.as_ref())
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    fn element(&self, css: &str) -> String {
        let found = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.call("POST", &format!("/element/{element}/clear"), Some(json!({})));
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": text})));
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    /// Polls `script` until it returns something truthy; that value.
    fn wait_for(&self, what: &str, within: Duration, script: &str) -> Value {
        eprintln!("waiting for {what}");
        let start = Instant::now();
        loop {
            let value = self.script(script);
            if !(value.is_null() || value == json!(false) || value == json!("") || value == json!(0)) {
                return value;
            }
            if start.elapsed() > within {
                let page = self.script("return document.body ? document.body.innerText : ''");
                panic!("{what}: not within {within:?}; the page says:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("IBSWEEP_SCREENSHOTS").map(PathBuf::from) else { return };
        let png = self.call("GET", "/screenshot", None);
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// One epoch of the running job, its two layers far apart on the plane: conv1 keeps all N
/// samples apart (I(X;T) = log2 N), softmax merges them into 4 patterns.
fn epoch_pieces(grant: &Grant, worker: WorkerId, epoch: u32) -> Vec<Chunk> {
    [(1, "conv1", N), (2, "softmax", 4)]
        .into_iter()
        .enumerate()
        .map(|(i, (layer, name, patterns))| {
            let mut h = LayerHistogram::new(10);
            let hashes: Vec<u128> = (0..N).map(|s| u128::from(s % patterns + 1000 * epoch)).collect();
            let labels: Vec<u32> = (0..N).map(|s| s % 10).collect();
            h.add(&hashes, &labels).unwrap();
            Chunk {
                job_id: grant.job_id,
                claim: grant.claim(worker),
                sequence: u64::from(epoch) * 2 + i as u64,
                key: ibsweep_testkit::measurement(epoch, layer, name),
                histogram: h.to_bytes(),
                piece: 0,
                pieces: 1,
                estimates: None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_draws_information_planes_and_updates_live() {
    if !browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let scheduler = Arc::new(open(MemoryStore::new(), &clock));
    let grid = GridBuilder::tiny("dashboard").values("width", [1, 2, 4]).limit("max_attempts", 1).build();
    let sweep = scheduler.submit("dashboard.yaml", &grid).unwrap().sweep_id;
    let worker = register(&scheduler, "node1");
    let done = scheduler.lease(worker).unwrap().unwrap();
    finish(&scheduler, worker, &done);
    let running = scheduler.lease(worker).unwrap().unwrap();
    for chunk in epoch_pieces(&running, worker, 0) {
        assert!(scheduler.ingest(&chunk).unwrap());
    }
    let security = Security { user_token: Some("user-secret".into()), worker_token: Some("worker-secret".into()), tls: None };
    let (user_gate, _) = security.gates();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_http(listener, Arc::clone(&scheduler), user_gate, std::future::pending()));

    let s = Arc::clone(&scheduler);
    let dir_path = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let driver = Driver::start(&dir_path);
        // No cookie yet: the sweep's address answers with the login form, not data.
        driver.open(&format!("{base}/sweeps/{sweep}"));
        driver.wait_for("the login form", Duration::from_secs(10), "return document.querySelector('#login') !== null");
        for (wrong, says) in [("not-the-token", "wrong token"), ("worker-secret", "a worker token cannot")] {
            driver.type_into("#token", wrong);
            driver.click("#submit");
            let script = format!(
                "const m = document.querySelector('#message'); return m && m.innerText.includes({says:?}) && m.innerText"
            );
            driver.wait_for(&format!("the refusal: {says}"), Duration::from_secs(10), &script);
            let data = driver.script("return document.body.innerText");
            assert!(!data.as_str().unwrap().contains("dashboard"), "a refused login shows no sweep: {data}");
        }
        driver.type_into("#token", "user-secret");
        driver.click("#submit");

        // The sweep page: progress, the job table, and the running job's information plane
        // with points for both of its layers (epoch 0 so far).
        driver.wait_for("the job table", Duration::from_secs(10), "return document.querySelectorAll('#jobs tbody tr').length === 3");
        let plane = "const p = document.querySelector('#job-panel .plane'); return p && [Number(p.dataset.layers), Number(p.dataset.points)]";
        let drawn = driver.wait_for("the information plane", Duration::from_secs(10), plane);
        assert_eq!(drawn, json!([2, 2]), "two layers, one point each");
        // Drawn, not only counted: the plane's canvas has pixels of each layer's colour.
        let painted = driver.script(PAINTED_PER_LAYER);
        assert!(painted.as_array().unwrap().iter().all(|n| n.as_u64() > Some(0)), "layers painted: {painted}");
        let selected = driver.script("return document.querySelector('#jobs tr.selected').dataset.job");
        assert_eq!(selected, json!(running.job_id.to_string()), "the running job is shown first");
        driver.wait_for("the live feed", Duration::from_secs(10), "return document.querySelector('#live').innerText === 'live'");
        driver.screenshot("dashboard-sweep.png");

        // A new epoch is staged: the open page draws it within 2 s, without a reload.
        let marker = driver.script("window.__noReload = 1; return 1");
        assert_eq!(marker, json!(1));
        let staged = Instant::now();
        for chunk in epoch_pieces(&running, worker, 1) {
            assert!(s.ingest(&chunk).unwrap());
        }
        let grown = "const p = document.querySelector('#job-panel .plane'); return p && p.dataset.points === '4' && window.__noReload === 1";
        driver.wait_for("the new epoch on the page", Duration::from_secs(2), grown);
        eprintln!("a staged epoch reached the open page in {:?}", staged.elapsed());

        // The comparison views: means over finished jobs, by width.
        driver.wait_for(
            "the comparison by width",
            Duration::from_secs(10),
            "return document.querySelectorAll('#app .plane').length >= 3",
        );
        // The job page and the workers page.
        driver.open(&format!("{base}/jobs/{}", done.job_id));
        driver.wait_for("the job page", Duration::from_secs(10), "return document.querySelector('#attempts') !== null && document.querySelector('#job-panel .plane') !== null");
        driver.screenshot("dashboard-job.png");
        driver.open(&format!("{base}/workers"));
        let name = driver.wait_for("the workers page", Duration::from_secs(10), "const t = document.querySelector('#workers'); return t && t.innerText");
        assert!(name.as_str().unwrap().contains("node1"), "{name}");

        // Logged out, the API gives no data to the browser either.
        driver.call("DELETE", "/cookie", None);
        driver.open(&format!("{base}/api/v1/sweeps"));
        let body = driver.script("return document.body.innerText");
        assert!(body.as_str().unwrap().contains("needs a bearer token"), "{body}");
    })
    .await
    .unwrap();
}

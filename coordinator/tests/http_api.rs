//! The HTTP data API (`serve --http-listen`) on an ephemeral port over a memory store: the
//! same rows as `coordinator results`, the same filters, the same token rules (a worker
//! token is refused), and answers that say what is wrong.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::{chunks_for, finish, open, register, tiny_grid};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::security::Security;
use ibsweep_coordinator::service::serve_http;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_shared::results::{CSV_HEADER, CsvWriter};

/// (status code, body) of `GET path` with an optional bearer token.
fn get_bytes(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&bytes[..end]);
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, bytes[end + 4..].to_vec())
}

fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let (code, body) = get_bytes(addr, path, token);
    (code, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_serves_status_results_and_workers_behind_the_user_token() {
    let clock = ManualClock::new(1_000_000);
    let scheduler = Arc::new(open(MemoryStore::new(), &clock));
    let sweep = scheduler.submit("http.yaml", &tiny_grid("http", 1)).unwrap().sweep_id;
    let worker = register(&scheduler, "node1");
    let grant = scheduler.lease(worker).unwrap().unwrap();
    finish(&scheduler, worker, &grant);
    let security = Security { user_token: Some("user".into()), worker_token: Some("worker".into()), tls: None };
    let (user_gate, _) = security.gates();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_http(listener, Arc::clone(&scheduler), user_gate, std::future::pending()));

    let user = Some("user");
    let (expected, s) = (scheduler.results(sweep, &[]).unwrap(), Arc::clone(&scheduler));
    assert!(expected.len() >= 4);
    let checks = tokio::task::spawn_blocking(move || {
        assert_eq!(get(addr, "/healthz", None), (200, "ok\n".into()));
        let (code, body) = get(addr, "/api/v1/sweeps", None);
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("needs a bearer token"), "{body}");
        let (code, body) = get(addr, "/api/v1/sweeps", Some("worker"));
        assert_eq!(code, 403, "{body}");
        assert_eq!(get(addr, "/api/v1/sweeps", Some("wrong")).0, 401);

        let (code, body) = get(addr, "/api/v1/sweeps", user);
        assert_eq!(code, 200, "{body}");
        let all: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(all["sweeps"][0]["sweep_id"], sweep.to_string());
        assert_eq!(all["sweeps"][0]["done"], 1);
        let (code, body) = get(addr, &format!("/api/v1/sweeps/{sweep}"), user);
        assert_eq!(code, 200, "{body}");
        let one: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((one["total"].as_u64(), one["pending"].as_u64()), (Some(2), Some(1)));
        let (code, body) = get(addr, "/api/v1/sweeps/00000000-0000-0000-0000-000000000000", user);
        assert_eq!(code, 404, "{body}");
        assert_eq!(get(addr, "/api/v1/sweeps/not-a-uuid", user).0, 400);

        // Results: the rows `coordinator results --format csv` writes, byte for byte.
        let (code, csv) = get(addr, &format!("/api/v1/sweeps/{sweep}/results.csv"), user);
        assert_eq!(code, 200, "{csv}");
        let mut want = Vec::new();
        let mut writer = CsvWriter::new(&mut want);
        for row in &expected {
            writer.write(row).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        assert_eq!(csv, String::from_utf8(want).unwrap());
        assert_eq!(csv.lines().next(), Some(CSV_HEADER));
        assert_eq!(csv.lines().count(), expected.len() + 1);
        // Filters as query parameters, as `--where KEY=VALUE`.
        let (code, jsonl) = get(addr, &format!("/api/v1/sweeps/{sweep}/results.jsonl?layer_name=conv1&epoch=1"), user);
        assert_eq!(code, 200, "{jsonl}");
        let filtered = s.results(sweep, &[("layer_name".into(), "conv1".into()), ("epoch".into(), "1".into())]);
        assert_eq!(jsonl.lines().count(), filtered.unwrap().len());
        assert!(jsonl.lines().all(|l| l.contains("\"layer_name\":\"conv1\"")), "{jsonl}");
        let (code, body) = get(addr, &format!("/api/v1/sweeps/{sweep}/results.csv?colour=red"), user);
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("colour"), "the unknown column is named: {body}");
        // Parquet: the same rows, typed, under the CSV's column names.
        let (code, parquet) = get_bytes(addr, &format!("/api/v1/sweeps/{sweep}/results.parquet?split=test"), user);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&parquet));
        let tests: Vec<_> = expected.iter().filter(|r| r.split == ibsweep_shared::job::Split::Test).collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.parquet"), &parquet).unwrap();
        let file = std::fs::File::open(dir.path().join("r.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), tests.len());
        let i_yt = batches[0].column_by_name("i_yt").unwrap();
        let i_yt = i_yt.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
        assert_eq!(i_yt.values().to_vec(), tests.iter().map(|r| r.i_yt).collect::<Vec<_>>());
        let (code, body) = get(addr, &format!("/api/v1/sweeps/{sweep}/results.xml"), user);
        assert_eq!(code, 404, "{body}");

        let (code, body) = get(addr, "/api/v1/workers", user);
        assert_eq!(code, 200, "{body}");
        let workers: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(workers[0]["name"], "node1");
    });
    checks.await.unwrap();
}

/// Reads an event stream's lines until one contains `want`, or fails after `within`;
/// every line read is kept in `seen`.
fn await_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    seen: &mut Vec<String>,
    want: &str,
    within: std::time::Duration,
) -> String {
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < within, "no `{want}` in the event stream within {within:?}: {seen:#?}");
        match lines.next() {
            Some(Ok(line)) => {
                seen.push(line.clone());
                if line.contains(want) {
                    return line;
                }
            }
            Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            other => panic!("the event stream ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_live_its_epochs_are_announced_and_its_rows_are_provisional() {
    let clock = ManualClock::new(1_000_000);
    let scheduler = Arc::new(open(MemoryStore::new(), &clock));
    let sweep = scheduler.submit("live.yaml", &tiny_grid("live", 1)).unwrap().sweep_id;
    let security = Security { user_token: Some("user".into()), worker_token: None, tls: None };
    let (user_gate, _) = security.gates();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_http(listener, Arc::clone(&scheduler), user_gate, async {
        let _ = stopped.await;
    }));

    let s = Arc::clone(&scheduler);
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        // Without the token the feed is refused like every other route.
        assert_eq!(get(addr, "/api/v1/events", None).0, 401);
        assert_eq!(get(addr, "/api/v1/events?sweep=nope", Some("user")).0, 400);
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET /api/v1/events?sweep={sweep} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer user\r\n\r\n")
            .unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        let mut lines = std::io::BufReader::new(stream).lines();
        let mut seen = Vec::new();
        let seen = &mut seen;
        await_line(&mut lines, seen, "text/event-stream", std::time::Duration::from_secs(5));
        let worker = register(&s, "node1");
        let grant = s.lease(worker).unwrap().unwrap();
        // An unrelated sweep's events are not on this stream (submitted after the lease:
        // on this clock both sweeps would be as old, and the lease could go to either).
        let other = s.submit("other.yaml", &tiny_grid("other", 1)).unwrap().sweep_id;
        let leased = await_line(&mut lines, seen, "\"kind\":\"job\"", std::time::Duration::from_secs(2));
        assert!(leased.contains(&grant.job_id.to_string()) && leased.contains("\"state\":\"running\""), "{leased}");

        // The job table shows it running.
        let (code, body) = get(addr, &format!("/api/v1/sweeps/{sweep}/jobs"), Some("user"));
        assert_eq!(code, 200, "{body}");
        let table: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(table["jobs"].as_array().unwrap().len(), 2);
        let running = table["jobs"].as_array().unwrap().iter().find(|j| j["job_id"] == grant.job_id.to_string());
        assert_eq!(running.unwrap()["state"], "running", "{body}");
        assert_eq!(running.unwrap()["spec"]["dataset"], "mnist", "{body}");
        let (code, body) = get(addr, &format!("/api/v1/sweeps/{sweep}/jobs?from=1&limit=1"), Some("user"));
        assert_eq!(code, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((page["jobs"].as_array().unwrap().len(), page["next"].as_u64()), (1, None), "{body}");

        // A measured epoch is announced within 2 s and its rows are there, provisional.
        let started = std::time::Instant::now();
        for chunk in chunks_for(&grant, worker, 1, 0..=0) {
            assert!(s.ingest(&chunk).unwrap());
        }
        let measured = await_line(&mut lines, seen, "\"kind\":\"measured\"", std::time::Duration::from_secs(2));
        assert!(measured.contains("\"epoch\":0"), "{measured}");
        eprintln!("epoch announced {:?} after it was staged", started.elapsed());
        let job_rows = format!("/api/v1/jobs/{}/results.jsonl", grant.job_id);
        let (code, head_and_body) = {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            write!(stream, "GET {job_rows} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer user\r\n\r\n").unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
            (text.split_whitespace().nth(1).unwrap().to_string(), text)
        };
        assert_eq!(code, "200", "{head_and_body}");
        assert!(head_and_body.to_lowercase().contains("x-ibsweep-provisional: true"), "{head_and_body}");
        let (_, body) = head_and_body.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.lines().count(), 2, "epoch 0's two layers: {body}");
        assert!(body.lines().all(|l| l.contains("\"epoch\":0")), "{body}");
        // ... and never in the sweep's export until the job is done.
        assert_eq!(get(addr, &format!("/api/v1/sweeps/{sweep}/results.csv"), Some("user")).1.lines().count(), 1);
        let (code, body) = get(addr, &format!("/api/v1/jobs/{}", grant.job_id), Some("user"));
        assert_eq!(code, 200, "{body}");
        let job: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((job["state"].as_str(), job["sweep_id"].as_str()), (Some("running"), Some(&*sweep.to_string())));

        for chunk in chunks_for(&grant, worker, 1, 1..=1) {
            assert!(s.ingest(&chunk).unwrap());
        }
        s.complete(&grant.claim(worker), grant.job_id, ("a", "b"), 4).unwrap();
        let done = await_line(&mut lines, seen, "\"state\":\"done\"", std::time::Duration::from_secs(2));
        assert!(done.contains(&grant.job_id.to_string()), "{done}");
        assert!(!seen.iter().any(|l| l.contains(&other.to_string())), "another sweep's event: {seen:#?}");
        let (code, body) = get(addr, &job_rows, Some("user"));
        assert_eq!(code, 200);
        assert_eq!(body.lines().count(), 4, "both epochs, final: {body}");
        assert_eq!(get(addr, "/api/v1/jobs/00000000-0000-0000-0000-000000000000", Some("user")).0, 404);
    })
    .await
    .unwrap();

    // Shutting down ends open event streams instead of waiting for them forever.
    let mut open_stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut open_stream,
        b"GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer user\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server).await.expect("shutdown ends event streams").unwrap().unwrap();
}

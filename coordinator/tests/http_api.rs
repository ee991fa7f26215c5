//! The HTTP data API (`serve --http-listen`) on an ephemeral port over a memory store: the
//! same rows as `coordinator results`, the same filters, the same token rules (a worker
//! token is refused), and answers that say what is wrong.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use common::{finish, open, register, tiny_grid};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::security::Security;
use ibsweep_coordinator::service::serve_http;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_shared::results::{CSV_HEADER, CsvWriter};

/// (status code, body) of `GET path` with an optional bearer token.
fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
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
        let (code, body) = get(addr, &format!("/api/v1/sweeps/{sweep}/results.xml"), user);
        assert_eq!(code, 404, "{body}");

        let (code, body) = get(addr, "/api/v1/workers", user);
        assert_eq!(code, 200, "{body}");
        let workers: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(workers[0]["name"], "node1");
    });
    checks.await.unwrap();
}

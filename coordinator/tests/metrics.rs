//! `/metrics` scraped during a sweep: the counters and gauges move with the work.

mod common;

use std::sync::Arc;

use common::{N, TTL, chunks, register, tiny_grid};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::service::ServeOptions;
use ibsweep_coordinator::service::serve_metrics;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_proto::connect::ClientConfig;
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_testkit::in_process::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

fn value(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{line_start}` in\n{text}"))
}

#[tokio::test]
async fn counters_and_gauges_move_during_a_sweep() {
    let clock = ManualClock::new(1_000_000);
    let timing = Timing { lease_ttl_ms: TTL, heartbeat_interval_ms: 100, worker_timeout_ms: 10 * TTL };
    let scheduler = Arc::new(Scheduler::open(MemoryStore::new(), Arc::new(clock.clone()), timing).unwrap());
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    let server = Server::start(Arc::clone(&scheduler), ServeOptions::default()).await;
    tokio::spawn(serve_metrics(metrics_listener, Arc::clone(&scheduler), scheduler.metrics(), std::future::pending()));

    let before = scrape(metrics_addr).await;
    assert_eq!(value(&before, "ibsweep_leases_granted_total"), 0.0);

    let (channel, bearer) = ClientConfig::new(server.url.clone()).connect().await.unwrap();
    let mut sweeps = SweepServiceClient::with_interceptor(channel, bearer);
    let sweep = sweeps
        .submit(pb::SubmitRequest { grid_yaml: tiny_grid("metered", 3), file_name: "m.yaml".into() })
        .await
        .unwrap()
        .into_inner()
        .sweep_id;
    let s = Arc::clone(&scheduler);
    tokio::task::spawn_blocking(move || {
        let w = register(&s, "w");
        let done = s.lease(w).unwrap().unwrap();
        let pieces = chunks(&done, w, 2);
        for c in &pieces {
            s.ingest(c).unwrap();
        }
        s.complete(&done.claim(w), done.job_id, ("", ""), pieces.len() as u64).unwrap();
        let expiring = s.lease(w).unwrap().unwrap();
        let _ = expiring;
        clock.advance(TTL + 1);
        assert_eq!(s.expire_leases().unwrap(), 1);
    })
    .await
    .unwrap();
    sweeps.status(pb::StatusRequest { sweep_id: sweep.clone() }).await.unwrap();

    let after = scrape(metrics_addr).await;
    assert_eq!(value(&after, "ibsweep_leases_granted_total"), 2.0);
    assert_eq!(value(&after, "ibsweep_leases_expired_total"), 1.0);
    assert_eq!(value(&after, "ibsweep_jobs_completed_total"), 1.0);
    // 4 histograms of N distinct patterns, each in 2 pieces.
    assert_eq!(value(&after, "ibsweep_histogram_entries_total"), 4.0 * f64::from(N));
    assert!(value(&after, "ibsweep_histogram_bytes_total") > 4.0 * f64::from(N) * 16.0);
    assert_eq!(value(&after, &format!("ibsweep_jobs{{sweep=\"{sweep}\",name=\"metered\",state=\"done\"}}")), 1.0);
    assert_eq!(value(&after, &format!("ibsweep_jobs{{sweep=\"{sweep}\",name=\"metered\",state=\"pending\"}}")), 1.0);
    assert_eq!(value(&after, "ibsweep_workers"), 1.0);
    assert!(value(&after, "ibsweep_rpc_seconds_count{method=\"SweepService/Submit\"}") >= 1.0, "{after}");
    assert!(value(&after, "ibsweep_rpc_seconds_count{method=\"SweepService/Status\"}") >= 1.0);
}

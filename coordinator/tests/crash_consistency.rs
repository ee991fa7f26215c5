//! Commits stay whole across `kill -9`. A real `coordinator serve` (sled store) under load
//! from concurrent gRPC clients (Lease, Heartbeat, Fail or Release) is killed at a random
//! moment, several times; after each kill the store, reopened in this process as a restarted
//! coordinator would open it, must pass the full cross-record audit: every job record with
//! its index entry, every running job with its live-lease entry and no other, the re-queue
//! exactly the pending records, the sweep's counters equal to its records. And nothing
//! acknowledged is lost: no job a client's Fail was answered for still runs under that lease.
//!
//! A kill lands wherever the last sealed log buffer ended, often in the middle of a commit's
//! writes; only the store's redo record (`store::SledStore`) makes such a commit whole again.
//!
//!   IBSWEEP_CRASH_KILLS=50 cargo test -p ibsweep-coordinator --test crash_consistency

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::assert_consistent;
use ibsweep_coordinator::clock::SystemClock;
use ibsweep_coordinator::ids::JobId;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::store::SledStore;
use ibsweep_proto::connect::Bearer;
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::worker_service_client::WorkerServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_testkit::process::{Proc, Serve};
use ibsweep_testkit::{GridBuilder, Rng, free_port};
use tonic::transport::Channel;

const CLIENTS: usize = 12;

/// 100,000 small jobs (enough for hundreds of kills), two tries each, so failures re-queue
/// before they fail for good.
fn grid() -> String {
    GridBuilder::tiny("crash")
        .values("width", 1..=50)
        .values("seed", 0..2000)
        .measure("epochs", "[0]")
        .train("train_size", 10)
        .train("test_size", 1)
        .train("batch_size", 1)
        .limit("max_attempts", 2)
        .build()
}

fn start(data: &std::path::Path, port: u16) -> Proc {
    Serve::new(port, data, 60).quiet("error").spawn()
}

async fn connect(port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
            Ok(channel) => return channel,
            Err(e) if Instant::now() > deadline => panic!("the coordinator did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One client: register, then lease and end each job one of three ways, until `stop`.
/// Errors (the coordinator dies under it) just end the client.
/// Shared by the clients of one round: grants seen, and (job, token) of every answered Fail.
#[derive(Default)]
struct Seen {
    grants: AtomicU64,
    ended: Mutex<Vec<(String, u64)>>,
}

async fn client(channel: Channel, seed: u64, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed);
    let mut c = WorkerServiceClient::with_interceptor(channel, Bearer::default());
    let Ok(r) = c.register(pb::RegisterRequest::cpu("crash", 1)).await else { return };
    let worker_id = r.into_inner().worker_id;
    while !stop.load(Ordering::Relaxed) {
        let Ok(r) = c.lease(pb::LeaseRequest { worker_id: worker_id.clone() }).await else { return };
        let Some(lease) = r.into_inner().lease else { return };
        seen.grants.fetch_add(1, Ordering::Relaxed);
        if rng.below(3) == 0 {
            let beat = pb::HeartbeatRequest { claim: Some(lease.claim(&worker_id)), epoch: 0 };
            if c.heartbeat(beat).await.is_err() {
                return;
            }
        }
        let fail = pb::FailRequest {
            claim: Some(lease.claim(&worker_id)),
            reason: "crash test".into(),
            release: rng.below(2) == 0,
        };
        if c.fail(fail).await.is_err() {
            return;
        }
        seen.ended.lock().unwrap().push((lease.job_id, lease.fencing_token));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_is_whole_after_kill_9_under_load() {
    let kills: u64 = std::env::var("IBSWEEP_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    println!("crash consistency: {kills} kills");
    let (mut rng, _) = Rng::from_env_or_clock("IBSWEEP_CRASH_SEED");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let mut total = 0;
    for round in 0..kills {
        let port = free_port();
        let coordinator = start(&data, port);
        let channel = connect(port).await;
        if round == 0 {
            let submit = pb::SubmitRequest { grid_yaml: grid(), file_name: "crash.yaml".into() };
            SweepServiceClient::with_interceptor(channel.clone(), Bearer::default()).submit(submit).await.unwrap();
        }
        let (seen, stop) = (Arc::new(Seen::default()), Arc::new(AtomicBool::new(false)));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| tokio::spawn(client(channel.clone(), rng.below(u64::MAX), Arc::clone(&seen), Arc::clone(&stop))))
            .collect();
        // Let the load build, then kill at a random moment of it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.grants.load(Ordering::Relaxed) < 20 {
            assert!(
                Instant::now() < deadline && !clients.iter().all(|c| c.is_finished()),
                "kill {}: the clients stopped leasing before the kill ({} grants)",
                round + 1,
                seen.grants.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        drop(coordinator);
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        total += seen.grants.load(Ordering::Relaxed);
        // What a restarted coordinator finds.
        let store = SledStore::open(&data).unwrap();
        let scheduler = Scheduler::open(store, Arc::new(SystemClock), Timing::default()).unwrap();
        assert_consistent(&scheduler);
        let ended = seen.ended.lock().unwrap();
        for (job, token) in ended.iter() {
            let job = scheduler.job(job.parse::<JobId>().unwrap()).unwrap();
            assert!(
                job.lease().is_none_or(|l| l.token.0 != *token),
                "kill {}: job {} runs under lease {token} after its Fail was answered",
                round + 1,
                job.job_id
            );
        }
        assert!(!ended.is_empty(), "kill {}: no Fail was answered before the kill", round + 1);
        let counts = scheduler.status(None).unwrap()[0].record.counts;
        println!("kill {}: consistent ({total} grants so far; {counts:?})", round + 1);
    }
}

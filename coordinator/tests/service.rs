//! The services on a real server (ephemeral port, in-memory store, manual clock), driven by
//! fake workers speaking gRPC: what the wire promises, status codes included.

use std::sync::Arc;

use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::service::ServeOptions;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_proto::PROTOCOL_VERSION;
use ibsweep_proto::connect::{Bearer, ClientConfig};
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::worker_service_client::WorkerServiceClient;
use ibsweep_proto::v1::{self as pb};
use ibsweep_testkit::GridBuilder;
use ibsweep_testkit::in_process::Server;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

fn grid() -> String {
    GridBuilder::tiny("svc").values("width", [1, 2, 3]).limit("max_attempts", 2).build()
}

const TTL: u64 = 5_000;

type Sweeps = SweepServiceClient<InterceptedService<Channel, Bearer>>;
type Workers = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

struct Harness {
    clock: ManualClock,
    sweeps: Sweeps,
    channel: Channel,
    _server: Server,
}

async fn start() -> Harness {
    let clock = ManualClock::new(1_000_000);
    let scheduler = Arc::new(
        Scheduler::open(
            MemoryStore::new(),
            Arc::new(clock.clone()),
            Timing { lease_ttl_ms: TTL, heartbeat_interval_ms: 1_000, worker_timeout_ms: 100 * TTL },
        )
        .unwrap(),
    );
    let server = Server::start(scheduler, ServeOptions::default()).await;
    let (channel, bearer) = ClientConfig::new(server.url.clone()).connect().await.unwrap();
    Harness { clock, sweeps: SweepServiceClient::with_interceptor(channel.clone(), bearer), channel, _server: server }
}

impl Harness {
    async fn worker(&self, name: &str) -> (Workers, String) {
        let mut client = WorkerServiceClient::with_interceptor(self.channel.clone(), Bearer::default());
        let r = client
            .register(pb::RegisterRequest {
                protocol_version: PROTOCOL_VERSION,
                name: name.into(),
                threads: 1,
                device: "cpu".into(),
                previous_worker_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        (client, r.worker_id)
    }

    async fn submit(&mut self) -> String {
        self.sweeps
            .submit(pb::SubmitRequest { grid_yaml: grid(), file_name: "svc.yaml".into() })
            .await
            .unwrap()
            .into_inner()
            .sweep_id
    }
}

async fn lease(client: &mut Workers, worker: &str) -> Option<pb::Lease> {
    client.lease(pb::LeaseRequest { worker_id: worker.into() }).await.unwrap().into_inner().lease
}

async fn heartbeat(client: &mut Workers, worker: &str, l: &pb::Lease) -> Result<pb::HeartbeatResponse, tonic::Status> {
    client.heartbeat(pb::HeartbeatRequest { claim: Some(l.claim(worker)), epoch: 0 }).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn registration_checks_the_protocol_version() {
    let h = start().await;
    let mut client = WorkerServiceClient::with_interceptor(h.channel.clone(), Bearer::default());
    let err = client
        .register(pb::RegisterRequest {
            protocol_version: PROTOCOL_VERSION + 1,
            name: "old".into(),
            threads: 1,
            device: "cpu".into(),
            previous_worker_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let want = format!(
        "speaks ibsweep protocol {}; this coordinator speaks protocol {PROTOCOL_VERSION}",
        PROTOCOL_VERSION + 1
    );
    assert!(err.message().contains(&want), "{}", err.message());
}

#[tokio::test]
async fn a_client_of_protocol_3_is_refused_by_name_on_either_service() {
    let h = start().await;
    // Protocol 3 clients sent no version header; a bare channel is one.
    let mut worker = WorkerServiceClient::new(h.channel.clone());
    let err = worker.register(pb::RegisterRequest::cpu("old", 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let want = format!("speaks ibsweep protocol 3 or older; this coordinator speaks protocol {PROTOCOL_VERSION}");
    assert!(err.message().contains(&want), "{}", err.message());
    let mut cli = SweepServiceClient::new(h.channel.clone());
    let err = cli.status(pb::StatusRequest::default()).await.unwrap_err();
    assert!(err.message().contains(&want), "{}", err.message());
    // Health stays open to every probe.
    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap();
}

#[tokio::test]
async fn two_workers_never_share_a_job_and_expiry_requeues() {
    let mut h = start().await;
    let sweep = h.submit().await;
    let (mut a, wa) = h.worker("a").await;
    let (mut b, wb) = h.worker("b").await;
    let la = lease(&mut a, &wa).await.unwrap();
    let lb = lease(&mut b, &wb).await.unwrap();
    assert_ne!(la.job_id, lb.job_id);
    assert!(lb.fencing_token > la.fencing_token);
    let spec = ibsweep_shared::job::JobSpec::try_from(la.spec.clone().unwrap()).unwrap();
    assert_eq!(spec.dataset, ibsweep_shared::job::Dataset::Mnist);

    // a keeps heartbeating; b goes silent past the TTL.
    let (mut c, wc) = h.worker("c").await;
    h.clock.advance(TTL - 1);
    heartbeat(&mut a, &wa, &la).await.unwrap();
    h.clock.advance(1);
    let lc = lease(&mut c, &wc).await.unwrap();
    assert_ne!(lc.job_id, lb.job_id, "b's lease is still valid at its deadline");
    h.clock.advance(TTL / 2);
    heartbeat(&mut a, &wa, &la).await.unwrap();
    heartbeat(&mut c, &wc, &lc).await.unwrap();
    // Expiry runs on the server's own timer (every heartbeat interval / 2 of real time).
    let (mut d, wd) = h.worker("d").await;
    let again = async {
        loop {
            if let Some(l) = lease(&mut d, &wd).await {
                return l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let again = tokio::time::timeout(std::time::Duration::from_secs(10), again).await.expect("b's lease expires");
    assert_eq!((again.job_id.as_str(), again.attempt), (lb.job_id.as_str(), 2), "b's job came back with attempt 2");

    // b's old token is refused everywhere.
    let err = heartbeat(&mut b, &wb, &lb).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("stale lease"), "{}", err.message());
    let err = b
        .complete(pb::CompleteRequest { claim: Some(lb.claim(&wb)), chunks: 0, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let chunk = pb::HistogramChunk {
        claim: Some(lb.claim(&wb)),
        measurement: Some(pb::Measurement {
            epoch: 0,
            split: pb::Split::Test.into(),
            layer: 1,
            layer_name: "conv1".into(),
            bin_size: 0.67,
            ..Default::default()
        }),
        histogram: ibsweep_shared::measure::LayerHistogram::new(10).to_bytes(),
        pieces: 1,
        ..Default::default()
    };
    let err = b.upload_histograms(tokio_stream::iter(vec![chunk])).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let status = h.sweeps.status(pb::StatusRequest { sweep_id: sweep.clone() }).await.unwrap().into_inner();
    let counts = status.sweeps[0].counts.unwrap();
    assert_eq!((counts.running, counts.pending), (3, 0));
    assert_eq!(status.workers.len(), 4);
}

#[tokio::test]
async fn cancel_reaches_the_worker_at_its_heartbeat_and_retry_requeues_failures() {
    let mut h = start().await;
    let sweep = h.submit().await;
    let (mut a, wa) = h.worker("a").await;
    // Fail one job twice (max_attempts: 2): it is failed with both reasons.
    let first = lease(&mut a, &wa).await.unwrap();
    a.fail(pb::FailRequest { claim: Some(first.claim(&wa)), reason: "boom 1".into(), release: false }).await.unwrap();
    let second = lease(&mut a, &wa).await.unwrap();
    assert_eq!(second.job_id, first.job_id);
    a.fail(pb::FailRequest { claim: Some(second.claim(&wa)), reason: "boom 2".into(), release: false }).await.unwrap();
    let status = h.sweeps.status(pb::StatusRequest { sweep_id: sweep.clone() }).await.unwrap().into_inner();
    let s = &status.sweeps[0];
    assert_eq!(s.counts.unwrap().failed, 1);
    assert_eq!(s.failures[0].reasons.len(), 2);
    assert!(s.failures[0].reasons[1].contains("boom 2"));
    let retried =
        h.sweeps.retry(pb::RetryRequest { sweep_id: sweep.clone(), failed: true }).await.unwrap().into_inner();
    assert_eq!(retried.requeued, 1);

    let running = lease(&mut a, &wa).await.unwrap();
    assert!(!heartbeat(&mut a, &wa, &running).await.unwrap().cancelled);
    let cancelled = h.sweeps.cancel(pb::CancelRequest { sweep_id: sweep.clone() }).await.unwrap().into_inner();
    assert_eq!(cancelled.cancelled, 3);
    assert!(heartbeat(&mut a, &wa, &running).await.unwrap().cancelled);
    let (mut other, wo) = h.worker("other").await;
    assert!(lease(&mut other, &wo).await.is_none(), "a cancelled sweep hands out nothing");

    let err = h.sweeps.status(pb::StatusRequest { sweep_id: "not-a-uuid".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = h.sweeps.cancel(pb::CancelRequest { sweep_id: uuid::Uuid::nil().to_string() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = h
        .sweeps
        .submit(pb::SubmitRequest {
            grid_yaml: "name: x\nparameters: {widht: {value: 1}}\n".into(),
            file_name: "bad.yaml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("bad.yaml:2:"), "{}", err.message());
}

/// A full disk, seen from the wire: writes answer RESOURCE_EXHAUSTED naming the store,
/// reads and `status` keep working and say why, gRPC health turns NOT_SERVING for the
/// worker service; once space returns the store is reopened by itself and health turns
/// SERVING again, with no restart.
#[tokio::test]
async fn a_full_disk_is_refused_reported_and_recovered_from_without_a_restart() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    let clock = ManualClock::new(1_000_000);
    let timing = Timing { lease_ttl_ms: TTL, heartbeat_interval_ms: 1_000, worker_timeout_ms: 100 * TTL };
    let scheduler = Arc::new(Scheduler::open(MemoryStore::new(), Arc::new(clock.clone()), timing).unwrap());
    let server = Server::start(Arc::clone(&scheduler), ServeOptions::default()).await;
    let (channel, bearer) = ClientConfig::new(server.url.clone()).connect().await.unwrap();
    let mut sweeps = SweepServiceClient::with_interceptor(channel.clone(), bearer);
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let worker_health = || HealthCheckRequest { service: "ibsweep.v1.WorkerService".into() };
    let submit = |name: &str| pb::SubmitRequest {
        grid_yaml: GridBuilder::tiny(name).build(),
        file_name: format!("{name}.yaml"),
    };
    sweeps.submit(submit("before")).await.unwrap();

    scheduler.store().set_disk_full(true);
    let refused = sweeps.submit(submit("during")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("no space left") && refused.message().contains("memory"), "{refused:?}");
    let status = sweeps.status(pb::StatusRequest::default()).await.unwrap().into_inner();
    assert_eq!(status.sweeps.len(), 1, "reads keep working");
    assert!(status.store_problem.contains("cannot write"), "{status:?}");
    let mut serving = ServingStatus::Serving as i32;
    for _ in 0..40 {
        serving = health.check(worker_health()).await.unwrap().into_inner().status;
        if serving == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(serving, ServingStatus::NotServing as i32, "the worker service must report NOT_SERVING");

    scheduler.store().set_disk_full(false);
    for _ in 0..100 {
        serving = health.check(worker_health()).await.unwrap().into_inner().status;
        if serving == ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(serving, ServingStatus::Serving as i32, "recovered within 10 s, by itself");
    let status = sweeps.status(pb::StatusRequest::default()).await.unwrap().into_inner();
    assert!(status.store_problem.is_empty(), "{status:?}");
    sweeps.submit(submit("after")).await.unwrap();
    server.stop().await;
}

/// A store that cannot be reopened after a write failure ends the server with
/// `Error::StoreLost`, whose exit code (75) asks the supervisor for a restart.
#[tokio::test]
async fn a_store_that_cannot_be_reopened_ends_the_server_for_a_restart() {
    let clock = ManualClock::new(1_000_000);
    let timing = Timing { lease_ttl_ms: TTL, heartbeat_interval_ms: 1_000, worker_timeout_ms: 100 * TTL };
    let scheduler = Arc::new(Scheduler::open(MemoryStore::new(), Arc::new(clock), timing).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(ibsweep_coordinator::service::serve_with(
        listener,
        Arc::clone(&scheduler),
        ServeOptions::default(),
        std::future::pending(),
    ));
    let (channel, bearer) = ClientConfig::new(url).connect().await.unwrap();
    let mut sweeps = SweepServiceClient::with_interceptor(channel, bearer);
    scheduler.store().set_reopen_fails(true);
    scheduler.store().set_disk_full(true);
    let grid = GridBuilder::tiny("lost").build();
    let refused = sweeps.submit(pb::SubmitRequest { grid_yaml: grid, file_name: "lost.yaml".into() }).await;
    assert_eq!(refused.unwrap_err().code(), Code::ResourceExhausted);
    scheduler.store().set_disk_full(false);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), server).await.expect("the server stops");
    let err = ended.unwrap().unwrap_err();
    assert!(matches!(err, ibsweep_coordinator::error::Error::StoreLost { .. }), "{err}");
    assert_eq!(err.exit_code(), ibsweep_coordinator::error::EXIT_STORE_LOST);
}

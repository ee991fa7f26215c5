//! Security on a real server (ephemeral port, in-memory store): every RPC of both services
//! without a token, with a wrong one and with the other role's; TLS and mutual TLS with a
//! throwaway CA (rcgen); the resource limits, each exceeded while others keep being served.

use std::sync::Arc;
use std::time::Duration;

use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::scheduler::{Limits, Scheduler, Timing};
use ibsweep_coordinator::security::{Security, ServeLimits, TlsFiles};
use ibsweep_coordinator::service::ServeOptions;
use ibsweep_coordinator::store::MemoryStore;
use ibsweep_proto::PROTOCOL_VERSION;
use ibsweep_proto::connect::{Bearer, ClientConfig};
use ibsweep_proto::v1::sweep_service_client::SweepServiceClient;
use ibsweep_proto::v1::worker_service_client::WorkerServiceClient;
use ibsweep_proto::v1::{self as pb};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use ibsweep_testkit::GridBuilder;
use ibsweep_testkit::in_process::Server;

const USER: &str = "user-token-5f1c";
const WORKER: &str = "worker-token-9a2e";

fn grid() -> String {
    GridBuilder::tiny("sec").values("width", [1, 2]).build()
}

async fn start(security: Security, limits: ServeLimits, scheduler_limits: Limits) -> Server {
    let scheduler = Scheduler::open(
        MemoryStore::new(),
        Arc::new(ManualClock::new(1_000_000)),
        Timing { lease_ttl_ms: 60_000, heartbeat_interval_ms: 10_000, worker_timeout_ms: 600_000 },
    )
    .unwrap()
    .with_limits(scheduler_limits);
    Server::start(Arc::new(scheduler), ServeOptions { security, limits }).await
}

fn tokens() -> Security {
    Security { user_token: Some(USER.into()), worker_token: Some(WORKER.into()), tls: None }
}

async fn channel(config: &ClientConfig) -> (Channel, Bearer) {
    config.connect().await.unwrap()
}

fn with_token(url: &str, token: Option<&str>) -> ClientConfig {
    ClientConfig { url: url.into(), token: token.map(str::to_string), ..ClientConfig::default() }
}

async fn sweeps(config: &ClientConfig) -> SweepServiceClient<InterceptedService<Channel, Bearer>> {
    let (c, b) = channel(config).await;
    SweepServiceClient::with_interceptor(c, b)
}

async fn workers(config: &ClientConfig) -> WorkerServiceClient<InterceptedService<Channel, Bearer>> {
    let (c, b) = channel(config).await;
    WorkerServiceClient::with_interceptor(c, b)
}

/// The code of every RPC of both services, in a fixed order.
async fn codes(config: &ClientConfig) -> Vec<(&'static str, Code)> {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut s = sweeps(config).await;
    let mut w = workers(config).await;
    let id = uuid::Uuid::nil().to_string();
    let claim = || Some(pb::LeaseClaim { worker_id: id.clone(), job_id: id.clone(), ..Default::default() });
    vec![
        (
            "Submit",
            code(s.submit(pb::SubmitRequest { grid_yaml: grid(), file_name: "g.yaml".into() }).await.map(|_| ())),
        ),
        ("Status", code(s.status(pb::StatusRequest::default()).await.map(|_| ()))),
        ("Watch", code(s.watch(pb::WatchRequest::default()).await.map(|_| ()))),
        ("Results", code(s.results(pb::ResultsRequest { sweep_id: id.clone(), filters: vec![] }).await.map(|_| ()))),
        ("Cancel", code(s.cancel(pb::CancelRequest { sweep_id: id.clone() }).await.map(|_| ()))),
        ("Retry", code(s.retry(pb::RetryRequest { sweep_id: id.clone(), failed: true }).await.map(|_| ()))),
        ("Workers", code(s.workers(pb::WorkersRequest {}).await.map(|_| ()))),
        ("Jobs", code(s.jobs(pb::JobsRequest { sweep_id: id.clone() }).await.map(|_| ()))),
        (
            "ExportCheckpoint",
            code(s.export_checkpoint(pb::ExportCheckpointRequest { job_id: id.clone() }).await.map(|_| ())),
        ),
        (
            "Register",
            code(
                w.register(pb::RegisterRequest {
                    protocol_version: PROTOCOL_VERSION,
                    name: "w".into(),
                    threads: 1,
                    device: "cpu".into(),
                    previous_worker_id: String::new(),
                })
                .await
                .map(|_| ()),
            ),
        ),
        ("Lease", code(w.lease(pb::LeaseRequest { worker_id: id.clone() }).await.map(|_| ()))),
        (
            "Heartbeat",
            code(w.heartbeat(pb::HeartbeatRequest { claim: claim(), ..Default::default() }).await.map(|_| ())),
        ),
        (
            "UploadHistograms",
            code(w.upload_histograms(tokio_stream::iter(Vec::<pb::HistogramChunk>::new())).await.map(|_| ())),
        ),
        ("Complete", code(w.complete(pb::CompleteRequest { claim: claim(), ..Default::default() }).await.map(|_| ()))),
        ("Fail", code(w.fail(pb::FailRequest { claim: claim(), ..Default::default() }).await.map(|_| ()))),
        (
            "UploadCheckpoint",
            code(w.upload_checkpoint(tokio_stream::iter(Vec::<pb::UploadCheckpointPiece>::new())).await.map(|_| ())),
        ),
        (
            "DownloadCheckpoint",
            code(w.download_checkpoint(pb::DownloadCheckpointRequest { claim: claim() }).await.map(|_| ())),
        ),
        (
            "DiscardCheckpoint",
            code(
                w.discard_checkpoint(pb::DiscardCheckpointRequest { claim: claim(), reason: String::new() })
                    .await
                    .map(|_| ()),
            ),
        ),
    ]
}

fn is_worker_rpc(name: &str) -> bool {
    [
        "Register",
        "Lease",
        "Heartbeat",
        "UploadHistograms",
        "Complete",
        "Fail",
        "UploadCheckpoint",
        "DownloadCheckpoint",
        "DiscardCheckpoint",
    ]
    .contains(&name)
}

#[tokio::test]
async fn every_rpc_checks_its_role() {
    let server = start(tokens(), ServeLimits::default(), Limits::default()).await;
    for (name, code) in codes(&with_token(&server.url, None)).await {
        assert_eq!(code, Code::Unauthenticated, "{name} without a token");
    }
    for (name, code) in codes(&with_token(&server.url, Some("guess"))).await {
        assert_eq!(code, Code::Unauthenticated, "{name} with a wrong token");
    }
    for (name, code) in codes(&with_token(&server.url, Some(WORKER))).await {
        let want = if is_worker_rpc(name) {
            code != Code::Unauthenticated && code != Code::PermissionDenied
        } else {
            code == Code::PermissionDenied
        };
        assert!(want, "{name} with the worker token: {code:?}");
    }
    for (name, code) in codes(&with_token(&server.url, Some(USER))).await {
        let want = if is_worker_rpc(name) {
            code == Code::PermissionDenied
        } else {
            code != Code::Unauthenticated && code != Code::PermissionDenied
        };
        assert!(want, "{name} with the user token: {code:?}");
    }
    // The refusals name no token.
    let err =
        sweeps(&with_token(&server.url, Some(WORKER))).await.status(pb::StatusRequest::default()).await.unwrap_err();
    assert!(!err.message().contains(WORKER) && !err.message().contains(USER), "{}", err.message());
    assert!(err.message().contains("worker token cannot use the sweep service"), "{}", err.message());
    // Health needs no token (probes), reflection follows the sweep service.
    let (c, _) = channel(&with_token(&server.url, None)).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(c);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
}

#[tokio::test]
async fn one_token_serves_both_roles_and_a_routable_address_needs_one() {
    let only_user = Security { user_token: Some(USER.into()), ..Security::default() };
    let server = start(only_user.clone(), ServeLimits::default(), Limits::default()).await;
    for (name, code) in codes(&with_token(&server.url, Some(USER))).await {
        assert!(code != Code::Unauthenticated && code != Code::PermissionDenied, "{name}: {code:?}");
    }
    let routable = "10.1.2.3:50051".parse().unwrap();
    let err = Security::default().check(routable, false).unwrap_err().to_string();
    assert!(err.contains("without a token") && err.contains("--insecure"), "{err}");
    Security::default().check(routable, true).unwrap();
    Security::default().check("127.0.0.1:50051".parse().unwrap(), false).unwrap();
    only_user.check(routable, false).unwrap();
    let worker_only = Security { worker_token: Some(WORKER.into()), ..Security::default() };
    assert!(worker_only.check("127.0.0.1:1".parse().unwrap(), false).is_err());
}

/// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ibsweep test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        write("ca.pem", ca_cert.pem());
        let issuer = Issuer::new(ca, ca_key);
        for (name, sans) in
            [("server", vec!["127.0.0.1".to_string(), "localhost".to_string()]), ("worker", vec!["worker".to_string()])]
        {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans).unwrap().signed_by(&key, &issuer).unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn tls_and_mutual_tls_for_workers() {
    let pki = Pki::new();
    let tls =
        TlsFiles { cert: pki.path("server.pem"), key: pki.path("server.key"), client_ca: Some(pki.path("ca.pem")) };
    let server = start(Security { tls: Some(tls), ..tokens() }, ServeLimits::default(), Limits::default()).await;
    assert!(server.url.starts_with("https://"));
    // Without the CA the client refuses to start, naming the flag.
    let err =
        ClientConfig { token: Some(USER.into()), ..ClientConfig::new(server.url.clone()) }.endpoint().unwrap_err();
    assert!(err.to_string().contains("--tls-ca"), "{err}");
    // People need the CA only.
    let user = ClientConfig {
        url: server.url.clone(),
        token: Some(USER.into()),
        tls_ca: Some(pki.path("ca.pem")),
        tls_identity: None,
    };
    let mut s = sweeps(&user).await;
    s.submit(pb::SubmitRequest { grid_yaml: grid(), file_name: "g.yaml".into() }).await.unwrap();
    // Workers need a client certificate as well as the worker token.
    let bare = ClientConfig { token: Some(WORKER.into()), ..user.clone() };
    let register = pb::RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "w".into(),
        threads: 1,
        device: "cpu".into(),
        previous_worker_id: String::new(),
    };
    let err = workers(&bare).await.register(register.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("client certificate"), "{}", err.message());
    let with_cert = ClientConfig { tls_identity: Some((pki.path("worker.pem"), pki.path("worker.key"))), ..bare };
    let mut w = workers(&with_cert).await;
    let id = w.register(register).await.unwrap().into_inner().worker_id;
    let lease = w.lease(pb::LeaseRequest { worker_id: id }).await.unwrap().into_inner().lease.unwrap();
    assert_eq!(lease.lease_secret.len(), 32);
    // Plain HTTP to a TLS port does not get through.
    let plain = ClientConfig::new(server.url.replace("https://", "http://"));
    assert!(plain.connect().await.is_err() || sweeps(&plain).await.status(pb::StatusRequest::default()).await.is_err());
}

#[tokio::test]
async fn limits_refuse_the_excess_and_keep_serving() {
    let limits = ServeLimits { max_connections: 2, max_request_bytes: 64 * 1024, ..ServeLimits::default() };
    let server = start(Security::default(), limits, Limits { max_points: 10, max_workers: 2 }).await;
    let config = with_token(&server.url, None);
    let mut s = sweeps(&config).await;
    // A message over --max-request-bytes.
    let huge = format!("{}description: {}\n", grid(), "x".repeat(100 * 1024));
    let err = s.submit(pb::SubmitRequest { grid_yaml: huge, file_name: "huge.yaml".into() }).await.unwrap_err();
    assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");
    // A grid over --max-points.
    let big = GridBuilder::tiny("sec").values("width", 1..=11).build();
    let err = s.submit(pb::SubmitRequest { grid_yaml: big, file_name: "big.yaml".into() }).await.unwrap_err();
    assert!(err.message().contains("more than the 10"), "{}", err.message());
    // More workers than --max-workers.
    let mut w = workers(&config).await;
    let register = |name: &str| pb::RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        threads: 1,
        device: "cpu".into(),
        previous_worker_id: String::new(),
    };
    w.register(register("a")).await.unwrap();
    w.register(register("b")).await.unwrap();
    let err = w.register(register("c")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("--max-workers"), "{}", err.message());
    // A name over the length limit.
    let err = w.register(register(&"n".repeat(500))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A third connection beyond --max-connections (two are open: s and w) is closed.
    let third = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = sweeps(&config).await;
        c.status(pb::StatusRequest::default()).await
    })
    .await;
    assert!(!matches!(third, Ok(Ok(_))), "the connection over the limit was served");
    // Everything within the limits still works.
    s.submit(pb::SubmitRequest { grid_yaml: grid(), file_name: "g.yaml".into() }).await.unwrap();
    assert_eq!(s.status(pb::StatusRequest::default()).await.unwrap().into_inner().sweeps.len(), 1);
}

#[tokio::test]
async fn a_stuck_request_is_cut_by_the_timeout_while_others_are_served() {
    let limits = ServeLimits { max_streams: 1, request_timeout: Duration::from_secs(1), ..ServeLimits::default() };
    let server = start(Security::default(), limits, Limits::default()).await;
    let config = with_token(&server.url, None);
    let (channel, bearer) = channel(&config).await;
    let mut stuck = WorkerServiceClient::with_interceptor(channel.clone(), bearer.clone());
    // An upload whose stream never ends holds its handler.
    let (_keep_open, rx) = tokio::sync::mpsc::channel::<pb::HistogramChunk>(1);
    let upload =
        tokio::spawn(async move { stuck.upload_histograms(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!upload.is_finished(), "the upload is held open");
    // --max-streams 1: a second call on the same connection waits for the only stream.
    let mut same_connection = SweepServiceClient::with_interceptor(channel, bearer);
    let waiting =
        tokio::time::timeout(Duration::from_millis(300), same_connection.status(pb::StatusRequest::default())).await;
    assert!(waiting.is_err(), "the second stream was not held back: {waiting:?}");
    // The timeout ends the stuck upload.
    let ended = tokio::time::timeout(Duration::from_secs(10), upload).await.expect("the timeout fired").unwrap();
    let err = ended.unwrap_err();
    assert!(matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded), "{err:?}");
    // Another connection is served meanwhile and after.
    let mut other = sweeps(&config).await;
    other.status(pb::StatusRequest::default()).await.unwrap();
}

//! Prometheus metrics (`serve --metrics-listen ADDR`, text format at `/metrics`), with the
//! official `prometheus-client` crate: counters moved where things happen, gauges read from
//! the scheduler's maintained counters at scrape time (no store scan but the sweep list).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    sweep: String,
    name: String,
    state: String,
}

type LatencyFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. 8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric the coordinator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub leases_granted: Counter,
    pub leases_expired: Counter,
    pub leases_released: Counter,
    pub jobs_failed_attempts: Counter,
    pub jobs_completed: Counter,
    pub histogram_bytes: Counter,
    pub histogram_entries: Counter,
    pub checkpoints_stored: Counter,
    pub checkpoints_discarded: Counter,
    /// Times the store was reopened after writes failed for lack of space.
    pub store_recoveries: Counter,
    rpc_seconds: LatencyFamily,
    jobs: Family<JobLabels, Gauge>,
    workers: Gauge,
    store_bytes: Gauge,
    checkpoint_bytes: Gauge,
    store_writable: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("ibsweep");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let leases_granted = counter(&mut registry, "leases_granted", "Leases granted to workers");
        let leases_expired = counter(&mut registry, "leases_expired", "Leases that expired without a heartbeat");
        let leases_released = counter(&mut registry, "leases_released", "Leases handed back by stopping workers");
        let jobs_failed_attempts = counter(&mut registry, "attempts_failed", "Attempts a worker reported failed");
        let jobs_completed = counter(&mut registry, "jobs_completed", "Jobs whose results were published");
        let histogram_bytes = counter(&mut registry, "histogram_bytes", "Histogram bytes ingested");
        let histogram_entries = counter(&mut registry, "histogram_entries", "Histogram entries (patterns) ingested");
        let checkpoints_stored = counter(&mut registry, "checkpoints_stored", "Checkpoints stored");
        let checkpoints_discarded =
            counter(&mut registry, "checkpoints_discarded", "Checkpoints discarded because they failed verification");
        let store_recoveries = counter(
            &mut registry,
            "store_recoveries",
            "Times the store was reopened after writes failed for lack of space",
        );
        let rpc_seconds: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register("rpc_seconds", "gRPC request latency by method", rpc_seconds.clone());
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register("jobs", "Jobs by sweep and state", jobs.clone());
        let workers = Gauge::default();
        registry.register("workers", "Workers heard from within the worker timeout", workers.clone());
        let store_bytes = Gauge::default();
        registry.register("store_bytes", "Approximate size of the store on disk", store_bytes.clone());
        let checkpoint_bytes = Gauge::default();
        registry.register("checkpoint_bytes", "Bytes of checkpoint files on disk", checkpoint_bytes.clone());
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 while the store takes writes; 0 while they are refused (disk full, store lost)",
            store_writable.clone(),
        );
        Arc::new(Metrics {
            registry,
            leases_granted,
            leases_expired,
            leases_released,
            jobs_failed_attempts,
            jobs_completed,
            histogram_bytes,
            histogram_entries,
            checkpoints_stored,
            checkpoints_discarded,
            store_recoveries,
            rpc_seconds,
            jobs,
            workers,
            store_bytes,
            checkpoint_bytes,
            store_writable,
        })
    }

    pub fn observe_rpc(&self, method: &str, seconds: f64) {
        self.rpc_seconds.get_or_create(&MethodLabels { method: method.to_string() }).observe(seconds);
    }

    /// The text exposition, with the gauges set from `gauges` first.
    pub fn render(&self, gauges: &Gauges) -> Result<String> {
        for (sweep, name, c) in &gauges.sweeps {
            for (state, n) in [
                ("pending", c.pending()),
                ("running", c.running),
                ("done", c.done),
                ("failed", c.failed),
                ("cancelled", c.cancelled),
            ] {
                let labels = JobLabels { sweep: sweep.to_string(), name: name.clone(), state: state.into() };
                self.jobs.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.workers.set(i64::try_from(gauges.workers).unwrap_or(i64::MAX));
        self.store_bytes.set(i64::try_from(gauges.store_bytes).unwrap_or(i64::MAX));
        self.checkpoint_bytes.set(i64::try_from(gauges.checkpoint_bytes).unwrap_or(i64::MAX));
        self.store_writable.set(i64::from(gauges.store_writable));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| Error::Store(format!("metrics encoding: {e}")))?;
        Ok(text)
    }
}

/// What the gauges show, read at scrape time from the scheduler's maintained counters.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// (sweep, name, job counts) per sweep.
    pub sweeps: Vec<(crate::ids::SweepId, String, crate::lifecycle::Counts)>,
    pub workers: usize,
    pub store_bytes: u64,
    pub checkpoint_bytes: u64,
    pub store_writable: bool,
}

/// A tower layer timing every gRPC request by its method path.
#[derive(Debug, Clone)]
pub struct RpcTimerLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RpcTimerLayer {
    type Service = RpcTimer<S>;
    fn layer(&self, inner: S) -> RpcTimer<S> {
        RpcTimer { inner, metrics: Arc::clone(&self.0) }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTimer<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for RpcTimer<S>
where
    S: tower::Service<axum::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        // `/ibsweep.v1.WorkerService/Lease` -> `WorkerService/Lease`
        let path = request.uri().path();
        let method = path.trim_start_matches('/').split_once('.').map_or(path, |(_, rest)| rest);
        let method = method.split_once('.').map_or(method, |(_, rest)| rest).to_string();
        let metrics = Arc::clone(&self.metrics);
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            metrics.observe_rpc(&method, started.elapsed().as_secs_f64());
            response
        })
    }
}

//! `/metrics` over HTTP (axum): the gauges are read from the scheduler at each scrape.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::metrics::{Gauges, Metrics};
use crate::scheduler::Scheduler;
use crate::store::JobStore;

fn gauges<S: JobStore>(scheduler: &Scheduler<S>) -> Result<Gauges> {
    Ok(Gauges {
        sweeps: scheduler.status(None)?.into_iter().map(|s| (s.record.id, s.record.name, s.record.counts)).collect(),
        workers: scheduler.workers()?.len(),
        store_bytes: scheduler.store().size_on_disk(),
        checkpoint_bytes: scheduler.checkpoint_bytes(),
        store_writable: scheduler.write_refusal().is_none(),
    })
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub async fn serve_metrics<S: JobStore>(
    listener: TcpListener,
    scheduler: Arc<Scheduler<S>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use axum::http::{StatusCode, header};
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (scheduler, metrics) = (Arc::clone(&scheduler), Arc::clone(&metrics));
            async move {
                match tokio::task::spawn_blocking(move || gauges(&scheduler).and_then(|g| metrics.render(&g))).await {
                    Ok(Ok(text)) => (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        text,
                    ),
                    Ok(Err(e)) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string())
                    }
                    Err(e) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string())
                    }
                }
            }
        }),
    );
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!("metrics at http://{addr}/metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Store(format!("metrics server: {e}")))
}

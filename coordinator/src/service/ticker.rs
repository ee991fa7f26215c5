//! Time-driven work: expiring leases whose heartbeats stopped, and forgetting workers
//! not heard from for the worker timeout. Each pass runs on a blocking thread.

use std::sync::Arc;
use std::time::Duration;

use crate::scheduler::Scheduler;
use crate::store::JobStore;

/// How often idle workers are looked for; their timeout is far longer.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// Runs until the returned task is aborted. Expiry is checked twice per heartbeat
/// interval, so a lease outlives its deadline by at most half an interval.
pub(super) fn start<S: JobStore>(scheduler: Arc<Scheduler<S>>) -> tokio::task::JoinHandle<()> {
    let period = Duration::from_millis((scheduler.timing().heartbeat_interval_ms / 2).max(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut last_cleanup = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let s = Arc::clone(&scheduler);
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.expire_leases()).await {
                tracing::error!("lease expiry failed: {e}");
            }
            if last_cleanup.elapsed() >= CLEANUP_EVERY {
                last_cleanup = tokio::time::Instant::now();
                let s = Arc::clone(&scheduler);
                match tokio::task::spawn_blocking(move || s.forget_idle_workers()).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!("forgot {n} workers not seen for the worker timeout"),
                    Ok(Err(e)) => tracing::error!("worker clean-up failed: {e}"),
                    _ => {}
                }
            }
        }
    })
}

//! Where a request's store work runs, and when it is acknowledged.
//!
//! Three lanes: [`blocking`] for reads and rare writes (a blocking thread each),
//! [`HotPath`] for the per-second transitions of every worker (one thread, back to back),
//! and [`blocking_durable`] for heavier writes. Writing lanes defer their flush and await
//! the shared group commit ([`Scheduler::durable`]) before answering, so nothing is
//! acknowledged before it is on disk.

use std::sync::Arc;

use tonic::Status;

use crate::error::Result;
use crate::scheduler::{Scheduler, deferring};
use crate::store::JobStore;

/// Runs store work off the async runtime.
pub(super) async fn blocking<S: JobStore, T: Send + 'static>(
    scheduler: &Arc<Scheduler<S>>,
    work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
) -> Result<T, Status> {
    let s = Arc::clone(scheduler);
    match tokio::task::spawn_blocking(move || work(&s)).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("store task failed: {e}"))),
    }
}

/// One thread that runs every hot-path transition (a lease, a heartbeat, a failure: a few
/// keys, no scans) back to back, with its flush deferred; the caller awaits the answer, then
/// durability with every other request ([`Scheduler::durable`]).
///
/// Why a thread of its own: these transitions are serialized by the scheduler's index lock
/// anyway. Run inline on the runtime's two threads, the one that lost the race for the lock
/// blocked, and with it the network work it could have done, and each hand-over of the lock
/// waited for a sleeping thread to be scheduled. Queued to one thread they never contend,
/// and the runtime only does I/O. Measured in docs/benchmarks.md.
#[derive(Debug)]
pub(super) struct HotPath {
    queue: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl HotPath {
    /// The thread ends when the service (the only sender) is dropped; it holds no
    /// scheduler of its own, so a stopped server leaves its store closed.
    pub(super) fn start() -> HotPath {
        let (queue, jobs) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("ibsweep-hot".into())
            .spawn(move || {
                for job in jobs {
                    // A panicking transition drops its answer (its caller gets INTERNAL);
                    // the others go on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .expect("start the hot-path thread");
        HotPath { queue }
    }

    pub(super) async fn run<S: JobStore, T: Send + 'static>(
        &self,
        scheduler: &Arc<Scheduler<S>>,
        work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let s = Arc::clone(scheduler);
        self.queue
            .send(Box::new(move || {
                let _ = answer.send(deferring(|| work(&s)));
            }))
            .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
        let (result, needs_flush) = answered
            .await
            .map_err(|_| Status::internal("the transition failed unexpectedly (see the coordinator's log)"))?;
        let value = result.map_err(Status::from)?;
        if needs_flush {
            scheduler.durable().await.map_err(Status::from)?;
        }
        Ok(value)
    }
}

/// Heavier work on a blocking thread, acknowledged after an awaited, shared flush.
pub(super) async fn blocking_durable<S: JobStore, T: Send + 'static>(
    scheduler: &Arc<Scheduler<S>>,
    work: impl FnOnce(&Scheduler<S>) -> Result<T> + Send + 'static,
) -> Result<T, Status> {
    let s = Arc::clone(scheduler);
    let (result, needs_flush) = tokio::task::spawn_blocking(move || deferring(|| work(&s)))
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?;
    let value = result.map_err(Status::from)?;
    if needs_flush {
        scheduler.durable().await.map_err(Status::from)?;
    }
    Ok(value)
}

//! The store's write health, watched: while writes are refused (a full disk) the worker
//! service reports NOT_SERVING on gRPC health, so supervisors and load balancers see it, and
//! the store is reopened every few seconds until it takes writes again. A store that cannot
//! be reopened ends the server with [`Error::StoreLost`], whose exit code asks the
//! supervisor for a restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ibsweep_proto::v1::worker_service_server::WorkerServiceServer;
use tokio::sync::Notify;
use tonic_health::server::HealthReporter;

use super::Workers;
use crate::error::Error;
use crate::scheduler::Scheduler;
use crate::store::JobStore;

/// How often the store's write health is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often a refusing store is reopened to see whether space has returned.
const RECOVER_EVERY: Duration = Duration::from_secs(2);

/// Why the server must stop, set by the watcher; the server's shutdown waits on `stop`.
#[derive(Debug, Default)]
pub(super) struct Lost {
    pub error: Mutex<Option<Error>>,
    pub stop: Notify,
}

impl Lost {
    fn set(&self, error: Error) {
        tracing::error!("{error}; stopping so the supervisor can restart the coordinator");
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.stop.notify_one();
    }

    pub fn take(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

pub(super) fn start<S: JobStore>(
    scheduler: Arc<Scheduler<S>>,
    reporter: HealthReporter,
    lost: Arc<Lost>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut serving = true;
        let mut last_try: Option<Instant> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tick.tick().await;
            let refusal = scheduler.write_refusal();
            match refusal {
                None => {
                    if !serving {
                        reporter.set_serving::<WorkerServiceServer<Workers<S>>>().await;
                        serving = true;
                    }
                    continue;
                }
                Some(e @ Error::StoreLost { .. }) => return lost.set(e),
                Some(why) => {
                    if serving {
                        tracing::error!("{why}; the worker service reports NOT_SERVING until writes succeed");
                        reporter.set_not_serving::<WorkerServiceServer<Workers<S>>>().await;
                        serving = false;
                    }
                }
            }
            if last_try.is_some_and(|t| t.elapsed() < RECOVER_EVERY) {
                continue;
            }
            last_try = Some(Instant::now());
            let s = Arc::clone(&scheduler);
            match tokio::task::spawn_blocking(move || s.recover_storage()).await {
                Ok(Ok(true)) => {
                    tracing::info!("the store takes writes again: leases renewed, the worker service is SERVING");
                    reporter.set_serving::<WorkerServiceServer<Workers<S>>>().await;
                    serving = true;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => return lost.set(e),
                Err(e) => return lost.set(Error::Store(format!("store recovery task failed: {e}"))),
            }
        }
    })
}

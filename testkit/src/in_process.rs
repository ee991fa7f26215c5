//! A coordinator's gRPC server inside the test's own runtime, on an ephemeral loopback port,
//! over any store and clock: what service, security and metrics tests and the checkpoint
//! bench talk to when they need the real wire but not a process.

use std::net::SocketAddr;
use std::sync::Arc;

use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::scheduler::{Scheduler, Timing};
use ibsweep_coordinator::service::{ServeOptions, serve_with};
use ibsweep_coordinator::store::{JobStore, MemoryStore};

/// A running server; stops (and flushes its store) when dropped or [`Server::stop`]ped.
#[derive(Debug)]
pub struct Server {
    /// `http://` or `https://` and the address.
    pub url: String,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<ibsweep_coordinator::error::Result<()>>>,
}

impl Server {
    /// Serves `scheduler` with `options` (security, limits). Must be called within a tokio
    /// runtime; the server runs on it.
    pub async fn start<S: JobStore>(scheduler: Arc<Scheduler<S>>, options: ServeOptions) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if options.security.tls.is_some() { "https" } else { "http" };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(listener, scheduler, options, async {
            let _ = stopped.await;
        }));
        Server { url: format!("{scheme}://{addr}"), addr, stop: Some(stop), task: Some(task) }
    }

    /// Stops the server and waits until it has flushed its store.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task").expect("the server");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A scheduler over a fresh memory store on a manual clock at t = 1,000 s.
pub fn memory_scheduler(timing: Timing) -> (Arc<Scheduler<MemoryStore>>, ManualClock) {
    let clock = ManualClock::new(1_000_000);
    let scheduler = Scheduler::open(MemoryStore::new(), Arc::new(clock.clone()), timing).unwrap();
    (Arc::new(scheduler), clock)
}

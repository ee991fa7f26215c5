//! The one retry policy every coordinator call goes through: transient failures are
//! retried with backoff; a lost lease or a refusal ends the call at once; during shutdown
//! a call gets a few tries and then gives up, so an unreachable coordinator cannot keep
//! the process alive (the lease then expires on its own).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use super::api::{CallError, Disposition};

/// Tries a call gets once shutdown has begun.
const TRIES_WHILE_SHUTTING_DOWN: u32 = 4;

/// 250 ms, doubling, at most 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(5)).min(5_000))
}

/// How a call ended without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp {
    /// The coordinator no longer counts the lease as this worker's.
    LeaseLost(String),
    /// The coordinator refused the call for good.
    Refused(String),
    /// Still failing after every try the policy allows.
    Exhausted(String),
}

/// The policy, with the worker's shutdown signal.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    shutdown: watch::Receiver<bool>,
}

impl RetryPolicy {
    pub fn new(shutdown: watch::Receiver<bool>) -> RetryPolicy {
        RetryPolicy { shutdown }
    }

    fn out_of_tries(&self, tried: u32, limit: Option<u32>) -> bool {
        (*self.shutdown.borrow() && tried >= TRIES_WHILE_SHUTTING_DOWN) || limit.is_some_and(|l| tried >= l)
    }

    /// Makes `call` until it succeeds or the policy says stop; `what` names the call in
    /// the log and in the answer. `limit` caps the tries even outside shutdown.
    pub async fn run<T, Fut>(&self, what: &str, limit: Option<u32>, mut call: impl FnMut() -> Fut) -> Result<T, GaveUp>
    where
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut tried = 0;
        loop {
            let e = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            tried += 1;
            match e.disposition {
                Disposition::LeaseLost => return Err(GaveUp::LeaseLost(e.message)),
                Disposition::Fatal => return Err(GaveUp::Refused(e.message)),
                Disposition::Retry if self.out_of_tries(tried, limit) => {
                    return Err(GaveUp::Exhausted(format!("{what} failed {tried} times: {}", e.message)));
                }
                Disposition::Retry => {
                    tracing::warn!("{what} failed: {}; retrying in {:?}", e.message, backoff(tried - 1));
                    tokio::time::sleep(backoff(tried - 1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn failing(times: u32, then: Disposition, calls: &AtomicU32) -> Result<u32, CallError> {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        if n < times { Err(CallError::new(then, format!("failure {n}"))) } else { Ok(n) }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_the_rest_end_the_call() {
        let (_tx, rx) = watch::channel(false);
        let policy = RetryPolicy::new(rx);
        let calls = AtomicU32::new(0);
        let got = policy.run("upload", None, || async { failing(4, Disposition::Retry, &calls) }).await;
        assert_eq!(got, Ok(4));
        let calls = AtomicU32::new(0);
        let got = policy.run("upload", None, || async { failing(9, Disposition::LeaseLost, &calls) }).await;
        assert_eq!(got, Err(GaveUp::LeaseLost("failure 0".into())));
        let calls = AtomicU32::new(0);
        let got = policy.run("upload", Some(2), || async { failing(9, Disposition::Retry, &calls) }).await;
        assert_eq!(got, Err(GaveUp::Exhausted("upload failed 2 times: failure 1".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_allows_a_few_tries_then_gives_up() {
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let calls = AtomicU32::new(0);
        let got = RetryPolicy::new(rx).run("fail", None, || async { failing(99, Disposition::Retry, &calls) }).await;
        assert!(matches!(got, Err(GaveUp::Exhausted(_))));
        assert_eq!(calls.load(Ordering::Relaxed), TRIES_WHILE_SHUTTING_DOWN);
    }
}

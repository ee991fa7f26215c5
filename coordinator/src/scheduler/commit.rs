//! Group commit: many writers share one flush.
//!
//! Every transition commits its transaction to sled's log in memory, then waits here until a
//! flush that *started after* its commit has finished: that flush covers it, so it may be
//! acknowledged. One caller at a time flushes (the leader); callers that arrive while it
//! does wait for the next flush, which covers all of them at once. Under load the number
//! of fsyncs per second stays at what the disk allows while the number of acknowledged
//! transitions grows with the number of concurrent callers; alone, a caller pays exactly one
//! flush, as before.

use std::cell::Cell;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};

thread_local! {
    /// `Some(requested)` while [`deferring`] runs on this thread.
    static DEFERRED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Runs `work` with its flushes deferred: [`crate::scheduler::Scheduler::flush`] only notes
/// that one is needed. Returns the result and whether the caller must still wait for
/// durability (with [`crate::scheduler::Scheduler::durable`]) before acknowledging. This is
/// how the service acknowledges after the flush without parking a thread per request.
pub fn deferring<R>(work: impl FnOnce() -> R) -> (R, bool) {
    DEFERRED.with(|d| d.set(Some(false)));
    let result = work();
    let needed = DEFERRED.with(|d| d.replace(None)) == Some(true);
    (result, needed)
}

/// True (and the need noted) when the current thread defers its flushes.
pub(super) fn defer() -> bool {
    DEFERRED.with(|d| match d.get() {
        Some(_) => {
            d.set(Some(true));
            true
        }
        None => false,
    })
}

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: one per caller that committed and wants durability.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    flushing: bool,
    /// The last flush failed: callers it should have covered get the error.
    failed: Option<(u64, String)>,
}

#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    flushed: Condvar,
    /// Async waiters ([`GroupCommit::wait_durable_async`]) are woken here.
    notify: tokio::sync::Notify,
}

/// What a caller should do next to become durable.
enum Step {
    Done,
    Lead(u64),
    Wait,
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ticket(&self) -> u64 {
        let mut state = self.lock();
        state.issued += 1;
        state.issued
    }

    fn step(&self, state: &mut State, ticket: u64) -> Result<Step> {
        if state.durable >= ticket {
            return Ok(Step::Done);
        }
        if let Some((covered, why)) = &state.failed
            && *covered >= ticket
        {
            return Err(Error::Store(why.clone()));
        }
        if state.flushing {
            return Ok(Step::Wait);
        }
        state.flushing = true;
        Ok(Step::Lead(state.issued))
    }

    fn led(&self, target: u64, result: &Result<()>) {
        let mut state = self.lock();
        state.flushing = false;
        match result {
            Ok(()) => state.durable = state.durable.max(target),
            Err(e) => state.failed = Some((target, e.to_string())),
        }
        drop(state);
        self.flushed.notify_all();
        self.notify.notify_waiters();
    }

    /// [`GroupCommit::wait_durable`] for async callers: the flush itself runs through
    /// `flush` (which should move it off the runtime), waiting never parks a thread.
    pub(super) async fn wait_durable_async<F, Fut>(&self, flush: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let ticket = self.ticket();
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let step = {
                let mut state = self.lock();
                self.step(&mut state, ticket)?
            };
            match step {
                Step::Done => return Ok(()),
                Step::Wait => notified.await,
                Step::Lead(target) => {
                    let result = flush().await;
                    self.led(target, &result);
                    result?;
                }
            }
        }
    }

    /// Returns once everything committed before the call is durable, flushing with `flush`
    /// if no flush that covers it is under way.
    pub(super) fn wait_durable(&self, flush: impl Fn() -> Result<()>) -> Result<()> {
        let ticket = self.ticket();
        let mut state = self.lock();
        loop {
            match self.step(&mut state, ticket)? {
                Step::Done => return Ok(()),
                Step::Wait => state = self.flushed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Step::Lead(target) => {
                    drop(state);
                    let result = flush();
                    self.led(target, &result);
                    result?;
                    state = self.lock();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn concurrent_callers_share_flushes_and_each_waits_for_one_that_covers_it() {
        let commit = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (commit, flushes) = (Arc::clone(&commit), Arc::clone(&flushes));
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        commit
                            .wait_durable(|| {
                                flushes.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(2));
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!(n < 800, "{n} flushes for 800 callers: they must be shared");
        assert_eq!(commit.state.lock().unwrap().durable, 800);
    }

    #[test]
    fn a_failed_flush_fails_the_callers_it_covered_and_the_next_one_retries() {
        let commit = GroupCommit::default();
        assert!(commit.wait_durable(|| Err(Error::Store("disk full".into()))).is_err());
        commit.wait_durable(|| Ok(())).unwrap();
    }
}

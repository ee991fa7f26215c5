//! Group commit: many writers share one flush.
//!
//! Every transition commits its transaction to sled's log in memory, then waits here until a
//! flush that *started after* its commit has finished: that flush covers it, so it may be
//! acknowledged. One caller at a time flushes (the leader); callers that arrive while it
//! does wait for the next flush, which covers all of them at once. Under load the number
//! of fsyncs per second stays at what the disk allows while the number of acknowledged
//! transitions grows with the number of concurrent callers; alone, a caller pays exactly one
//! flush, as before.

use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};

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
}

impl GroupCommit {
    /// Returns once everything committed before the call is durable, flushing with `flush`
    /// if no flush that covers it is under way.
    pub(super) fn wait_durable(&self, flush: impl Fn() -> Result<()>) -> Result<()> {
        let lock = || self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = lock();
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.durable >= ticket {
                return Ok(());
            }
            if let Some((covered, why)) = &state.failed
                && *covered >= ticket
            {
                return Err(Error::Store(why.clone()));
            }
            if state.flushing {
                state = self.flushed.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: this flush covers every ticket issued so far.
            state.flushing = true;
            let target = state.issued;
            drop(state);
            let result = flush();
            state = lock();
            state.flushing = false;
            match &result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(e) => state.failed = Some((target, e.to_string())),
            }
            self.flushed.notify_all();
            result?;
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

//! The failures reported against the first coordinator, each as a test that must pass on
//! both stores: exact ingest, leases bound to their worker, restarts and full disks that cost
//! no attempt, atomic cancellation, one record per worker, exactly-once completion.

mod common;

use common::{N, TTL, chunks, histogram, open, register, timing, tiny_grid};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::error::Error;
use ibsweep_coordinator::ids::{Claim, LeaseToken};
use ibsweep_coordinator::lifecycle::JobState;
use ibsweep_coordinator::scheduler::Chunk;
use ibsweep_coordinator::store::{MemoryStore, SledStore};
use ibsweep_shared::measure::LayerHistogram;

fn grid() -> String {
    tiny_grid("exact", 1)
}

macro_rules! exact {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn a_piece_resent_under_a_new_sequence_number_counts_once() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                let sweep = s.submit("exact.yaml", &grid()).unwrap().sweep_id;
                let w = register(&s, "w");
                let g = s.lease(w).unwrap().unwrap();
                let all = chunks(&g, w, 2);
                for c in &all {
                    assert!(s.ingest(c).unwrap());
                }
                for (i, c) in all.iter().enumerate() {
                    let resent = Chunk { sequence: 1_000 + i as u64, ..c.clone() };
                    assert!(!s.ingest(&resent).unwrap(), "piece {i} resent is a duplicate");
                }
                assert_eq!(s.complete(&g.claim(w), g.job_id, ("a", "b"), all.len() as u64).unwrap(), 4);
                let rows = s.results(sweep, &[]).unwrap();
                assert!(rows.iter().all(|r| r.n == u64::from(N) && r.distinct == Some(u64::from(N))), "{rows:?}");
            }

            #[test]
            fn a_missing_piece_blocks_completion_and_is_named() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                s.submit("exact.yaml", &grid()).unwrap();
                let w = register(&s, "w");
                let g = s.lease(w).unwrap().unwrap();
                let all = chunks(&g, w, 2);
                for c in &all[..all.len() - 1] {
                    s.ingest(c).unwrap();
                }
                let err = s.complete(&g.claim(w), g.job_id, ("", ""), all.len() as u64).unwrap_err().to_string();
                assert!(err.contains("epoch 1, test, layer `softmax`") && err.contains("1 of its 2 pieces"), "{err}");
                // The worker says it sent more than arrived.
                s.ingest(&all[all.len() - 1]).unwrap();
                let err = s.complete(&g.claim(w), g.job_id, ("", ""), 99).unwrap_err().to_string();
                assert!(err.contains("sent 99 histogram pieces but 8 arrived"), "{err}");
                s.complete(&g.claim(w), g.job_id, ("", ""), 8).unwrap();
            }

            #[test]
            fn counts_must_sum_to_the_split_and_labels_fit_the_classes() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                s.submit("exact.yaml", &grid()).unwrap();
                let w = register(&s, "w");
                let g = s.lease(w).unwrap().unwrap();
                let good = chunks(&g, w, 1).remove(0);
                let short = Chunk { histogram: histogram(N - 1, 0, 10), ..good.clone() };
                let err = s.ingest(&short).unwrap_err().to_string();
                assert!(err.contains("sum to 19, but the split has 20 samples"), "{err}");
                let more = Chunk { histogram: histogram(N + 1, 0, 10), ..good.clone() };
                assert!(s.ingest(&more).unwrap_err().to_string().contains("more than the split's 20 samples"));
                let eleven = Chunk { histogram: histogram(N, 0, 11), ..good.clone() };
                assert!(s.ingest(&eleven).unwrap_err().to_string().contains("11 label columns"));
                let mut overflow = LayerHistogram::new(10);
                overflow.add(&[1], &[0]).unwrap();
                let mut bytes = overflow.to_bytes();
                // The single count as the largest varint: far beyond N, refused before merging.
                bytes.truncate(bytes.len() - 10);
                bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
                bytes.extend([0u8; 9]);
                let err = s.ingest(&Chunk { histogram: bytes, ..good.clone() }).unwrap_err();
                assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
                // Nothing of the refused pieces was kept: the good one is still new.
                assert!(s.ingest(&good).unwrap());
            }

            #[test]
            fn another_workers_lease_is_refused_without_revealing_it() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                s.submit("exact.yaml", &grid()).unwrap();
                let (a, b) = (register(&s, "a"), register(&s, "b"));
                let g = s.lease(a).unwrap().unwrap();
                let live = g.token.0.to_string();
                let refusals = [
                    s.heartbeat(&g.claim(b), g.job_id, 0).unwrap_err(),
                    s.complete(&g.claim(b), g.job_id, ("", ""), 0).unwrap_err(),
                    s.fail(&g.claim(b), g.job_id, "hostile", false).unwrap_err(),
                    s.ingest(&chunks(&g, b, 1)[0]).unwrap_err(),
                ];
                for err in refusals {
                    assert!(matches!(err, Error::WrongWorker { .. }), "{err}");
                    assert!(!err.to_string().contains("token"), "nothing about any token: {err}");
                }
                // A guessed token gets a stale-lease error naming only the guess.
                let guess = LeaseToken(g.token.0 + 1);
                let err = s.heartbeat(&Claim { token: guess, ..g.claim(a) }, g.job_id, 0).unwrap_err().to_string();
                assert!(err.contains(&guess.to_string()) && !err.contains(&format!("token {live}")), "{err}");
                // The holder's worker ID and token with a guessed secret: the same refusal.
                let guessed = Claim { secret: "0123456789abcdef0123456789abcdef".parse().unwrap(), ..g.claim(a) };
                assert!(matches!(s.heartbeat(&guessed, g.job_id, 0), Err(Error::WrongWorker { .. })));
                assert!(matches!(s.fail(&guessed, g.job_id, "hostile", false), Err(Error::WrongWorker { .. })));
                // The lease is untouched: a can finish.
                for c in chunks(&g, a, 1) {
                    s.ingest(&c).expect("ingest by the holder");
                }
                s.complete(&g.claim(a), g.job_id, ("", ""), 4).expect("complete by the holder");
            }

            #[test]
            fn completion_resent_after_success_is_answered_again() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                let sweep = s.submit("exact.yaml", &grid()).unwrap().sweep_id;
                let w = register(&s, "w");
                let g = s.lease(w).unwrap().unwrap();
                for c in chunks(&g, w, 1) {
                    s.ingest(&c).unwrap();
                }
                assert_eq!(s.complete(&g.claim(w), g.job_id, ("", ""), 4).unwrap(), 4);
                assert_eq!(s.complete(&g.claim(w), g.job_id, ("", ""), 4).unwrap(), 4, "the answer was lost");
                let c = s.status(Some(sweep)).unwrap()[0].record.counts;
                assert_eq!((c.done, c.running), (1, 0), "done exactly once");
                assert_eq!(s.results(sweep, &[]).unwrap().len(), 4);
            }

            #[test]
            fn cancel_is_atomic_with_leasing_and_counters_never_underflow() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                let sweep = s.submit("exact.yaml", &grid()).unwrap().sweep_id;
                let (a, b) = (register(&s, "a"), register(&s, "b"));
                let g = s.lease(a).unwrap().unwrap();
                assert_eq!(s.cancel(sweep).unwrap(), 2);
                assert_eq!(s.cancel(sweep).unwrap(), 0, "a second cancel changes nothing");
                assert!(s.lease(b).unwrap().is_none());
                let c = s.status(Some(sweep)).unwrap()[0].record.counts;
                assert_eq!((c.cancelled, c.running, c.pending()), (1, 1, 0));
                assert!(s.heartbeat(&g.claim(a), g.job_id, 1).unwrap().cancelled);
                s.fail(&g.claim(a), g.job_id, "cancelled", false).unwrap();
                let c = s.status(Some(sweep)).unwrap()[0].record.counts;
                assert_eq!((c.cancelled, c.running, c.pending(), c.done), (2, 0, 0, 0));
                assert!(matches!(s.job(g.job_id).unwrap().state, JobState::Cancelled));
            }

            #[test]
            fn one_record_per_worker_and_silent_workers_drop_out() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                let first = s.register("w", 1, "cpu", None).unwrap();
                let again = s.register("w", 1, "cpu", Some(first.id)).unwrap();
                assert_eq!((again.id, again.reused), (first.id, true));
                assert_eq!(s.workers().unwrap().len(), 1);
                let long = "x".repeat(1000);
                assert!(matches!(s.register(&long, 1, "cpu", None), Err(Error::InvalidArgument(_))));
                clock.advance(timing().worker_timeout_ms + 1);
                assert!(s.workers().unwrap().is_empty(), "a silent worker drops out of the list");
                assert_eq!(s.forget_idle_workers().unwrap(), 1);
            }

            #[test]
            fn a_failing_job_uses_its_attempts_and_ends_failed() {
                let clock = ManualClock::new(1_000_000);
                let s = open($make, &clock);
                let sweep = s.submit("exact.yaml", &grid()).unwrap().sweep_id;
                let w = register(&s, "w");
                let g = s.lease(w).unwrap().unwrap();
                s.fail(&g.claim(w), g.job_id, "training panicked on w: index out of bounds", false).unwrap();
                let job = s.job(g.job_id).unwrap();
                assert!(matches!(job.state, JobState::Failed { .. }), "{job:?}");
                assert!(job.history[0].contains("panicked"));
                let reason = "y".repeat(100_000);
                let g2 = s.lease(w).unwrap().unwrap();
                s.fail(&g2.claim(w), g2.job_id, &reason, false).unwrap();
                assert!(s.job(g2.job_id).unwrap().history[0].len() < 2_000, "reasons are length-limited");
                assert_eq!(s.status(Some(sweep)).unwrap()[0].record.counts.failed, 2);
            }
        }
    };
}

exact!(memory, MemoryStore::new());
exact!(sled, {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    std::mem::forget(dir);
    store
});

#[test]
fn a_coordinator_down_for_three_ttls_costs_no_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let clock = ManualClock::new(1_000_000);
    let (w, g) = {
        let s = open(SledStore::open(&path).unwrap(), &clock);
        s.submit("exact.yaml", &tiny_grid("exact", 2)).unwrap();
        let (w, other) = (register(&s, "w"), register(&s, "other"));
        let g = s.lease(w).unwrap().unwrap();
        s.lease(other).unwrap().unwrap();
        clock.advance(TTL / 2);
        s.heartbeat(&g.claim(w), g.job_id, 0).unwrap();
        clock.advance(TTL / 2 + 1);
        assert_eq!(s.expire_leases().unwrap(), 1, "`other` went silent");
        (w, g)
    };
    // Down for three TTLs (a node reboot); the worker went on training meanwhile.
    clock.advance(3 * TTL);
    let s = open(SledStore::open(&path).unwrap(), &clock);
    assert_eq!(s.expire_leases().unwrap(), 0, "live leases get a fresh TTL at start");
    s.heartbeat(&g.claim(w), g.job_id, 1).unwrap();
    assert_eq!(s.job(g.job_id).unwrap().attempts, 1);
    // The index was rebuilt: the job re-queued before the restart comes back first.
    let next = register(&s, "next");
    let again = s.lease(next).unwrap().unwrap();
    assert_eq!(again.attempt, 2);
}

/// A full disk refuses writes with RESOURCE_EXHAUSTED and keeps refusing after space
/// returns (sled's errors are sticky) until the store is reopened; the reopen renews every
/// lease, so the worker that held one keeps its job, and no attempt is used.
#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_costs_no_lease_once_recovered() {
    let clock = ManualClock::new(1_000_000);
    let s = open(MemoryStore::new(), &clock);
    let sweep = s.submit("exact.yaml", &grid()).unwrap().sweep_id;
    let w = register(&s, "w");
    let g = s.lease(w).unwrap().unwrap();
    s.store().set_disk_full(true);
    clock.advance(TTL / 2);
    let refused = s.heartbeat(&g.claim(w), g.job_id, 0).unwrap_err();
    assert!(matches!(refused, Error::StorageFull { .. }), "{refused}");
    assert_eq!(tonic::Status::from(refused).code(), tonic::Code::ResourceExhausted);
    assert!(s.write_refusal().is_some());
    // Reads work; the lapsed lease is not expired while nothing can be recorded.
    assert_eq!(s.status(Some(sweep)).unwrap().len(), 1);
    clock.advance(TTL * 2);
    assert_eq!(s.expire_leases().unwrap(), 0);
    assert!(!s.recover_storage().unwrap(), "no space yet");
    s.store().set_disk_full(false);
    assert!(s.write_refusal().is_some(), "refusing until reopened, like sled");
    assert!(s.recover_storage().unwrap());
    assert!(s.write_refusal().is_none());
    // The lease was renewed at recovery: still the worker's, and no attempt used.
    assert!(!s.heartbeat(&g.claim(w), g.job_id, 1).unwrap().cancelled);
    assert_eq!(s.expire_leases().unwrap(), 0);
    assert!(matches!(s.job(g.job_id).unwrap().state, JobState::Running { .. }));
}

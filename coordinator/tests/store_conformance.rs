//! One conformance suite for every `JobStore`: the key-value contract, then the whole job
//! lifecycle run through the scheduler on each store.

mod common;

use common::{TTL, assert_consistent, chunks, finish, open as scheduler, register};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::error::Error;
use ibsweep_coordinator::ids::{LeaseToken, WorkerId};
use ibsweep_coordinator::lifecycle::JobState;
use ibsweep_coordinator::store::{JobStore, MemoryStore, SledStore, Tree};
use ibsweep_testkit::GridBuilder;

fn builder() -> GridBuilder {
    GridBuilder::tiny("tiny")
        .values("dataset", ["mnist", "fashion-mnist"])
        .values("width", [1, 2])
        .limit("max_attempts", 2)
}

fn grid() -> String {
    builder().build()
}

/// One commit: the same number `n` under 50 keys of one tree, one key of another, and as
/// the only key of a third (the previous number removed); any snapshot must show them
/// agreeing.
fn put<S: JobStore>(store: &S, n: u64) {
    store
        .transaction(&mut |txn| {
            for k in 0..50u64 {
                txn.insert(Tree::Jobs, &k.to_be_bytes(), &n.to_be_bytes())?;
            }
            txn.insert(Tree::Sweeps, b"s", &n.to_be_bytes())?;
            txn.remove(Tree::Workers, &n.wrapping_sub(1).to_be_bytes())?;
            txn.insert(Tree::Workers, &n.to_be_bytes(), b"w")
        })
        .unwrap();
}

fn snapshot_while_committing<S: JobStore>(store: std::sync::Arc<S>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    // A large tree scanned between the sweeps and the jobs: commits land during each scan.
    for chunk in 0..20u64 {
        store
            .transaction(&mut |txn| {
                (0..1000u64).try_for_each(|i| txn.insert(Tree::Grids, &(chunk * 1000 + i).to_be_bytes(), &[7; 1000]))
            })
            .unwrap();
    }
    put(&*store, 0);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let made = std::sync::Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, stop, made) =
            (std::sync::Arc::clone(&store), std::sync::Arc::clone(&stop), std::sync::Arc::clone(&made));
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(Ordering::SeqCst) {
                put(&*store, n);
                made.store(n, Ordering::SeqCst);
                n += 1;
            }
            n
        })
    };
    let mut taken = 0;
    while taken < 20 || made.load(Ordering::SeqCst) < 200 {
        taken += 1;
        let trees = store.snapshot().unwrap();
        assert_eq!(trees.len(), Tree::ALL.len());
        let of = |tree: Tree| trees.iter().find(|(t, _)| *t == tree).unwrap().1.clone();
        let number = of(Tree::Sweeps)[0].1.clone();
        let jobs = of(Tree::Jobs);
        assert_eq!(jobs.len(), 50);
        assert!(jobs.iter().all(|(_, v)| *v == number), "a snapshot saw a commit half done");
        let workers = of(Tree::Workers);
        assert_eq!(workers.len(), 1, "{workers:?}");
        assert_eq!(workers[0].0, number);
    }
    stop.store(true, Ordering::SeqCst);
    assert!(writer.join().unwrap() > 1, "commits ran while the snapshots were taken");
}

macro_rules! conformance {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn transactions_are_all_or_nothing_and_scans_ordered() {
                let store = $make;
                store
                    .transaction(&mut |txn| {
                        txn.insert(Tree::Jobs, &[1, 2], b"b")?;
                        txn.insert(Tree::Jobs, &[1, 1], b"a")?;
                        txn.insert(Tree::Jobs, &[2, 0], b"c")?;
                        txn.insert(Tree::Sweeps, &[1, 0], b"other tree")
                    })
                    .unwrap();
                let err = store.transaction(&mut |txn| -> ibsweep_coordinator::Result<()> {
                    txn.insert(Tree::Jobs, &[1, 3], b"never")?;
                    txn.remove(Tree::Jobs, &[1, 1])?;
                    Err(Error::InvalidArgument("abort".into()))
                });
                assert!(err.is_err());
                let scan = store.scan(Tree::Jobs, &[1]).unwrap();
                assert_eq!(scan, vec![(vec![1, 1], b"a".to_vec()), (vec![1, 2], b"b".to_vec())]);
                // Reads see the transaction's own writes.
                let seen = store
                    .transaction(&mut |txn| {
                        txn.insert(Tree::Meta, b"k", b"v")?;
                        txn.get(Tree::Meta, b"k")
                    })
                    .unwrap();
                assert_eq!(seen, Some(b"v".to_vec()));
                store.flush().unwrap();
            }

            /// A snapshot is every tree at one instant between two commits, however many
            /// commits run while it is taken.
            #[test]
            fn a_snapshot_is_every_tree_between_two_commits_while_commits_go_on() {
                snapshot_while_committing(std::sync::Arc::new($make));
            }

            #[test]
            fn submit_is_idempotent_and_lazy() {
                let clock = ManualClock::new(1_000_000);
                let s = scheduler($make, &clock);
                let first = s.submit("tiny.yaml", &grid()).unwrap();
                assert!(first.created);
                assert_eq!(first.jobs, 4);
                let again = s.submit("renamed.yaml", &grid()).unwrap();
                assert_eq!((again.sweep_id, again.created), (first.sweep_id, false));
                assert!(s.submit("bad.yaml", "name: x\nparameters: {width: {values: []}}\n").is_err());
                // A million points: one sweep record, no job records.
                let big = builder().values("width", 1..=1000).values("seed", 0..25).build();
                let big = s.submit("big.yaml", &big).unwrap();
                assert_eq!(big.jobs, 2 * 1000 * 25);
                assert_eq!(s.store().scan(Tree::Jobs, &[]).unwrap().len(), 0);
                assert_eq!(s.store().scan(Tree::Sweeps, &[]).unwrap().len(), 2);
            }

            #[test]
            fn leases_are_exclusive_fenced_and_complete_atomically() {
                let clock = ManualClock::new(1_000_000);
                let s = scheduler($make, &clock);
                let sweep = s.submit("tiny.yaml", &grid()).unwrap().sweep_id;
                let workers: Vec<WorkerId> = (0..5).map(|i| register(&s, &format!("w{i}"))).collect();
                let a = workers[0];
                let mut grants = Vec::new();
                for w in &workers[..4] {
                    grants.push(s.lease(*w).unwrap().expect("a job is pending"));
                }
                assert!(s.lease(workers[4]).unwrap().is_none());
                // A worker asking again while it holds a lease lost the answer: same lease.
                let again = s.lease(a).unwrap().unwrap();
                assert_eq!((again.job_id, again.token), (grants[0].job_id, grants[0].token));
                let mut ids: Vec<_> = grants.iter().map(|g| g.job_id).collect();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), 4, "no job is granted twice");
                let mut tokens: Vec<_> = grants.iter().map(|g| g.token).collect();
                tokens.dedup();
                assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens grow: {tokens:?}");

                // A chunk for an unmeasured layer, a corrupt chunk, and a stale token are refused.
                let mut bad = chunks(&grants[0], a, 1)[0].clone();
                bad.key.layer_name = "conv9".into();
                assert!(matches!(s.ingest(&bad), Err(Error::InvalidArgument(_))));
                let mut corrupt = chunks(&grants[0], a, 1)[0].clone();
                corrupt.histogram.truncate(5);
                assert!(matches!(s.ingest(&corrupt), Err(Error::InvalidArgument(_))));
                let mut stale = chunks(&grants[0], a, 1)[0].clone();
                stale.claim.token = LeaseToken(grants[0].token.0 + 100);
                assert!(matches!(s.ingest(&stale), Err(Error::StaleLease { .. })));

                // Resent chunks count once; completion needs every piece.
                let all = chunks(&grants[0], a, 2);
                for c in &all[..3] {
                    assert!(s.ingest(c).unwrap());
                }
                assert!(!s.ingest(&all[0]).unwrap(), "a resent chunk is not counted twice");
                assert!(matches!(
                    s.complete(&grants[0].claim(a), grants[0].job_id, ("x", "y"), 8),
                    Err(Error::FailedPrecondition(_))
                ));
                for c in &all[3..] {
                    s.ingest(c).unwrap();
                }
                assert!(s.results(sweep, &[]).unwrap().is_empty(), "nothing is visible before completion");
                let rows = s.complete(&grants[0].claim(a), grants[0].job_id, ("x", "y"), 8).unwrap();
                assert_eq!(rows, 4);
                let results = s.results(sweep, &[]).unwrap();
                assert_eq!(results.len(), 4);
                // Two pieces of 10 distinct patterns each: 20 samples, all distinct.
                assert_eq!((results[0].n, results[0].distinct), (20, Some(20)));
                assert_eq!(s.results(sweep, &[("layer_name".into(), "softmax".into())]).unwrap().len(), 2);
                assert!(s.results(sweep, &[("colour".into(), "red".into())]).is_err());
                // After completion the token is stale.
                assert!(matches!(s.heartbeat(&grants[0].claim(a), grants[0].job_id, 1), Err(Error::StaleLease { .. })));
                for (w, g) in workers[1..].iter().zip(&grants[1..]) {
                    finish(&s, *w, g);
                }
                let status = &s.status(Some(sweep)).unwrap()[0];
                let c = status.record.counts;
                assert_eq!((c.done, c.pending(), c.running), (4, 0, 0));
                assert_eq!(s.profiles(sweep).unwrap().len(), 16);
                assert_consistent(&s);
            }

            #[test]
            fn expiry_requeues_then_fails_after_max_attempts() {
                let clock = ManualClock::new(1_000_000);
                let s = scheduler($make, &clock);
                let sweep = s.submit("tiny.yaml", &grid()).unwrap().sweep_id;
                let w = register(&s, "w");
                let first = s.lease(w).unwrap().unwrap();
                s.ingest(&chunks(&first, w, 1)[0]).unwrap();
                clock.advance(TTL / 2);
                s.heartbeat(&first.claim(w), first.job_id, 0).unwrap();
                clock.advance(TTL / 2 + 1);
                assert_eq!(s.expire_leases().unwrap(), 0, "the heartbeat extended the lease");
                clock.advance(TTL);
                assert_eq!(s.expire_leases().unwrap(), 1);
                assert_consistent(&s);
                let second = s.lease(w).unwrap().unwrap();
                assert_eq!((second.job_id, second.attempt), (first.job_id, 2), "the expired job comes back first");
                assert!(second.token > first.token);
                // The first attempt's histograms were discarded, its token is stale.
                assert!(s.store().scan(Tree::Staged, &[]).unwrap().is_empty());
                assert!(s.store().scan(Tree::Pieces, &[]).unwrap().is_empty());
                assert!(matches!(s.heartbeat(&first.claim(w), first.job_id, 0), Err(Error::StaleLease { .. })));
                assert!(matches!(
                    s.complete(&first.claim(w), first.job_id, ("", ""), 0),
                    Err(Error::StaleLease { .. })
                ));
                clock.advance(TTL + 1);
                assert_eq!(s.expire_leases().unwrap(), 1);
                let job = s.job(first.job_id).unwrap();
                assert!(matches!(job.state, JobState::Failed { .. }));
                assert_eq!(job.history.len(), 2);
                assert!(job.history[0].contains("lease expired"), "{:?}", job.history);
                let status = &s.status(Some(sweep)).unwrap()[0];
                assert_eq!((status.record.counts.failed, status.failures.len()), (1, 1));
                // retry --failed puts it back with fresh attempts.
                assert_eq!(s.retry_failed(sweep).unwrap(), 1);
                assert_consistent(&s);
                let third = s.lease(w).unwrap().unwrap();
                assert_eq!((third.job_id, third.attempt), (first.job_id, 3));
                // A released job does not use up an attempt.
                s.fail(&third.claim(w), third.job_id, "worker shutting down", true).unwrap();
                let job = s.job(first.job_id).unwrap();
                assert_eq!(job.state, JobState::Pending { failures: 0 });
                // An explicit failure with a reason.
                let fourth = s.lease(w).unwrap().unwrap();
                s.fail(&fourth.claim(w), fourth.job_id, "training diverged at epoch 1, layer conv1", false).unwrap();
                assert!(s.job(first.job_id).unwrap().history.last().unwrap().contains("diverged"));
                assert_consistent(&s);
            }

            #[test]
            fn the_audit_names_records_that_disagree() {
                let clock = ManualClock::new(1_000_000);
                let s = scheduler($make, &clock);
                s.submit("tiny.yaml", &grid()).unwrap();
                let w = register(&s, "w");
                let grant = s.lease(w).unwrap().unwrap();
                assert_consistent(&s);
                // What a torn commit would leave: the job record without its live-lease entry.
                s.store().transaction(&mut |txn| txn.remove(Tree::Active, &grant.token.0.to_be_bytes())).unwrap();
                let problems = s.audit().unwrap();
                assert_eq!(problems.len(), 1, "{problems:?}");
                assert!(problems[0].contains(&format!("job {}", grant.job_id)), "{problems:?}");
                assert!(problems[0].contains("no live-lease entry"), "{problems:?}");
            }

            #[test]
            fn cancel_stops_pending_jobs_and_reaches_running_ones_at_heartbeat() {
                let clock = ManualClock::new(1_000_000);
                let s = scheduler($make, &clock);
                let sweep = s.submit("tiny.yaml", &grid()).unwrap().sweep_id;
                let w = register(&s, "w");
                let running = s.lease(w).unwrap().unwrap();
                assert_eq!(s.cancel(sweep).unwrap(), 4);
                assert_consistent(&s);
                let other = register(&s, "other");
                assert!(s.lease(other).unwrap().is_none(), "a cancelled sweep hands out nothing");
                assert!(s.heartbeat(&running.claim(w), running.job_id, 1).unwrap().cancelled);
                s.fail(&running.claim(w), running.job_id, "cancelled", false).unwrap();
                let status = &s.status(Some(sweep)).unwrap()[0];
                let c = status.record.counts;
                assert_eq!((c.cancelled, c.pending(), c.running), (4, 0, 0));
                assert!(s.retry_failed(sweep).is_err());
                assert_consistent(&s);
            }
        }
    };
}

conformance!(memory, MemoryStore::new());
conformance!(sled, {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    // The directory must outlive the store: leak it for the test's duration.
    std::mem::forget(dir);
    store
});

#[test]
fn sled_keeps_everything_across_reopen_and_checks_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let clock = ManualClock::new(1_000_000);
    let (sweep, done, leased) = {
        let s = scheduler(SledStore::open(&path).unwrap(), &clock);
        let sweep = s.submit("tiny.yaml", &grid()).unwrap().sweep_id;
        let w = register(&s, "w");
        let done = s.lease(w).unwrap().unwrap();
        finish(&s, w, &done);
        let leased = s.lease(w).unwrap().unwrap();
        (sweep, done, leased)
    };
    let s = scheduler(SledStore::open(&path).unwrap(), &clock);
    assert!(!s.submit("tiny.yaml", &grid()).unwrap().created);
    assert_eq!(s.results(sweep, &[]).unwrap().len(), 4);
    assert!(matches!(s.job(done.job_id).unwrap().state, JobState::Done { .. }));
    // The lease survived: its worker can go on.
    let w = s.workers().unwrap()[0].id;
    s.heartbeat(&leased.claim(w), leased.job_id, 1).unwrap();
    let c = s.status(Some(sweep)).unwrap()[0].record.counts;
    assert_eq!((c.done, c.running, c.pending()), (1, 1, 2));
    drop(s);
    // Another format version is refused with a clear error.
    {
        let db = ::sled::open(&path).unwrap();
        db.open_tree("meta").unwrap().insert("format_version", "99").unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("format version 99"), "{err}");
}

//! A job's attempts stay visible after it finishes: who ran each, from which epoch to
//! which, how it ended and whether it used a try; never-leased jobs are listed too.

mod common;

use common::{finish, open, register, tiny_grid};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::lifecycle::StateKind;
use ibsweep_coordinator::store::MemoryStore;

#[test]
fn a_finished_job_keeps_every_attempt_and_unleased_jobs_are_listed_as_pending() {
    let clock = ManualClock::new(1_000_000);
    let s = open(MemoryStore::new(), &clock);
    let sweep = s.submit("a.yaml", &tiny_grid("attempts", 3)).unwrap().sweep_id;
    let (w1, w2) = (register(&s, "node1"), register(&s, "node2"));
    let first = s.lease(w1).unwrap().unwrap();
    s.heartbeat(&first.claim(w1), first.job_id, 1).unwrap();
    s.fail(&first.claim(w1), first.job_id, "killed by the OOM killer", false).unwrap();
    let second = s.lease(w2).unwrap().unwrap();
    assert_eq!(second.job_id, first.job_id);
    s.fail(&second.claim(w2), second.job_id, "shutting down", true).unwrap();
    let third = s.lease(w2).unwrap().unwrap();
    assert_eq!(third.job_id, first.job_id);
    clock.advance(500);
    finish(&s, w2, &third);

    let (jobs, next) = s.jobs_page(sweep, 0, 10).unwrap();
    assert_eq!(next, None);
    assert_eq!(jobs.len(), 2, "both jobs of the grid");
    let (done, _) = &jobs[0];
    assert_eq!(done.kind(), StateKind::Done);
    let attempts = done.attempts_so_far();
    let summary: Vec<(u32, &str, u32, &str, bool)> =
        attempts.iter().map(|a| (a.number, a.worker.as_str(), a.end_epoch, a.ended.as_str(), a.counted)).collect();
    assert_eq!(
        summary,
        vec![
            (1, "node1", 1, "killed by the OOM killer", true),
            (2, "node2", 0, "shutting down", false),
            (3, "node2", 0, "done", true),
        ]
    );
    assert_eq!(attempts[2].ended_ms, 1_000_500);
    let (pending, spec) = &jobs[1];
    assert_eq!(pending.kind(), StateKind::Pending);
    assert!(pending.attempts_so_far().is_empty());
    assert_eq!(spec.width, 2);

    // Paging returns the same jobs.
    let (page, next) = s.jobs_page(sweep, 0, 1).unwrap();
    assert_eq!((page.len(), next), (1, Some(1)));
    let (rest, next) = s.jobs_page(sweep, 1, 1).unwrap();
    assert_eq!((rest[0].0.job_id, next), (jobs[1].0.job_id, None));
}

#[test]
fn a_running_job_shows_its_live_attempt_last() {
    let clock = ManualClock::new(1_000_000);
    let s = open(MemoryStore::new(), &clock);
    let sweep = s.submit("a.yaml", &tiny_grid("live", 3)).unwrap().sweep_id;
    let w = register(&s, "node1");
    let grant = s.lease(w).unwrap().unwrap();
    s.heartbeat(&grant.claim(w), grant.job_id, 1).unwrap();
    let (jobs, _) = s.jobs_page(sweep, 0, 10).unwrap();
    let attempts = jobs[0].0.attempts_so_far();
    assert_eq!(attempts.len(), 1);
    assert_eq!((attempts[0].worker.as_str(), attempts[0].end_epoch, attempts[0].ended.as_str()), ("node1", 1, ""));
}

#[test]
fn pages_skip_excluded_points_and_a_cancelled_sweep_lists_its_unleased_jobs_as_cancelled() {
    let clock = ManualClock::new(1_000_000);
    let s = open(MemoryStore::new(), &clock);
    let grid = tiny_grid("excluded", 3).replace("width: {values: [1, 2]}", "width: {values: [1, 2, 3]}")
        + "exclude:\n  - {width: 2}\n";
    let sweep = s.submit("e.yaml", &grid).unwrap().sweep_id;
    let w = register(&s, "node1");
    let leased = s.lease(w).unwrap().unwrap();
    let (first, next) = s.jobs_page(sweep, 0, 1).unwrap();
    assert_eq!((first[0].0.job_id, first[0].0.kind(), next), (leased.job_id, StateKind::Running, Some(1)));
    let (rest, next) = s.jobs_page(sweep, 1, 10).unwrap();
    assert_eq!(next, None);
    assert_eq!(rest.iter().map(|(j, spec)| (j.index, spec.width)).collect::<Vec<_>>(), vec![(2, 3)]);
    assert_eq!(rest[0].0.kind(), StateKind::Pending);
    s.cancel(sweep).unwrap();
    let (all, _) = s.jobs_page(sweep, 0, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].0.kind(), StateKind::Cancelled, "never leased, cancelled with its sweep");
    assert_eq!(all[0].0.job_id, leased.job_id, "the stored job, not a made-up one");
}

//! Checkpoints through the scheduler, on the sled store and a real checkpoint directory:
//! commit with the checkpoint, resume after a lost lease and a coordinator restart,
//! corruption detected and handled, retention, refusals.

mod common;

use std::path::Path;

use common::*;
use ibsweep_coordinator::checkpoints::{CheckpointDir, hex_digest};
use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::error::Error;
use ibsweep_coordinator::ids::{JobId, WorkerId};
use ibsweep_coordinator::scheduler::{CheckpointHeader, Grant, Scheduler};
use ibsweep_coordinator::store::SledStore;
use ibsweep_testkit::GridBuilder;
use sha2::Digest;

/// One job of four measured epochs (0..=3), layers conv1 and softmax, test split of N.
fn grid(max_attempts: u32) -> String {
    GridBuilder::tiny("ckpt")
        .param("epochs", 3)
        .train("checkpoint_every", 1)
        .limit("max_attempts", max_attempts)
        .build()
}

fn open_at(dir: &Path, clock: &ManualClock, keep_final: bool) -> Scheduler<SledStore> {
    // A dropped sled database releases its lock file from a background thread a moment later.
    let started = std::time::Instant::now();
    let store = loop {
        match SledStore::open(&dir.join("store")) {
            Ok(store) => break store,
            Err(e) if e.to_string().contains("in use") && started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    open(store, clock)
        .with_checkpoints(CheckpointDir::open(dir.join("checkpoints"), keep_final, 1 << 20).unwrap())
        .unwrap()
}

/// A fresh store with the one-job sweep of `grid(max_attempts)`, leased to worker `w1`.
fn leased(
    max_attempts: u32,
    keep_final: bool,
) -> (tempfile::TempDir, ManualClock, Scheduler<SledStore>, WorkerId, Grant) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let s = open_at(tmp.path(), &clock, keep_final);
    s.submit("g.yaml", &grid(max_attempts)).unwrap();
    let w1 = register(&s, "w1");
    let g1 = s.lease(w1).unwrap().unwrap();
    (tmp, clock, s, w1, g1)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sha(bytes: &[u8]) -> String {
    hex_digest(sha2::Sha256::new_with_prefix(bytes))
}

/// Uploads `bytes` as the checkpoint after `epoch`, in two pieces; returns what it committed.
fn checkpoint(
    s: &Scheduler<SledStore>,
    grant: &Grant,
    worker: WorkerId,
    epoch: u32,
    bytes: &[u8],
) -> Result<u64, Error> {
    let header = CheckpointHeader {
        job_id: grant.job_id,
        claim: grant.claim(worker),
        epoch,
        size: bytes.len() as u64,
        sha256: sha(bytes),
    };
    let mut incoming = s.begin_checkpoint(&header)?;
    let (a, b) = bytes.split_at(bytes.len() / 2);
    incoming.write(a)?;
    incoming.write(b)?;
    s.finish_checkpoint(&header, incoming)
}

fn ingest_epochs(
    s: &Scheduler<SledStore>,
    grant: &Grant,
    worker: WorkerId,
    epochs: std::ops::RangeInclusive<u32>,
) -> u64 {
    let chunks = chunks_for(grant, worker, 1, epochs);
    for c in &chunks {
        assert!(s.ingest(c).unwrap(), "piece {c:?} was new");
    }
    s.flush().unwrap();
    chunks.len() as u64
}

fn rows(s: &Scheduler<SledStore>, grant: &Grant) -> Vec<(u32, u32)> {
    let page = s.results_page(grant.sweep_id, &[], None, 1000).unwrap();
    let mut rows: Vec<(u32, u32)> = page.rows.iter().map(|r| (r.epoch, r.layer)).collect();
    rows.sort();
    rows
}

fn history(s: &Scheduler<SledStore>, job: JobId) -> Vec<String> {
    s.job(job).unwrap().history
}

#[test]
fn a_resumed_attempt_keeps_what_was_committed_across_a_lost_lease_and_a_restart() {
    let (tmp, clock, s, w1, g1) = leased(3, false);
    assert!(g1.resume.is_none());
    ingest_epochs(&s, &g1, w1, 0..=1);
    assert_eq!(checkpoint(&s, &g1, w1, 1, b"state after epoch 1").unwrap(), 4, "epochs 0 and 1, two layers");
    // Measured after the checkpoint, then the worker is lost: epoch 2 must be discarded.
    ingest_epochs(&s, &g1, w1, 2..=2);
    clock.advance(2 * TTL);
    assert_eq!(s.expire_leases().unwrap(), 1);
    drop(s);

    // A restarted coordinator still has the checkpoint.
    let s = open_at(tmp.path(), &clock, false);
    assert_eq!(files(tmp.path()).len(), 1);
    let w2 = register(&s, "w2");
    let g2 = s.lease(w2).unwrap().unwrap();
    let resume = g2.resume.clone().expect("the second attempt resumes");
    assert_eq!((resume.epoch, resume.sha256.as_str()), (1, sha(b"state after epoch 1").as_str()));
    let (stored, path) = s.resume_checkpoint(&g2.claim(w2), g2.job_id).unwrap();
    assert_eq!((stored.epoch, std::fs::read(path).unwrap()), (1, b"state after epoch 1".to_vec()));
    let status = s.status(None).unwrap();
    assert_eq!(status[0].running[0].start_epoch(), 1, "status shows where the attempt started");
    // A committed histogram resent is a duplicate, not a second copy.
    let old = chunks_for(&g2, w2, 1, 0..=0);
    assert!(!s.ingest(&old[0]).unwrap());
    let sent = ingest_epochs(&s, &g2, w2, 2..=3);
    assert_eq!(s.complete(&g2.claim(w2), g2.job_id, ("a", "b"), sent).unwrap(), 8);
    let expected: Vec<(u32, u32)> = (0..=3).flat_map(|e| [(e, 1), (e, 2)]).collect();
    assert_eq!(rows(&s, &g2), expected, "every epoch exactly once");
    assert!(files(tmp.path()).is_empty(), "a finished job's checkpoint is removed");
    let h = history(&s, g2.job_id);
    assert!(h[0].starts_with("attempt 1 on w1: started at epoch 0, reached epoch 1: lease expired"), "{h:?}");
}

#[test]
fn a_corrupted_checkpoint_is_detected_discarded_and_the_job_restarts_from_scratch() {
    let (tmp, _clock, s, w1, g1) = leased(3, false);
    ingest_epochs(&s, &g1, w1, 0..=2);
    checkpoint(&s, &g1, w1, 2, b"state after epoch 2").unwrap();
    s.fail(&g1.claim(w1), g1.job_id, "worker shutting down; released", true).unwrap();
    // One flipped byte on disk.
    let name = &files(tmp.path())[0];
    let path = tmp.path().join("checkpoints").join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let w2 = register(&s, "w2");
    let g2 = s.lease(w2).unwrap().unwrap();
    assert_eq!(g2.resume.as_ref().map(|c| c.epoch), Some(2));
    let err = s.resume_checkpoint(&g2.claim(w2), g2.job_id).unwrap_err();
    assert!(matches!(err, Error::DataLoss(_)) && err.to_string().contains("fails verification"), "{err}");
    assert!(files(tmp.path()).is_empty(), "the bad file is gone");
    assert_eq!(s.status(None).unwrap()[0].running[0].start_epoch(), 0, "the attempt now starts from scratch");
    // What was committed with it is gone too: the whole run is sent again and counted once.
    let sent = ingest_epochs(&s, &g2, w2, 0..=3);
    assert_eq!(s.complete(&g2.claim(w2), g2.job_id, ("a", "b"), sent).unwrap(), 8);
    assert_eq!(rows(&s, &g2).len(), 8);
    assert!(history(&s, g2.job_id).iter().any(|h| h.contains("checkpoint at epoch 2 discarded")));
}

#[test]
fn a_worker_that_cannot_use_its_checkpoint_discards_it() {
    let (tmp, _clock, s, w1, g1) = leased(3, false);
    ingest_epochs(&s, &g1, w1, 0..=1);
    checkpoint(&s, &g1, w1, 1, b"one").unwrap();
    s.fail(&g1.claim(w1), g1.job_id, "released", true).unwrap();
    let w2 = register(&s, "w2");
    let g2 = s.lease(w2).unwrap().unwrap();
    assert!(s.discard_checkpoint(&g1.claim(w1), g2.job_id, "x").is_err(), "only the holder may discard");
    s.discard_checkpoint(&g2.claim(w2), g2.job_id, "shapes differ").unwrap();
    assert!(files(tmp.path()).is_empty());
    let sent = ingest_epochs(&s, &g2, w2, 0..=3);
    assert_eq!(s.complete(&g2.claim(w2), g2.job_id, ("a", "b"), sent).unwrap(), 8);
}

#[test]
fn uploads_are_refused_when_incomplete_stale_damaged_or_out_of_order() {
    let (tmp, clock, s, w1, g1) = leased(3, false);
    ingest_epochs(&s, &g1, w1, 0..=0);
    let err = checkpoint(&s, &g1, w1, 1, b"x").unwrap_err().to_string();
    assert!(err.contains("histogram (epoch 1, test, layer `conv1`, bin 0.67) never arrived"), "{err}");
    ingest_epochs(&s, &g1, w1, 1..=1);
    let header = CheckpointHeader { job_id: g1.job_id, claim: g1.claim(w1), epoch: 1, size: 3, sha256: sha(b"abc") };
    let mut damaged = s.begin_checkpoint(&header).unwrap();
    damaged.write(b"abd").unwrap();
    assert!(matches!(s.finish_checkpoint(&header, damaged), Err(Error::DataLoss(_))));
    assert!(checkpoint(&s, &g1, w1, 4, b"x").unwrap_err().to_string().contains("outside this attempt's epochs 1..=3"));
    checkpoint(&s, &g1, w1, 1, b"good").unwrap();
    assert!(checkpoint(&s, &g1, w1, 1, b"again").unwrap_err().to_string().contains("already stored"));
    let w2 = register(&s, "w2");
    assert!(matches!(checkpoint(&s, &g1, w2, 2, b"x"), Err(Error::WrongWorker { .. })));
    assert_eq!(files(tmp.path()).len(), 1, "refused uploads leave no file behind");
    // An unreferenced file (a crash between writing and referencing) goes at the next start.
    std::fs::write(tmp.path().join("checkpoints").join(format!("{}-e9-t9.ckpt", g1.job_id)), b"orphan").unwrap();
    drop(s);
    let _s = open_at(tmp.path(), &clock, false);
    assert_eq!(files(tmp.path()).len(), 1);
}

#[test]
fn checkpoints_go_with_failed_and_cancelled_jobs_and_stay_with_done_ones_when_kept() {
    let (tmp, _clock, s, w, g) = leased(1, true);
    // Done, with a final checkpoint kept for export.
    let sent = ingest_epochs(&s, &g, w, 0..=3);
    checkpoint(&s, &g, w, 3, b"final weights").unwrap();
    s.complete(&g.claim(w), g.job_id, ("a", "b"), sent).unwrap();
    let (kept, path) = s.export_checkpoint(g.job_id).unwrap();
    assert_eq!((kept.epoch, std::fs::read(path).unwrap()), (3, b"final weights".to_vec()));

    // Failed (one attempt allowed): removed with what it committed.
    let other = grid(1).replace("width: {value: 1}", "width: {value: 2}");
    s.submit("h.yaml", &other).unwrap();
    let g = s.lease(w).unwrap().unwrap();
    ingest_epochs(&s, &g, w, 0..=1);
    checkpoint(&s, &g, w, 1, b"doomed").unwrap();
    assert_eq!(files(tmp.path()).len(), 2);
    s.fail(&g.claim(w), g.job_id, "diverged", false).unwrap();
    assert_eq!(files(tmp.path()).len(), 1);
    assert!(s.export_checkpoint(g.job_id).is_err());

    // Cancelled while pending with a checkpoint.
    let third = grid(3).replace("width: {value: 1}", "width: {value: 3}");
    let sweep = s.submit("i.yaml", &third).unwrap().sweep_id;
    let g = s.lease(w).unwrap().unwrap();
    ingest_epochs(&s, &g, w, 0..=1);
    checkpoint(&s, &g, w, 1, b"paused").unwrap();
    s.fail(&g.claim(w), g.job_id, "released", true).unwrap();
    assert_eq!(files(tmp.path()).len(), 2);
    s.cancel(sweep).unwrap();
    assert_eq!(files(tmp.path()).len(), 1, "only the kept final checkpoint is left");
}

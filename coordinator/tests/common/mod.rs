//! Helpers shared by the scheduler tests: a scheduler on a manual clock with a short TTL,
//! workers, and the histogram pieces a tiny job (depth 1, epochs 0..=1, test split of N
//! samples) must deliver.

#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;

use ibsweep_coordinator::clock::ManualClock;
use ibsweep_coordinator::ids::WorkerId;
use ibsweep_coordinator::scheduler::{Chunk, Grant, Scheduler, Timing};
use ibsweep_coordinator::store::JobStore;
use ibsweep_shared::measure::LayerHistogram;
use ibsweep_testkit::GridBuilder;

/// Samples in the test split of the tiny grids (`train: {test_size: 20}`).
pub const N: u32 = 20;

pub const TTL: u64 = 1_000;

/// A two-job grid of tiny jobs (depth 1, epochs 0..=1, test split of N samples): every
/// piece of it is what [`chunks`] makes.
pub fn tiny_grid(name: &str, max_attempts: u32) -> String {
    GridBuilder::tiny(name).values("width", [1, 2]).limit("max_attempts", max_attempts).build()
}

pub fn timing() -> Timing {
    Timing { lease_ttl_ms: TTL, heartbeat_interval_ms: 100, worker_timeout_ms: 10 * TTL }
}

pub fn open<S: JobStore>(store: S, clock: &ManualClock) -> Scheduler<S> {
    Scheduler::open(store, Arc::new(clock.clone()), timing()).unwrap()
}

pub fn register<S: JobStore>(s: &Scheduler<S>, name: &str) -> WorkerId {
    s.register(name, 1, "cpu", None).unwrap().id
}

/// `samples` distinct patterns from `offset` on, labels cycling over `n_labels`.
pub fn histogram(samples: u32, offset: u32, n_labels: usize) -> Vec<u8> {
    let mut h = LayerHistogram::new(n_labels);
    let hashes: Vec<u128> = (0..samples).map(|i| u128::from(offset + i)).collect();
    let labels: Vec<u32> = (0..samples).map(|i| i % n_labels as u32).collect();
    h.add(&hashes, &labels).unwrap();
    h.to_bytes()
}

/// Every piece of a tiny job: epochs 0 and 1 x layers conv1 and softmax, each histogram
/// of N distinct samples in `pieces` pieces.
pub fn chunks(grant: &Grant, worker: WorkerId, pieces: u32) -> Vec<Chunk> {
    chunks_for(grant, worker, pieces, 0..=1)
}

/// [`chunks`] for the given measured epochs.
pub fn chunks_for(grant: &Grant, worker: WorkerId, pieces: u32, epochs: std::ops::RangeInclusive<u32>) -> Vec<Chunk> {
    let mut out = Vec::new();
    for epoch in epochs {
        for (layer, name) in [(1, "conv1"), (2, "softmax")] {
            for piece in 0..pieces {
                out.push(Chunk {
                    job_id: grant.job_id,
                    claim: grant.claim(worker),
                    sequence: out.len() as u64,
                    key: ibsweep_testkit::measurement(epoch, layer, name),
                    histogram: histogram(N / pieces, piece * 1000 + epoch * 100 + layer, 10),
                    piece,
                    pieces,
                    estimates: None,
                });
            }
        }
    }
    out
}

/// Uploads every piece of `grant` in two pieces each and completes it; returns the rows.
pub fn finish<S: JobStore>(s: &Scheduler<S>, worker: WorkerId, grant: &Grant) -> u64 {
    let chunks = chunks(grant, worker, 2);
    for c in &chunks {
        assert!(s.ingest(c).unwrap());
    }
    s.complete(&grant.claim(worker), grant.job_id, ("a", "b"), chunks.len() as u64).unwrap()
}

/// Fails the test, listing them, if the store's records disagree with each other.
#[allow(dead_code)]
pub fn assert_consistent<S: JobStore>(s: &Scheduler<S>) {
    let problems = s.audit().unwrap();
    assert!(problems.is_empty(), "the store is inconsistent:\n{}", problems.join("\n"));
}

//! The job store: a few ordered key-value trees with multi-key transactions, behind a trait
//! with two implementations (sled on disk, memory for tests) and one conformance suite
//! (`tests/store_conformance.rs`). The state machine in [`crate::scheduler`] is written once
//! against this trait.

mod memory;
mod sled_store;

pub use memory::MemoryStore;
pub use sled_store::SledStore;

use crate::error::{Error, Result};

/// The trees (one per entity). Keys are big-endian so range scans come out ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Format version, fencing counter.
    Meta,
    /// sweep id -> SweepRecord (small: read on the lease path)
    Sweeps,
    /// sweep id -> grid YAML text
    Grids,
    /// JobKey -> Job (jobs that ever left the implicit pending state)
    Jobs,
    /// job id -> JobKey
    JobIndex,
    /// fencing token -> JobKey, for every live lease
    Active,
    /// JobKey -> (), pending jobs that have a record (expired, released, retried)
    Requeue,
    /// attempt ++ histogram -> PartialRecord, histograms still missing pieces
    Partials,
    /// attempt ++ histogram ++ piece -> piece bytes (one slot per piece index)
    Pieces,
    /// attempt ++ histogram -> StagedRecord, finished histograms of a running attempt
    Staged,
    /// JobKey ++ epoch ++ split ++ layer ++ bin -> ResultRecord
    Results,
    /// same key as Results -> raw histogram bytes (only with `measure.keep_histograms`)
    Histograms,
    /// worker id -> WorkerRecord
    Workers,
}

impl Tree {
    pub const ALL: [Tree; 13] = [
        Tree::Meta,
        Tree::Sweeps,
        Tree::Grids,
        Tree::Jobs,
        Tree::JobIndex,
        Tree::Active,
        Tree::Requeue,
        Tree::Partials,
        Tree::Pieces,
        Tree::Staged,
        Tree::Results,
        Tree::Histograms,
        Tree::Workers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Sweeps => "sweeps",
            Tree::Grids => "grids",
            Tree::Jobs => "jobs",
            Tree::JobIndex => "job_index",
            Tree::Active => "active",
            Tree::Requeue => "requeue",
            Tree::Partials => "partials",
            Tree::Pieces => "pieces",
            Tree::Staged => "staged",
            Tree::Results => "results",
            Tree::Histograms => "histograms",
            Tree::Workers => "workers",
        }
    }

    /// The tree of a [`Tree::name`].
    pub fn from_name(name: &[u8]) -> Option<Tree> {
        Tree::ALL.into_iter().find(|t| t.name().as_bytes() == name)
    }

    fn position(self) -> usize {
        Tree::ALL.iter().position(|&t| t == self).expect("every tree is in ALL")
    }
}

/// The store's format; bump on any incompatible change of keys or records.
/// 3: commits go through a redo record (`store::SledStore`), which a coordinator of format 2
/// would not replay after a crash, so it must not open such a store.
pub const FORMAT_VERSION: &str = "3";
/// Formats this one reads as they are, upgraded in place at open.
pub const UPGRADABLE_FORMATS: &[&str] = &["2"];
pub const FORMAT_KEY: &[u8] = b"format_version";

/// Every tree's entries, in tree and key order.
pub type TreeEntries = Vec<(Tree, Vec<(Vec<u8>, Vec<u8>)>)>;

/// Reads and writes inside one transaction: all or nothing.
pub trait Txn {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()>;
    fn remove(&mut self, tree: Tree, key: &[u8]) -> Result<()>;
}

/// A transactional store of ordered trees.
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Runs `body` atomically: its writes all become visible and durable together (after
    /// the next [`JobStore::flush`]), or none do, even across a crash. Commits are serialized.
    /// `body` must act only through the `Txn`; an `Err` from it aborts and writes nothing.
    fn transaction<R>(&self, body: &mut dyn FnMut(&mut dyn Txn) -> Result<R>) -> Result<R>
    where
        Self: Sized;

    /// Every (key, value) of `tree` whose key starts with `prefix`, in key order. Not part of
    /// any transaction: callers re-check what they act on inside one.
    fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// At most `limit` entries of [`JobStore::scan`] whose keys come strictly after `after`:
    /// lets a caller stream a large tree page by page instead of collecting it.
    fn scan_page(
        &self,
        tree: Tree,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Durable on return: call before acknowledging anything the caller must not lose.
    fn flush(&self) -> Result<()>;

    /// Approximate bytes on disk (0 in memory).
    fn size_on_disk(&self) -> u64;

    /// While the store refuses writes: the error every write gets ([`Error::StorageFull`]
    /// until space returns and [`JobStore::reopen`] succeeds, [`Error::StoreLost`] after a
    /// failed reopen). Reads keep working meanwhile.
    fn write_refusal(&self) -> Option<Error>;

    /// Closes and reopens the store after writes failed, then proves with a durable probe
    /// write that it takes writes again. What reopening finds is exactly what was durable:
    /// every acknowledged commit, and none that was refused.
    fn reopen(&self) -> Result<()>;

    /// Every tree as of one instant between two commits (a backup), taken without holding
    /// commits back for longer than it takes to copy what they wrote meanwhile.
    fn snapshot(&self) -> Result<TreeEntries>;
}

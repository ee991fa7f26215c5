//! What the store holds: records, typed keys, and typed tables over [`JobStore`] trees.
//!
//! Records are JSON (readable with any sled dump tool, easy to evolve with
//! `#[serde(default)]`); large byte payloads (histograms, count profiles) travel beside the
//! JSON as a raw blob instead of a JSON number array. Code above this module never builds a
//! key by hand or decodes a record itself: it goes through [`JsonTable`] and the key types.

use std::marker::PhantomData;

use ibsweep_shared::job::Split;
use ibsweep_shared::measure::Estimate;
use ibsweep_shared::results::{EstimateColumns, Measurement, MiRow};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{JobId, LeaseToken, SweepId, WorkerId};
use crate::lifecycle::{Counts, Job};
use crate::store::{Tree, Txn};

/// A submitted sweep. Small on purpose: the lease path reads it; the grid text lives in
/// [`GRIDS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRecord {
    pub id: SweepId,
    pub name: String,
    pub file_name: String,
    pub created_ms: u64,
    /// Product points plus includes (some product points are excluded).
    pub index_len: u64,
    /// Next index never handed out; jobs at or beyond it are implicitly pending.
    pub cursor: u64,
    pub max_attempts: u32,
    pub keep_histograms: bool,
    pub cancelled: bool,
    /// Jobs with a record (the rest are implicitly pending, or cancelled with the sweep).
    pub materialized: u64,
    pub counts: Counts,
    /// Sum of wall times of finished jobs, for ETAs.
    pub done_seconds: f64,
}

impl SweepRecord {
    /// Whether a lease could find work here (re-queued jobs are tracked separately).
    pub fn has_fresh_indices(&self) -> bool {
        !self.cancelled && self.cursor < self.index_len
    }
}

/// One worker process (re-registering after a reconnect reuses its record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub id: WorkerId,
    pub name: String,
    pub threads: u32,
    pub device: String,
    pub registered_ms: u64,
    pub last_seen_ms: u64,
    pub job: Option<JobId>,
    pub epoch: u32,
}

/// A histogram still receiving pieces; the pieces themselves are in `Tree::Pieces`, one
/// slot per piece index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialRecord {
    pub key: Measurement,
    pub pieces: u32,
    pub received: u32,
}

/// A finished histogram of a running attempt; the blob is its count profile, then (only
/// with `keep_histograms`) the raw histogram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedRecord {
    pub key: Measurement,
    pub estimate: Estimate,
    pub profile_len: u64,
}

/// One layer's estimates from the job's other estimators (KDE, Rényi, sliced MI) at one
/// measured epoch and split, staged like a histogram; `key.bin_size` is 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedEstimates {
    pub key: Measurement,
    pub values: Vec<EstimateColumns>,
}

/// A result row with its count profile (blob).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRecord {
    pub row: MiRow,
}

pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

pub fn from_json<T: DeserializeOwned>(tree: Tree, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt { tree: tree.name(), detail: e.to_string() })
}

/// `[u32 LE json length][json][blob]`.
pub fn with_blob<T: Serialize>(value: &T, blob: &[u8]) -> Vec<u8> {
    let json = to_json(value);
    let mut out = Vec::with_capacity(4 + json.len() + blob.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(blob);
    out
}

pub fn split_blob<T: DeserializeOwned>(tree: Tree, bytes: &[u8]) -> Result<(T, Vec<u8>)> {
    let corrupt = || Error::Corrupt { tree: tree.name(), detail: "truncated record".into() };
    let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(corrupt)?.try_into().expect("4 bytes")) as usize;
    let json = bytes.get(4..4usize.checked_add(len).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
    Ok((from_json(tree, json)?, bytes[4 + len..].to_vec()))
}

/// A tree whose values are JSON records of one type.
#[derive(Debug)]
pub struct JsonTable<V> {
    pub tree: Tree,
    _value: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> JsonTable<V> {
    pub const fn new(tree: Tree) -> JsonTable<V> {
        JsonTable { tree, _value: PhantomData }
    }

    pub fn get(&self, txn: &dyn Txn, key: &[u8]) -> Result<Option<V>> {
        txn.get(self.tree, key)?.map(|v| self.decode(&v)).transpose()
    }

    pub fn put(&self, txn: &mut dyn Txn, key: &[u8], value: &V) -> Result<()> {
        txn.insert(self.tree, key, &to_json(value))
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<V> {
        from_json(self.tree, bytes)
    }
}

pub const SWEEPS: JsonTable<SweepRecord> = JsonTable::new(Tree::Sweeps);
pub const JOBS: JsonTable<Job> = JsonTable::new(Tree::Jobs);
pub const WORKERS: JsonTable<WorkerRecord> = JsonTable::new(Tree::Workers);
pub const PARTIALS: JsonTable<PartialRecord> = JsonTable::new(Tree::Partials);

/// The grid text of each sweep (sweep id -> UTF-8 YAML), read once per sweep and cached.
pub const GRIDS: Tree = Tree::Grids;

// ---- keys ----

/// A job's place: its sweep and its index in the sweep's lazy expansion. Big-endian, so a
/// sweep's jobs scan in index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub sweep: SweepId,
    pub index: u64,
}

impl JobKey {
    pub fn to_bytes(self) -> Vec<u8> {
        let mut k = self.sweep.as_bytes().to_vec();
        k.extend_from_slice(&self.index.to_be_bytes());
        k
    }

    pub fn from_bytes(key: &[u8]) -> Result<JobKey> {
        let corrupt = || Error::Corrupt { tree: "jobs", detail: format!("bad job key of {} bytes", key.len()) };
        let sweep = key.get(..16).and_then(SweepId::from_slice).ok_or_else(corrupt)?;
        let index = u64::from_be_bytes(key.get(16..24).ok_or_else(corrupt)?.try_into().expect("8 bytes"));
        Ok(JobKey { sweep, index })
    }
}

pub fn split_byte(split: Split) -> u8 {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

/// Identifies one histogram within a job: epoch, split, layer, bin size.
pub fn measurement_suffix(epoch: u32, split: Split, layer: u32, bin_size: f64) -> Vec<u8> {
    suffix_with_slot(epoch, split, layer, bin_size.to_bits().to_be_bytes())
}

/// Where in a measurement suffix the bin size's bits (or [`ESTIMATES_SLOT`]) go.
const SLOT: std::ops::Range<usize> = 9..17;

/// (epoch, split, layer), then the 8-byte slot.
fn suffix_with_slot(epoch: u32, split: Split, layer: u32, slot: [u8; 8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(SLOT.end);
    k.extend_from_slice(&epoch.to_be_bytes());
    k.push(split_byte(split));
    k.extend_from_slice(&layer.to_be_bytes());
    debug_assert_eq!(k.len(), SLOT.start);
    k.extend_from_slice(&slot);
    k
}

/// Where a bin size's bits go in [`measurement_suffix`], the estimates of a layer have all
/// ones: a NaN, which no bin size can be, and it sorts after every positive bin size, so a
/// layer's estimates follow its histograms in key order.
const ESTIMATES_SLOT: [u8; 8] = [0xFF; 8];

/// The suffix of one layer's estimates at an epoch and split.
pub fn estimates_suffix(epoch: u32, split: Split, layer: u32) -> Vec<u8> {
    suffix_with_slot(epoch, split, layer, ESTIMATES_SLOT)
}

/// Whether a measurement suffix (of a staged or result key) names estimates, not a
/// histogram.
pub fn is_estimates_suffix(suffix: &[u8]) -> bool {
    suffix.get(SLOT) == Some(ESTIMATES_SLOT.as_slice())
}

/// The result key of an estimate row: the estimates' key and the row's place among them.
pub fn estimate_row_key(estimates_key: &[u8], index: usize) -> Vec<u8> {
    [estimates_key, &(index as u16).to_be_bytes()].concat()
}

pub fn token_key(token: LeaseToken) -> [u8; 8] {
    token.0.to_be_bytes()
}

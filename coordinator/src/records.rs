//! What the store holds, and the key layouts. Records are JSON (readable with any sled
//! dump tool, easy to evolve with `#[serde(default)]`); large byte payloads (histograms,
//! count profiles) travel beside the JSON as a raw blob instead of a JSON number array.

use ibsweep_shared::job::Split;
use ibsweep_shared::measure::Estimate;
use ibsweep_shared::results::{Measurement, MiRow};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{JobId, LeaseToken, SweepId, WorkerId};
use crate::store::Tree;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRecord {
    pub id: SweepId,
    pub name: String,
    pub file_name: String,
    pub grid_yaml: String,
    pub created_ms: u64,
    /// Number of jobs.
    pub total: u64,
    /// Product points plus includes (some product points are excluded).
    pub index_len: u64,
    /// Next index never handed out; jobs at or beyond it are implicitly pending.
    pub cursor: u64,
    pub max_attempts: u32,
    pub keep_histograms: bool,
    pub cancelled: bool,
    /// Jobs with a record (the rest are implicitly pending or cancelled with the sweep).
    pub materialized: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled_jobs: u64,
    /// Sum of wall times of finished jobs, for ETAs.
    pub done_seconds: f64,
}

impl SweepRecord {
    pub fn pending(&self) -> u64 {
        self.total.saturating_sub(self.running + self.done + self.failed + self.cancelled_jobs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub worker: WorkerId,
    pub worker_name: String,
    pub token: LeaseToken,
    pub granted_ms: u64,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: JobId,
    pub index: u64,
    pub state: JobState,
    /// Grants so far (1 during the first attempt).
    pub attempt: u32,
    /// Attempts that failed (releases by a stopping worker do not count).
    pub failures: u32,
    pub lease: Option<LeaseRecord>,
    /// One line per attempt that did not finish: who and why.
    pub history: Vec<String>,
    pub cancel_requested: bool,
    pub epoch: u32,
    pub finished_ms: Option<u64>,
    pub train_indices_hash: String,
    pub test_indices_hash: String,
}

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

/// A histogram still receiving pieces; the blob is the merged `IBH1` bytes so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialRecord {
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
    let json = bytes.get(4..4 + len).ok_or_else(corrupt)?;
    Ok((from_json(tree, json)?, bytes[4 + len..].to_vec()))
}

/// A result row with its count profile (blob).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultRecord {
    pub row: MiRow,
}

// ---- keys ----

pub fn job_key(sweep: SweepId, index: u64) -> Vec<u8> {
    let mut k = sweep.as_bytes().to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn split_job_key(key: &[u8]) -> Option<(SweepId, u64)> {
    let sweep = SweepId::from_slice(key.get(..16)?)?;
    let index = u64::from_be_bytes(key.get(16..24)?.try_into().ok()?);
    Some((sweep, index))
}

pub fn attempt_prefix(job_key: &[u8], attempt: u32) -> Vec<u8> {
    let mut k = job_key.to_vec();
    k.extend_from_slice(&attempt.to_be_bytes());
    k
}

pub fn split_byte(split: Split) -> u8 {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

/// Identifies one histogram within a job: epoch, split, layer, bin size.
pub fn measurement_suffix(epoch: u32, split: Split, layer: u32, bin_size: f64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&epoch.to_be_bytes());
    k.push(split_byte(split));
    k.extend_from_slice(&layer.to_be_bytes());
    k.extend_from_slice(&bin_size.to_bits().to_be_bytes());
    k
}

//! The staging area's vocabulary, owned here so ingest, checkpoints and leasing all use it
//! and none imports another: histograms of a running job live in `Tree::Staged` (pieces
//! of one in `Tree::Pieces` and `Tree::Partials`) under (job, attempt, measurement) keys
//! until completion publishes them. The [`Attempt::Committed`] area holds those committed
//! with a checkpoint, kept when the job resumes. Keys are built only here.

use ibsweep_shared::job::JobSpec;
use ibsweep_shared::results::Measurement;

use crate::error::{Error, Result};
use crate::records::{JobKey, estimates_suffix, measurement_suffix};

/// Whose staged histograms: one lease attempt's (counted from 1), or those committed with
/// the job's checkpoint, which outlive the attempt that sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    Committed,
    Live(u32),
}

/// The key prefix of one staging area: the job's key, then the attempt number (0 for the
/// committed area, which no real attempt uses). Every staged, partial and piece key
/// starts with one, so dropping an attempt is a prefix scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Area(Vec<u8>);

impl Area {
    pub(super) fn new(job: JobKey, attempt: Attempt) -> Area {
        let number = match attempt {
            Attempt::Committed => 0,
            Attempt::Live(n) => n,
        };
        let mut k = job.to_bytes();
        k.extend_from_slice(&number.to_be_bytes());
        Area(k)
    }

    pub(super) fn live(job: JobKey, attempt: u32) -> Area {
        Area::new(job, Attempt::Live(attempt))
    }

    pub(super) fn committed(job: JobKey) -> Area {
        Area::new(job, Attempt::Committed)
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The staged (and partial) key of one histogram in this area.
    pub(super) fn histogram(&self, m: &Measurement) -> HistogramKey {
        self.with_suffix(&measurement_suffix(m.epoch, m.split, m.layer, m.bin_size))
    }

    /// The staged key of one layer's estimates (epoch, split, layer of `m`) in this area.
    pub(super) fn estimates(&self, m: &Measurement) -> HistogramKey {
        self.with_suffix(&estimates_suffix(m.epoch, m.split, m.layer))
    }

    /// The same measurement's key in this area, given its suffix from another area.
    pub(super) fn with_suffix(&self, suffix: &[u8]) -> HistogramKey {
        HistogramKey([self.0.as_slice(), suffix].concat())
    }

    /// The measurement part of a key scanned from this area.
    pub(super) fn suffix<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        debug_assert!(key.starts_with(&self.0), "a key from another staging area");
        &key[self.0.len()..]
    }
}

/// One histogram's key in a staging area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HistogramKey(Vec<u8>);

impl HistogramKey {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// One piece's slot: a piece index is stored once whatever its sequence number.
    pub(super) fn piece(&self, piece: u32) -> Vec<u8> {
        [self.0.as_slice(), &piece.to_be_bytes()].concat()
    }
}

/// Every histogram (and, with other estimators, every layer's estimates) a job must
/// deliver, as staged-key suffixes, in key order.
pub(super) fn expected(spec: &JobSpec) -> Result<Vec<(Vec<u8>, String)>> {
    let layers = spec.layers().map_err(|e| Error::InvalidArgument(e.0))?;
    let estimates = !spec.measure.estimators.expected_rows().is_empty();
    let mut out = Vec::new();
    for epoch in spec.measured_epochs() {
        for &split in &spec.measure.splits {
            for layer in &layers {
                if estimates {
                    out.push((
                        estimates_suffix(epoch, split, layer.index),
                        format!("estimates (epoch {epoch}, {}, layer `{}`)", split.as_str(), layer.name),
                    ));
                }
                for bin in &spec.measure.bin_sizes {
                    out.push((
                        measurement_suffix(epoch, split, layer.index, bin.get()),
                        format!(
                            "histogram (epoch {epoch}, {}, layer `{}`, bin {})",
                            split.as_str(),
                            layer.name,
                            bin.get()
                        ),
                    ));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The measured epoch a staged key's suffix starts with.
pub(super) fn suffix_epoch(suffix: &[u8]) -> u32 {
    suffix.get(..4).map_or(u32::MAX, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// The first histogram of `expected` (up to epoch `upto`, when given) that `have` (the
/// staged keys' measurement suffixes, in any order) lacks, named for a person.
pub(super) fn first_missing<'a>(
    expected: &'a [(Vec<u8>, String)],
    mut have: Vec<&[u8]>,
    upto: Option<u32>,
) -> Option<&'a str> {
    have.sort_unstable();
    expected
        .iter()
        .filter(|(suffix, _)| upto.is_none_or(|epoch| suffix_epoch(suffix) <= epoch))
        .find(|(suffix, _)| have.binary_search(&suffix.as_slice()).is_err())
        .map(|(_, name)| name.as_str())
}

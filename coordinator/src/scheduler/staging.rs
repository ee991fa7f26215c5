//! The staging area's vocabulary, owned here so ingest and checkpoints both use it and
//! neither imports the other: histograms of a running job live in `Tree::Staged` under
//! (job, attempt, measurement) keys until completion publishes them; attempt
//! [`COMMITTED`] holds those committed with a checkpoint, kept when the job resumes.

use ibsweep_shared::job::JobSpec;

use crate::error::{Error, Result};
use crate::records::measurement_suffix;

/// The staging "attempt" that holds histograms committed with a checkpoint (real
/// attempts count from 1).
pub(super) const COMMITTED: u32 = 0;

/// Every histogram a job must deliver, as staged-key suffixes, in key order.
pub(super) fn expected(spec: &JobSpec) -> Result<Vec<(Vec<u8>, String)>> {
    let layers = spec.layers().map_err(|e| Error::InvalidArgument(e.0))?;
    let mut out = Vec::new();
    for epoch in spec.measured_epochs() {
        for &split in &spec.measure.splits {
            for layer in &layers {
                for bin in &spec.measure.bin_sizes {
                    out.push((
                        measurement_suffix(epoch, split, layer.index, bin.get()),
                        format!("epoch {epoch}, {}, layer `{}`, bin {}", split.as_str(), layer.name, bin.get()),
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

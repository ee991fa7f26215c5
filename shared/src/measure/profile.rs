//! A finalized histogram reduced to its count profile (design §1 "Histograms"): once a
//! histogram is complete, pattern identities no longer matter, only the multiset of
//! per-pattern label-count vectors. A conv layer at the ceiling (10,000 distinct patterns)
//! becomes at most 10 entries.

use std::collections::BTreeMap;

use super::{Estimate, LayerHistogram, MeasureError};

/// Label-count vector -> number of patterns that have exactly that vector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CountProfile {
    n_labels: usize,
    entries: BTreeMap<Vec<u64>, u64>,
}

const MAGIC: &[u8; 4] = b"IBP1";

impl CountProfile {
    pub fn from_histogram(histogram: &LayerHistogram) -> CountProfile {
        // Count borrowed rows first: one allocation per distinct row, not per pattern (at
        // the ceiling 10,000 patterns share 10 rows).
        let mut counts: std::collections::HashMap<&[u64], u64> = std::collections::HashMap::new();
        for row in histogram.count_rows() {
            *counts.entry(row).or_insert(0) += 1;
        }
        let entries: BTreeMap<Vec<u64>, u64> = counts.into_iter().map(|(row, k)| (row.to_vec(), k)).collect();
        CountProfile { n_labels: histogram.n_labels(), entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn estimate(&self) -> Result<Estimate, MeasureError> {
        Estimate::from_weighted_rows(self.n_labels, self.entries.iter().map(|(row, &k)| (row.as_slice(), k)))
    }

    /// `IBP1`, label count (u16 LE), entry count (u64 LE), then per entry the label counts
    /// and the multiplicity as LEB128 varints, in sorted order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.n_labels as u16).to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (row, &k) in &self.entries {
            for &c in row {
                super::histogram::write_varint(&mut out, c);
            }
            super::histogram::write_varint(&mut out, k);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<CountProfile, MeasureError> {
        let corrupt = |what: String| MeasureError::Corrupt(format!("count profile: {what}"));
        let mut reader = super::histogram::Reader::new(bytes);
        if reader.take(4) != Some(&MAGIC[..]) {
            return Err(corrupt("bad magic, expected IBP1".into()));
        }
        let n_labels = u16::from_le_bytes(reader.array().ok_or_else(|| corrupt("truncated header".into()))?) as usize;
        let count = u64::from_le_bytes(reader.array().ok_or_else(|| corrupt("truncated header".into()))?);
        if count > bytes.len() as u64 {
            return Err(corrupt(format!("claims {count} entries in {} bytes", bytes.len())));
        }
        let mut entries = BTreeMap::new();
        for i in 0..count {
            let row = (0..n_labels)
                .map(|_| reader.varint())
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| corrupt(format!("truncated at entry {i}")))?;
            let k = reader.varint().ok_or_else(|| corrupt(format!("truncated at entry {i}")))?;
            entries.insert(row, k);
        }
        if !reader.is_done() {
            return Err(corrupt("trailing bytes".into()));
        }
        Ok(CountProfile { n_labels, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_keeps_the_estimate_and_round_trips() {
        let mut h = LayerHistogram::new(3);
        h.add(&[1, 2, 3, 4, 4, 5], &[0, 0, 1, 2, 2, 1]).unwrap();
        let profile = CountProfile::from_histogram(&h);
        assert_eq!(profile.len(), 3, "(1,0,0) x2, (0,1,0) x2, (0,0,2) x1");
        assert_eq!(profile.estimate().unwrap(), h.estimate().unwrap());
        let back = CountProfile::from_bytes(&profile.to_bytes()).unwrap();
        assert_eq!(back, profile);
        assert!(CountProfile::from_bytes(&profile.to_bytes()[..10]).is_err());
    }
}

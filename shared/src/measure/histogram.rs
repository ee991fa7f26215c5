//! Pattern hash -> counts per label, the unit that travels from worker to coordinator.
//!
//! Counts are additive, so histograms of disjoint chunks of samples merge exactly by
//! summing (design §1 "Histograms"). The byte form is sorted by hash, so equal histograms
//! give equal bytes whatever order their samples arrived in.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{BinSize, Binner, Estimate, MeasureError};

/// Pattern hashes are already uniformly random, so the map hashes them by their low bits
/// instead of hashing them again.
#[derive(Default)]
struct PatternHasher(u64);

impl Hasher for PatternHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type PatternMap = HashMap<u128, u32, BuildHasherDefault<PatternHasher>>;

/// The first format: every label's count per pattern (26 bytes per pattern with 10 labels).
const MAGIC_DENSE: &[u8; 4] = b"IBH1";
/// The wire format: only the labels a pattern occurs with (19 bytes per pattern at the
/// ceiling, where each pattern is one sample).
const MAGIC: &[u8; 4] = b"IBH2";

/// Counts per label of every distinct pattern of one (epoch, split, layer, bin size).
#[derive(Debug, Clone, Default)]
pub struct LayerHistogram {
    n_labels: usize,
    /// Pattern hash -> row in `counts`.
    index: PatternMap,
    /// `n_labels` counts per pattern, rows in insertion order.
    counts: Vec<u64>,
}

impl PartialEq for LayerHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.n_labels == other.n_labels
            && self.index.len() == other.index.len()
            && self.index.iter().all(|(hash, _)| other.counts_of(*hash) == self.counts_of(*hash))
    }
}

impl LayerHistogram {
    pub fn new(n_labels: usize) -> LayerHistogram {
        LayerHistogram { n_labels, index: PatternMap::default(), counts: Vec::new() }
    }

    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// Number of distinct patterns.
    pub fn distinct(&self) -> usize {
        self.index.len()
    }

    /// Total number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// [`LayerHistogram::total`], or `None` when counts from the wire overflow 64 bits.
    pub fn checked_total(&self) -> Option<u64> {
        self.counts.iter().try_fold(0u64, |acc, &c| acc.checked_add(c))
    }

    pub fn counts_of(&self, hash: u128) -> Option<&[u64]> {
        self.index.get(&hash).map(|&row| self.row(row))
    }

    fn row(&self, row: u32) -> &[u64] {
        let start = row as usize * self.n_labels;
        &self.counts[start..start + self.n_labels]
    }

    fn row_mut(&mut self, hash: u128) -> &mut [u64] {
        let next = self.index.len() as u32;
        let row = *self.index.entry(hash).or_insert(next);
        if row == next {
            self.counts.resize(self.counts.len() + self.n_labels, 0);
        }
        let start = row as usize * self.n_labels;
        &mut self.counts[start..start + self.n_labels]
    }

    /// Counts one sample per (hash, label) pair.
    pub fn add(&mut self, hashes: &[u128], labels: &[u32]) -> Result<(), MeasureError> {
        if hashes.len() != labels.len() {
            return Err(MeasureError::LabelCount { labels: labels.len(), samples: hashes.len() });
        }
        if let Some(&label) = labels.iter().find(|&&l| l as usize >= self.n_labels) {
            return Err(MeasureError::LabelRange { label, n_labels: self.n_labels });
        }
        for (&hash, &label) in hashes.iter().zip(labels) {
            self.row_mut(hash)[label as usize] += 1;
        }
        Ok(())
    }

    /// Adds every count of `other` (the exact merge of two disjoint sets of samples).
    pub fn merge(&mut self, other: &LayerHistogram) -> Result<(), MeasureError> {
        if self.n_labels != other.n_labels {
            return Err(MeasureError::LabelMismatch { left: self.n_labels, right: other.n_labels });
        }
        for (&hash, &row) in &other.index {
            for (mine, theirs) in self.row_mut(hash).iter_mut().zip(other.row(row)) {
                *mine = mine.checked_add(*theirs).ok_or(MeasureError::CountOverflow)?;
            }
        }
        Ok(())
    }

    /// Splits into `pieces` histograms by pattern hash; merging them gives this one back
    /// exactly (no pattern is in two pieces). Large histograms travel this way.
    pub fn split(&self, pieces: usize) -> Vec<LayerHistogram> {
        let pieces = pieces.max(1);
        let mut out = vec![LayerHistogram::new(self.n_labels); pieces];
        for (&hash, &row) in &self.index {
            let target = &mut out[(hash % pieces as u128) as usize];
            target.row_mut(hash).copy_from_slice(self.row(row));
        }
        out
    }

    /// (hash, counts per label), sorted by hash.
    pub fn entries(&self) -> Vec<(u128, &[u64])> {
        let mut entries: Vec<_> = self.index.iter().map(|(&h, &row)| (h, self.row(row))).collect();
        entries.sort_unstable_by_key(|(h, _)| *h);
        entries
    }

    /// The count vectors of all patterns, in no particular order: all the estimator needs.
    pub fn count_rows(&self) -> impl Iterator<Item = &[u64]> {
        self.counts.chunks_exact(self.n_labels.max(1))
    }

    pub fn estimate(&self) -> Result<Estimate, MeasureError> {
        Estimate::from_rows(self.n_labels, self.count_rows())
    }

    /// Compact bytes: `IBH2`, label count (u16 LE), pattern count (u64 LE), then per pattern
    /// in hash order the hash (u128 LE), the number of labels it occurs with (LEB128), and for
    /// each of those, in ascending order, the label and its count (LEB128). `IBH1` (every
    /// label's count, zeros included) is still read.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.index.len() * 19);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.n_labels as u16).to_le_bytes());
        out.extend_from_slice(&(self.index.len() as u64).to_le_bytes());
        for (hash, counts) in self.entries() {
            out.extend_from_slice(&hash.to_le_bytes());
            write_varint(&mut out, counts.iter().filter(|&&c| c > 0).count() as u64);
            for (label, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                write_varint(&mut out, label as u64);
                write_varint(&mut out, c);
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<LayerHistogram, MeasureError> {
        let corrupt = |what: &str| MeasureError::Corrupt(what.to_string());
        let mut reader = Reader::new(bytes);
        let magic = reader.take(4).ok_or_else(|| corrupt("shorter than the header"))?;
        let dense = match magic {
            m if m == MAGIC => false,
            m if m == MAGIC_DENSE => true,
            _ => return Err(corrupt("bad magic, expected IBH2 (or IBH1)")),
        };
        let n_labels = u16::from_le_bytes(reader.array().ok_or_else(|| corrupt("truncated header"))?) as usize;
        let patterns = u64::from_le_bytes(reader.array().ok_or_else(|| corrupt("truncated header"))?);
        if n_labels == 0 {
            return Err(corrupt("zero labels"));
        }
        // The fewest bytes a pattern can take: refuse absurd counts before allocating.
        let least = if dense { 16 + n_labels } else { 19 };
        if patterns > (bytes.len() / least) as u64 {
            return Err(corrupt(&format!("claims {patterns} patterns in {} bytes", bytes.len())));
        }
        let mut histogram = LayerHistogram::new(n_labels);
        histogram.index.reserve(patterns as usize);
        histogram.counts.reserve(patterns as usize * n_labels);
        let mut previous: Option<u128> = None;
        for i in 0..patterns {
            let hash =
                u128::from_le_bytes(reader.array().ok_or_else(|| corrupt(&format!("truncated at pattern {i}")))?);
            if previous.is_some_and(|p| p >= hash) {
                return Err(corrupt(&format!("patterns out of order or repeated at pattern {i}")));
            }
            previous = Some(hash);
            let bad = |what: &str| corrupt(&format!("{what} at pattern {i}"));
            if dense {
                let row = histogram.row_mut(hash);
                for slot in row.iter_mut() {
                    *slot = reader.varint().ok_or_else(|| bad("bad count"))?;
                }
                continue;
            }
            let labels = reader.varint().ok_or_else(|| bad("bad label count"))?;
            if labels == 0 || labels > n_labels as u64 {
                return Err(bad(&format!("{labels} labels of {n_labels}")));
            }
            let row = histogram.row_mut(hash);
            let mut next_label = 0u64;
            for _ in 0..labels {
                let label = reader.varint().ok_or_else(|| bad("bad label"))?;
                let count = reader.varint().ok_or_else(|| bad("bad count"))?;
                if label < next_label || label >= n_labels as u64 {
                    return Err(bad(&format!("label {label} out of order or out of range")));
                }
                if count == 0 {
                    return Err(bad("a zero count"));
                }
                row[label as usize] = count;
                next_label = label + 1;
            }
        }
        if !reader.is_done() {
            return Err(corrupt(&format!("{} trailing bytes", bytes.len() - reader.pos)));
        }
        Ok(histogram)
    }
}

pub(super) fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub(super) fn is_done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first()?;
            value |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

/// Everything one measured layer accumulates over a split: a histogram per bin size, fed
/// batch by batch so a layer's activations for the whole split are never held at once.
#[derive(Debug, Clone)]
pub struct LayerAccumulator {
    binner: Binner,
    histograms: Vec<LayerHistogram>,
}

impl LayerAccumulator {
    pub fn new(bin_sizes: Vec<BinSize>, n_labels: usize) -> LayerAccumulator {
        let histograms = vec![LayerHistogram::new(n_labels); bin_sizes.len()];
        LayerAccumulator { binner: Binner::new(bin_sizes), histograms }
    }

    /// Bins and counts one batch: `batch` holds `labels.len()` samples of `features` values.
    pub fn add_batch<T: super::Activation>(
        &mut self,
        batch: &[T],
        features: usize,
        labels: &[u32],
    ) -> Result<(), MeasureError> {
        if batch.len() != features * labels.len() {
            return Err(MeasureError::LabelCount { labels: labels.len(), samples: batch.len() / features.max(1) });
        }
        let hashes = self.binner.hash_rows(batch, features)?;
        for (histogram, hashes) in self.histograms.iter_mut().zip(&hashes) {
            histogram.add(hashes, labels)?;
        }
        Ok(())
    }

    /// (bin size, histogram) for every bin size, in the order given.
    pub fn finish(self) -> Vec<(BinSize, LayerHistogram)> {
        self.binner.bin_sizes().iter().copied().zip(self.histograms).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_merge_and_round_trip() {
        let mut a = LayerHistogram::new(3);
        a.add(&[1, 2, 1], &[0, 2, 0]).unwrap();
        let mut b = LayerHistogram::new(3);
        b.add(&[2, 3], &[1, 1]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.counts_of(1), Some(&[2, 0, 0][..]));
        assert_eq!(a.counts_of(2), Some(&[0, 1, 1][..]));
        assert_eq!(a.counts_of(3), Some(&[0, 1, 0][..]));
        assert_eq!(a.total(), 5);
        let bytes = a.to_bytes();
        let back = LayerHistogram::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn split_pieces_merge_back_exactly() {
        let mut h = LayerHistogram::new(3);
        h.add(&(0..100).collect::<Vec<u128>>(), &(0..100).map(|i| i % 3).collect::<Vec<u32>>()).unwrap();
        let pieces = h.split(7);
        assert_eq!(pieces.iter().map(LayerHistogram::distinct).sum::<usize>(), 100);
        let mut merged = LayerHistogram::new(3);
        for p in &pieces {
            merged.merge(p).unwrap();
        }
        assert_eq!(merged, h);
    }

    #[test]
    fn corrupt_bytes_are_rejected() {
        let mut h = LayerHistogram::new(2);
        h.add(&[5, 9], &[0, 1]).unwrap();
        let bytes = h.to_bytes();
        assert!(LayerHistogram::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(LayerHistogram::from_bytes(&extra).is_err());
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(LayerHistogram::from_bytes(&magic).is_err());
        let mut huge = bytes.clone();
        huge[6..14].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(LayerHistogram::from_bytes(&huge).is_err());
    }

    #[test]
    fn the_wire_format_is_sparse_and_the_dense_one_is_still_read() {
        // At the ceiling every pattern is one sample: 16 + 1 + 1 + 1 bytes.
        let mut h = LayerHistogram::new(10);
        let n = 10_000u32;
        h.add(
            &(0..n).map(|i| u128::from(i) * 0x9e37_79b9_7f4a_7c15).collect::<Vec<_>>(),
            &(0..n).map(|i| i % 10).collect::<Vec<_>>(),
        )
        .unwrap();
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..4], b"IBH2");
        assert_eq!(bytes.len(), 14 + 19 * n as usize);
        assert_eq!(LayerHistogram::from_bytes(&bytes).unwrap(), h);
        // IBH1: every label's count.
        let mut dense = b"IBH1".to_vec();
        dense.extend_from_slice(&3u16.to_le_bytes());
        dense.extend_from_slice(&2u64.to_le_bytes());
        for (hash, counts) in [(4u128, [0u8, 2, 1]), (7, [1, 0, 0])] {
            dense.extend_from_slice(&hash.to_le_bytes());
            dense.extend_from_slice(&counts);
        }
        let back = LayerHistogram::from_bytes(&dense).unwrap();
        assert_eq!((back.counts_of(4), back.counts_of(7)), (Some(&[0, 2, 1][..]), Some(&[1, 0, 0][..])));
        // Sparse entries must name labels in range, ascending, with nonzero counts.
        let entry = |labels: &[(u8, u8)]| {
            let mut b = b"IBH2".to_vec();
            b.extend_from_slice(&3u16.to_le_bytes());
            b.extend_from_slice(&1u64.to_le_bytes());
            b.extend_from_slice(&9u128.to_le_bytes());
            b.push(labels.len() as u8);
            for &(l, c) in labels {
                b.extend_from_slice(&[l, c]);
            }
            b
        };
        assert!(LayerHistogram::from_bytes(&entry(&[(0, 1), (2, 5)])).is_ok());
        for bad in [&[(2u8, 1u8), (0, 1)][..], &[(3, 1)], &[(1, 0)], &[]] {
            assert!(LayerHistogram::from_bytes(&entry(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_are_checked() {
        let mut h = LayerHistogram::new(2);
        assert!(matches!(h.add(&[1], &[2]), Err(MeasureError::LabelRange { .. })));
        assert!(matches!(h.add(&[1, 2], &[0]), Err(MeasureError::LabelCount { .. })));
        assert!(h.merge(&LayerHistogram::new(3)).is_err());
    }
}

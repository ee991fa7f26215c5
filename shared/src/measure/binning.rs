//! `T = floor(h / bin_size)` over a whole flattened layer, and the pattern hash.
//!
//! Speed matters here: one paper layer is 10,000 x 9,408 activations, binned at every
//! measured epoch for both splits. `../shared/perf-notes.md` measured the portable x86_64
//! target (no SSE4.1) at 0.33 GB/s because `f64::floor` becomes a libm call, against
//! 4 GB/s with AVX2. So the kernel is compiled twice, and the AVX2 copy is chosen at run
//! time; the portable copy stays the reference the tests compare against.
//!
//! Codes of a row are hashed as i8 bytes when every code fits (tanh layers at 0.67 give
//! -2..1), and otherwise as i64 with a different seed. The choice depends only on the codes,
//! so equal patterns always hash equally, whichever path produced them.

use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::MeasureError;

const NARROW_SEED: u64 = 0x1b5e_e901;
const WIDE_SEED: u64 = 0x1b5e_e902;

/// An activation value: f32 from the network, or f64 from a user's npy file. Binning
/// always happens in f64, so f64 input is binned exactly as given.
pub trait Activation: Copy + Into<f64> + Send + Sync {}
impl Activation for f32 {}
impl Activation for f64 {}

/// A validated bin size (positive and finite).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct BinSize(f64);

impl BinSize {
    pub fn new(size: f64) -> Result<BinSize, MeasureError> {
        if size.is_finite() && size > 0.0 { Ok(BinSize(size)) } else { Err(MeasureError::BadBinSize(size)) }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for BinSize {
    type Error = MeasureError;
    fn try_from(size: f64) -> Result<Self, Self::Error> {
        BinSize::new(size)
    }
}

impl From<BinSize> for f64 {
    fn from(size: BinSize) -> f64 {
        size.0
    }
}

impl std::fmt::Display for BinSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which compiled copy of the kernel to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Baseline x86_64 / any target: the reference.
    Portable,
    /// AVX2 + FMA, chosen when the CPU has them.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }
}

/// Bins rows of activations for a fixed set of bin sizes.
#[derive(Debug, Clone)]
pub struct Binner {
    bin_sizes: Vec<BinSize>,
    kernel: Kernel,
}

impl Binner {
    pub fn new(bin_sizes: Vec<BinSize>) -> Binner {
        Binner { bin_sizes, kernel: Kernel::detect() }
    }

    /// The same binner forced onto one kernel (tests and benchmarks).
    pub fn with_kernel(bin_sizes: Vec<BinSize>, kernel: Kernel) -> Binner {
        Binner { bin_sizes, kernel }
    }

    pub fn bin_sizes(&self) -> &[BinSize] {
        &self.bin_sizes
    }

    /// Pattern hashes of every row of `batch` (`features` values per row), for every bin size:
    /// `out[b][row]`. Rows are processed in parallel; each row is read from memory once and
    /// binned for all sizes while it is in cache.
    pub fn hash_rows<T: Activation>(&self, batch: &[T], features: usize) -> Result<Vec<Vec<u128>>, MeasureError> {
        use rayon::prelude::*;
        if features == 0 || !batch.len().is_multiple_of(features) {
            return Err(MeasureError::Shape { len: batch.len(), features });
        }
        let rows = batch.len() / features;
        let n_bins = self.bin_sizes.len();
        let mut flat = vec![0u128; rows * n_bins];
        // Chunks of rows keep the scratch buffers per task, not per row.
        let rows_per_task = (rows / (4 * rayon::current_num_threads()).max(1)).clamp(1, 256);
        flat.par_chunks_mut(rows_per_task * n_bins).enumerate().try_for_each(|(chunk, out)| {
            let mut scratch = Scratch::default();
            for (i, row_out) in out.chunks_mut(n_bins).enumerate() {
                let row = chunk * rows_per_task + i;
                let values = &batch[row * features..(row + 1) * features];
                for (b, slot) in row_out.iter_mut().enumerate() {
                    *slot = self.hash_row(values, self.bin_sizes[b], &mut scratch).map_err(|e| match e {
                        MeasureError::NonFinite { feature, value, .. } => {
                            MeasureError::NonFinite { sample: row, feature, value }
                        }
                        other => other,
                    })?;
                }
            }
            Ok(())
        })?;
        Ok((0..n_bins).map(|b| (0..rows).map(|r| flat[r * n_bins + b]).collect()).collect())
    }

    fn hash_row<T: Activation>(&self, values: &[T], bin: BinSize, scratch: &mut Scratch) -> Result<u128, MeasureError> {
        scratch.narrow.resize(values.len(), 0);
        let fits = match self.kernel {
            Kernel::Portable => narrow_codes_portable(values, bin.0, &mut scratch.narrow),
            // SAFETY: `Kernel::Avx2` is only constructed after `is_x86_feature_detected!`
            // said the CPU has AVX2 and FMA (or by a test that checked the same).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { narrow_codes_avx2(values, bin.0, &mut scratch.narrow) },
        };
        if fits {
            // i8 -> bytes without copying: same size and alignment.
            let bytes: &[u8] = bytemuck_i8(&scratch.narrow);
            return Ok(xxh3_128_with_seed(bytes, NARROW_SEED));
        }
        wide_codes(values, bin.0, &mut scratch.wide)?;
        Ok(xxh3_128_with_seed(&scratch.wide, WIDE_SEED))
    }

    /// The codes of one row, as integers (for tests and for the `estimate` reference path).
    pub fn codes<T: Activation>(values: &[T], bin: BinSize) -> Result<Vec<i64>, MeasureError> {
        let mut bytes = Vec::new();
        wide_codes(values, bin.0, &mut bytes)?;
        Ok(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }
}

#[derive(Default)]
struct Scratch {
    narrow: Vec<i8>,
    wide: Vec<u8>,
}

fn bytemuck_i8(codes: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size, alignment and no invalid bit patterns.
    unsafe { std::slice::from_raw_parts(codes.as_ptr().cast::<u8>(), codes.len()) }
}

/// Writes `floor(h / bin)` as i8 and returns whether every value was finite and fit.
/// Branch-free so that it vectorizes; the caller falls back to [`wide_codes`] otherwise,
/// which also finds the non-finite value.
#[inline(always)]
fn narrow_codes_kernel<T: Activation>(values: &[T], bin: f64, out: &mut [i8]) -> bool {
    let mut fits = true;
    for (o, &h) in out.iter_mut().zip(values) {
        let q = (h.into() / bin).floor();
        fits &= in_narrow_range(q);
        *o = to_narrow(q);
    }
    fits
}

#[inline(always)]
fn in_narrow_range(q: f64) -> bool {
    // NaN fails both comparisons, so non-finite values are caught here too.
    (-128.0..=127.0).contains(&q)
}

#[inline(always)]
fn to_narrow(q: f64) -> i8 {
    // Clamping first (max/min drop NaN) makes the conversion a plain vector truncation;
    // a bare `q as i8` saturates element by element and does not vectorize.
    // (`f64::clamp` would keep a NaN, which the conversion below must never see.)
    #[allow(clippy::manual_clamp)]
    let clamped = q.max(-128.0).min(127.0);
    // SAFETY: `clamped` is finite and within i32.
    (unsafe { clamped.to_int_unchecked::<i32>() }) as i8
}

/// What the fast kernel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrow {
    /// Every code is exact and fits in i8.
    Done,
    /// Some value lies so close to a bin edge that the multiply cannot decide it: redo the
    /// row with true division.
    NearEdge,
    /// Some code does not fit in i8 (or a value is not finite).
    Overflow,
}

/// `x = h * (1 / bin)` is within 3.1 * 2^-53 * |x| of the correctly rounded `h / bin`
/// (three roundings), so when `x - d` and `x + d` with `d = 2^-50 * |x|` floor to the same
/// integer, that integer is exactly `floor(h / bin)` as the definition computes it. Division
/// is the slowest vector instruction on Intel cores (half the kernel's time when used
/// directly); a multiply plus two floors is several times faster, and rows with a value
/// within 2^-50 of a bin edge (rare except for crafted inputs) take the division path.
#[inline(always)]
fn narrow_codes_fast_kernel<T: Activation>(values: &[T], bin: f64, out: &mut [i8]) -> Narrow {
    const MARGIN: f64 = 1.0 / (1u64 << 50) as f64;
    let reciprocal = 1.0 / bin;
    let mut fits = true;
    let mut decided = true;
    for (o, &h) in out.iter_mut().zip(values) {
        let x = h.into() * reciprocal;
        let d = x.abs() * MARGIN;
        let lo = (x - d).floor();
        decided &= lo == (x + d).floor();
        fits &= in_narrow_range(lo);
        *o = to_narrow(lo);
    }
    match (fits, decided) {
        (false, _) => Narrow::Overflow,
        (true, false) => Narrow::NearEdge,
        (true, true) => Narrow::Done,
    }
}

fn narrow_codes_portable<T: Activation>(values: &[T], bin: f64, out: &mut [i8]) -> bool {
    narrow_codes_kernel(values, bin, out)
}

/// Software prefetch distance in bytes. With this much compute per byte the hardware
/// prefetcher falls behind (it restarts at every 4 KB page): prefetching every cache line
/// 4 KB ahead took the kernel from 1.4 to 3.9 GB/s per core on this machine kind
/// (docs/benchmarks.md).
#[cfg(target_arch = "x86_64")]
const PREFETCH_BYTES: usize = 4096;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn narrow_codes_avx2<T: Activation>(values: &[T], bin: f64, out: &mut [i8]) -> bool {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    const LINE: usize = 64;
    let block = 4 * LINE / size_of::<T>();
    let mut state = Narrow::Done;
    for (chunk, chunk_out) in values.chunks(block).zip(out.chunks_mut(block)) {
        let base = chunk.as_ptr().cast::<u8>().wrapping_add(PREFETCH_BYTES);
        for line in 0..4 {
            // A prefetch is a hint: it never faults, so running past the row (into the next
            // row of the batch, usually) is harmless; `wrapping_add` keeps the pointer math defined.
            _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line * LINE).cast::<i8>());
        }
        state = match (state, narrow_codes_fast_kernel(chunk, bin, chunk_out)) {
            (Narrow::Overflow, _) | (_, Narrow::Overflow) => Narrow::Overflow,
            (Narrow::NearEdge, _) | (_, Narrow::NearEdge) => Narrow::NearEdge,
            _ => Narrow::Done,
        };
        if state == Narrow::Overflow {
            return false;
        }
    }
    match state {
        Narrow::Done => true,
        Narrow::Overflow => false,
        Narrow::NearEdge => narrow_codes_kernel(values, bin, out),
    }
}

/// The checked path: i64 little-endian codes, with a clear error for non-finite input or a
/// code beyond i64. Never truncates silently.
fn wide_codes<T: Activation>(values: &[T], bin: f64, out: &mut Vec<u8>) -> Result<(), MeasureError> {
    out.clear();
    out.reserve(values.len() * 8);
    for (feature, &h) in values.iter().enumerate() {
        let h: f64 = h.into();
        if !h.is_finite() {
            return Err(MeasureError::NonFinite { sample: 0, feature, value: h });
        }
        let q = (h / bin).floor();
        if !(-9.2e18..=9.2e18).contains(&q) {
            return Err(MeasureError::CodeOverflow { feature, code: q });
        }
        out.extend_from_slice(&(q as i64).to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins(sizes: &[f64]) -> Vec<BinSize> {
        sizes.iter().map(|&s| BinSize::new(s).unwrap()).collect()
    }

    #[test]
    fn codes_follow_the_definition() {
        let bin = BinSize::new(0.67).unwrap();
        let codes = Binner::codes(&[-1.0f32, -0.6, -0.1, 0.0, 0.1, 0.68, 0.99, 1.0], bin).unwrap();
        assert_eq!(codes, vec![-2, -1, -1, 0, 0, 1, 1, 1]);
        // -0.67 as f32 is -0.6700000166..., just past -1 bin widths: code -2; as f64 it is -1.
        assert_eq!(Binner::codes(&[-0.67f32], bin).unwrap(), vec![-2]);
        assert_eq!(Binner::codes(&[-0.67f64], bin).unwrap(), vec![-1]);
        // 0.67 as f32 is slightly below 0.67 as f64: floor in f64 puts it in bin 0.
        assert_eq!(Binner::codes(&[0.67f32], bin).unwrap(), vec![(f64::from(0.67f32) / 0.67).floor() as i64]);
    }

    #[test]
    fn bad_bin_sizes_are_rejected() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(BinSize::new(bad).is_err());
        }
    }

    #[test]
    fn equal_rows_hash_equal_and_different_rows_differ() {
        let binner = Binner::new(bins(&[0.67, 0.1]));
        let batch = [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1, 0.2, 0.6];
        let hashes = binner.hash_rows(&batch, 3).unwrap();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0][0], hashes[0][1]);
        assert_eq!(hashes[0][0], hashes[0][2], "0.6 and 0.3 share bin 0 at 0.67");
        assert_ne!(hashes[1][0], hashes[1][2], "but not at 0.1");
    }

    #[test]
    fn wide_codes_are_used_when_narrow_overflows() {
        let binner = Binner::new(bins(&[0.001]));
        let hashes = binner.hash_rows(&[1.0, 1.0, 1.0005, 1.0], 2).unwrap();
        assert_eq!(hashes[0][0], hashes[0][1], "1.0005/0.001 floors to 1000 like 1.0");
        let other = binner.hash_rows(&[1.002, 1.0], 2).unwrap();
        assert_ne!(hashes[0][0], other[0][0]);
    }

    #[test]
    fn non_finite_values_are_errors_naming_the_sample() {
        let binner = Binner::new(bins(&[0.67]));
        let err = binner.hash_rows(&[0.0, 0.0, 0.0, f32::NAN], 2).unwrap_err();
        assert!(matches!(err, MeasureError::NonFinite { sample: 1, feature: 1, .. }), "{err:?}");
        assert!(binner.hash_rows(&[f32::INFINITY, 0.0], 2).is_err());
        assert!(matches!(binner.hash_rows(&[0.0; 5], 2), Err(MeasureError::Shape { .. })));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernel_matches_portable_reference() {
        if Kernel::detect() != Kernel::Avx2 {
            return;
        }
        let values: Vec<f32> = (0..97 * 103).map(|i| ((i as f32) * 0.7331).sin() * 1.3).collect();
        let sizes = bins(&[0.67, 0.05, 1e-3]);
        let fast = Binner::with_kernel(sizes.clone(), Kernel::Avx2).hash_rows(&values, 97).unwrap();
        let slow = Binner::with_kernel(sizes, Kernel::Portable).hash_rows(&values, 97).unwrap();
        assert_eq!(fast, slow);
        // Values exactly on bin edges force the division fallback; codes must still agree.
        let edges: Vec<f32> = (-40..40).map(|k| k as f32 * 0.25).collect();
        let sizes = bins(&[0.25, 0.5, 0.125]);
        let fast = Binner::with_kernel(sizes.clone(), Kernel::Avx2).hash_rows(&edges, 1).unwrap();
        let slow = Binner::with_kernel(sizes, Kernel::Portable).hash_rows(&edges, 1).unwrap();
        assert_eq!(fast, slow);
    }
}

//! Identities any implementation of design §1 "Estimator" must satisfy, for every input.

use ibsweep_shared::measure::{BinSize, Binner, CountProfile, Estimate, LayerAccumulator, LayerHistogram};
use proptest::prelude::*;
use std::collections::BTreeMap;

const FEATURES: usize = 6;

/// Rows of tanh-like activations drawn from a small pool, so many rows repeat.
fn samples() -> impl Strategy<Value = (Vec<f32>, Vec<u32>)> {
    (1usize..200).prop_flat_map(|n| {
        let pool = prop::collection::vec(prop::collection::vec(-1.0f32..1.0, FEATURES), 1..12);
        (pool, prop::collection::vec((0usize..1000, 0u32..4), n)).prop_map(|(pool, picks)| {
            let mut values = Vec::new();
            let mut labels = Vec::new();
            for (row, label) in picks {
                values.extend_from_slice(&pool[row % pool.len()]);
                // Imbalanced labels: 0 is most common.
                labels.push(if label == 3 { 1 } else { label.min(label % 2) * 2 });
            }
            (values, labels)
        })
    })
}

fn bins() -> Vec<BinSize> {
    vec![BinSize::new(0.67).unwrap(), BinSize::new(0.1).unwrap()]
}

fn accumulate(values: &[f32], labels: &[u32], chunk: usize) -> Vec<LayerHistogram> {
    let mut acc = LayerAccumulator::new(bins(), 4);
    for (v, l) in values.chunks(chunk * FEATURES).zip(labels.chunks(chunk)) {
        acc.add_batch(v, FEATURES, l).unwrap();
    }
    acc.finish().into_iter().map(|(_, h)| h).collect()
}

/// The definitions written out directly on exact integer patterns: an independent check.
fn reference(values: &[f32], labels: &[u32], bin: BinSize) -> (f64, f64, f64) {
    let mut joint: BTreeMap<(Vec<i64>, u32), f64> = BTreeMap::new();
    let mut patterns: BTreeMap<Vec<i64>, f64> = BTreeMap::new();
    let mut ys: BTreeMap<u32, f64> = BTreeMap::new();
    for (row, &y) in values.chunks(FEATURES).zip(labels) {
        let code = Binner::codes(row, bin).unwrap();
        *joint.entry((code.clone(), y)).or_default() += 1.0;
        *patterns.entry(code).or_default() += 1.0;
        *ys.entry(y).or_default() += 1.0;
    }
    let n = labels.len() as f64;
    let entropy = |counts: &mut dyn Iterator<Item = f64>, total: f64| -> f64 {
        counts.map(|c| -(c / total) * (c / total).log2()).sum()
    };
    let h_t = entropy(&mut patterns.values().copied(), n);
    let h_y = entropy(&mut ys.values().copied(), n);
    let h_t_given_y: f64 = ys
        .iter()
        .map(|(&y, &ny)| (ny / n) * entropy(&mut joint.iter().filter(|((_, l), _)| *l == y).map(|(_, &c)| c), ny))
        .sum();
    (h_t, h_t - h_t_given_y, h_y)
}

proptest! {
    #[test]
    fn independent_of_order_and_chunking((values, labels) in samples(), chunk in 1usize..50, seed in any::<u64>()) {
        let whole = accumulate(&values, &labels, labels.len());
        let chunked = accumulate(&values, &labels, chunk);
        // Shuffle the samples.
        let mut order: Vec<usize> = (0..labels.len()).collect();
        let mut state = seed | 1;
        for i in (1..order.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let shuffled_values: Vec<f32> = order.iter().flat_map(|&i| values[i * FEATURES..(i + 1) * FEATURES].to_vec()).collect();
        let shuffled_labels: Vec<u32> = order.iter().map(|&i| labels[i]).collect();
        let shuffled = accumulate(&shuffled_values, &shuffled_labels, chunk);
        for b in 0..2 {
            prop_assert_eq!(&whole[b], &chunked[b]);
            prop_assert_eq!(whole[b].to_bytes(), shuffled[b].to_bytes());
            let (e1, e2) = (whole[b].estimate().unwrap(), shuffled[b].estimate().unwrap());
            prop_assert!((e1.h_t - e2.h_t).abs() < 1e-12 && (e1.i_yt - e2.i_yt).abs() < 1e-12);
        }
    }

    #[test]
    fn merged_shards_equal_one_pass((values, labels) in samples(), split in 0usize..200) {
        let split = split.min(labels.len());
        let whole = accumulate(&values, &labels, 7);
        let mut left = accumulate(&values[..split * FEATURES], &labels[..split], 7);
        let right = accumulate(&values[split * FEATURES..], &labels[split..], 7);
        for b in 0..2 {
            left[b].merge(&right[b]).unwrap();
            prop_assert_eq!(&left[b], &whole[b]);
        }
    }

    #[test]
    fn bounds_and_reference((values, labels) in samples()) {
        for (b, histogram) in accumulate(&values, &labels, 16).iter().enumerate() {
            let e = histogram.estimate().unwrap();
            let tol = 1e-9;
            prop_assert!(e.i_yt >= -tol && e.i_yt <= e.h_t.min(e.h_y) + tol, "{:?}", e);
            prop_assert!(e.h_t <= (e.n as f64).log2() + tol && e.h_t >= -tol);
            prop_assert_eq!(e.i_xt, e.h_t);
            let (h_t, i_yt, h_y) = reference(&values, &labels, bins()[b]);
            prop_assert!((e.h_t - h_t).abs() < 1e-9 && (e.i_yt - i_yt).abs() < 1e-9 && (e.h_y - h_y).abs() < 1e-9);
            // The stored form (count profile) gives the same numbers.
            let profile = CountProfile::from_histogram(histogram);
            let back = CountProfile::from_bytes(&profile.to_bytes()).unwrap().estimate().unwrap();
            prop_assert!((back.h_t - e.h_t).abs() < 1e-12 && (back.i_yt - e.i_yt).abs() < 1e-12);
            prop_assert_eq!(LayerHistogram::from_bytes(&histogram.to_bytes()).unwrap(), histogram.clone());
        }
    }

    #[test]
    fn corrupt_histogram_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = LayerHistogram::from_bytes(&bytes);
        let _ = CountProfile::from_bytes(&bytes);
    }
}

#[test]
fn all_distinct_and_all_equal() {
    let n = 10_000usize;
    // Every row distinct at bin 0.67: a unique base-4 code per row.
    let mut values = Vec::with_capacity(n * 8);
    for i in 0..n {
        for d in 0..8 {
            values.push(((i >> (2 * d)) & 3) as f32 * 0.67 - 1.3);
        }
    }
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let mut acc = LayerAccumulator::new(vec![BinSize::new(0.67).unwrap()], 10);
    acc.add_batch(&values, 8, &labels).unwrap();
    let e = acc.finish()[0].1.estimate().unwrap();
    assert_eq!(e.distinct, n as u64);
    assert!((e.i_xt - 13.287712379549449).abs() < 1e-12);
    assert!((e.i_yt - e.h_y).abs() < 1e-12);

    let same = vec![0.2f32; n * 8];
    let mut acc = LayerAccumulator::new(vec![BinSize::new(0.67).unwrap()], 10);
    acc.add_batch(&same, 8, &labels).unwrap();
    let e: Estimate = acc.finish()[0].1.estimate().unwrap();
    assert_eq!(e.distinct, 1);
    assert!(e.i_xt.abs() < 1e-12 && e.i_yt.abs() < 1e-12);
}

//! Any bytes as a histogram piece or a count profile: decoded or refused, never a panic;
//! what decodes round-trips and estimates without overflow.
#![no_main]

use ibsweep_shared::measure::{CountProfile, LayerHistogram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = LayerHistogram::from_bytes(data) {
        assert_eq!(LayerHistogram::from_bytes(&h.to_bytes()).unwrap(), h);
        let _ = h.estimate();
        let mut merged = h.clone();
        let _ = merged.merge(&h);
        let _ = CountProfile::from_histogram(&h).estimate();
    }
    if let Ok(p) = CountProfile::from_bytes(data) {
        let _ = p.estimate();
    }
});

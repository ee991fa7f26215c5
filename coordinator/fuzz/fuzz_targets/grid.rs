//! Any text as a grid file: parsed or refused with a located error, never a panic, and
//! never an allocation in proportion to a number in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(grid) = ibsweep_shared::grid::Grid::parse("fuzz.yaml", text) {
        // A parsed grid's points must all be computable.
        let n = grid.index_len().min(64);
        for i in 0..n {
            if let Some(point) = grid.point(i) {
                let spec = point.expect("a parsed grid's points are valid");
                spec.validate().expect("a parsed grid's points validate");
                let _ = spec.layers();
            }
        }
    }
});

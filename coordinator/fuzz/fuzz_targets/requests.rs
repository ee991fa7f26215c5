//! Any bytes as one request message of either service, into the coordinator's handlers
//! (see `ibsweep_coordinator::harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ibsweep_coordinator::harness::drive(data));

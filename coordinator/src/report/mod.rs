//! What users read after a sweep: information planes and MI paths ([`plot`]) and the
//! reproduction's comparison tables against the paper ([`reproduction`]).
//!
//! Both work on result rows alone (from the coordinator or a CSV file), so the CLI and the
//! reproduction example use them and the server never does: nothing under `service`,
//! `scheduler` or `store` may import this module.

pub mod plot;
pub mod reproduction;

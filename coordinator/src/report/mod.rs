//! What users read after a sweep: information planes and MI paths ([`plot`]), the
//! reproduction's comparison tables against the paper ([`reproduction`]) and the
//! comparison of estimators on its Fig. 4 and Fig. 7 grids ([`estimators`]).
//!
//! Both work on result rows alone (from the coordinator or a CSV file), so the CLI and the
//! reproduction example use them and the server never does: nothing under `service`,
//! `scheduler` or `store` may import this module.

pub mod estimators;
pub mod plot;
pub mod reproduction;

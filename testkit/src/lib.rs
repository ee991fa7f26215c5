//! The one place tests and benches get their fixtures from, so a fixture is fixed once.
//!
//! - [`Rng`]: a seeded generator for schedules and data that must be reproducible from a
//!   printed seed, without pulling `rand` into every test.
//! - [`free_port`] and [`closed_addr`]: loopback addresses for servers and for "nothing
//!   listens here".
//! - [`GridBuilder`]: grid files for tests, starting from the smallest job that exercises the
//!   whole pipeline; tests say only what they vary.
//! - [`process`]: the real binaries as child processes (coordinator, worker, client
//!   commands), killed when dropped.
//! - [`in_process`]: a coordinator's gRPC server on an ephemeral port inside the test's
//!   runtime, over any store and clock.
//!
//! - [`measurement`]: the key of one test-split histogram at the paper's bin size.
//!
//! A dev-dependency only: nothing here is part of the product.

mod grid;
pub mod in_process;
pub mod process;
mod rng;

pub use grid::GridBuilder;
pub use rng::Rng;

/// A loopback port that was free a moment ago (bound, read, released). A server started on
/// it right away gets it in practice; tests that restart a server keep reusing it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback address where nothing listens: a client pointed at it must fail to connect.
pub fn closed_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The key of one histogram on the test split at bin 0.67, with fixed loss and accuracy:
/// what tests that build rows or chunks by hand vary is only epoch and layer.
pub fn measurement(epoch: u32, layer: u32, layer_name: &str) -> ibsweep_shared::results::Measurement {
    ibsweep_shared::results::Measurement {
        epoch,
        split: ibsweep_shared::job::Split::Test,
        layer,
        layer_name: layer_name.into(),
        bin_size: 0.67,
        loss: 1.0,
        accuracy: 0.5,
    }
}

//! Test kit for the pool crates.
//!
//! - [`mock`]: a [`pool_core::Manager`] without a database, with scripted faults
//!   (connects that fail, hang or panic, recycles that fail, slow operations,
//!   connections killed server-side) and counters, so the pool's state machine can be
//!   tested on its own.
//! - [`conformance`]: one generic body of cases every backend runs through its
//!   [`conformance::Backend`] implementation; `cargo xtask conformance` gathers the
//!   results of every backend into a matrix.
//! - [`proxy`]: a TCP fault proxy to put between a pool and its server: latency,
//!   blackhole, reset, refusal, cut after N bytes, and heal, while the test runs.
//! - [`chaos`]: a steady transactional load through a pool while faults come at random
//!   (through a fault proxy, and server-side kills), then a report of what the pool got
//!   wrong; `cargo xtask chaos` runs it for every backend.
//! - [`servers`]: the PostgreSQL, MariaDB and Redis servers the tests use: the URL from
//!   the environment, else a server on the default local port, else a throwaway one
//!   started from the installed binaries.
//!
//! Drivers use this crate as a dev-dependency only.

pub mod chaos;
pub mod conformance;
pub mod mock;
pub mod proxy;
pub mod servers;

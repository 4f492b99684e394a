//! The chaos run: a steady transactional load through a pool while faults come at
//! random, then an account of what the pool got wrong, if anything.
//!
//! A driver runs it from a `harness = false` test target, `tests/chaos.rs`, whose whole
//! `main` is [`main`] with its [`ChaosBackend`]; `cargo xtask chaos` runs those
//! targets. What one run does ([`run`]):
//!
//! - **Load.** [`ChaosConfig::tasks`] tasks share a pool of [`ChaosConfig::max_size`]
//!   connections, whose manager connects through a fault proxy in front of the server
//!   ([`Backend::manager_at`]). Each task loops: `get`, check the session is clean
//!   ([`Backend::is_clean`]; a dirty one counts as a dirty connection handed out),
//!   write a row with a fresh id in one short transaction
//!   ([`ChaosBackend::write_row`]; the id is acknowledged when that returns `Ok`),
//!   and now and then leave the session dirty ([`Backend::dirty_session`]) before
//!   giving the connection back.
//! - **Faults**, chosen by a seeded random number generator (the seed is printed, and
//!   `--seed` repeats the plan): through the proxy, latency, a blackhole, a reset of
//!   every connection, refused connects and connections cut after a few bytes, each
//!   healed after a short random time; and, independently, server-side kills of one
//!   to three connections the load holds, or of all of them. Faults stop
//!   [`ChaosConfig::calm`] before the end.
//! - **Watching.** The server's count of this backend's connections
//!   ([`Backend::server_connections`]) is polled throughout (a count above
//!   `max_size` must last to count; see the report's `over_limit_briefly`), and the
//!   connections that exist on the client side are counted as the manager opens them. Every `get` is timed, and
//!   so is the driver's work inside it: its waiting is its time outside the connects
//!   and checks it ran, which the pool bounds by `wait_timeout` (`connect_timeout` and
//!   `recycle_timeout` bound those).
//! - **Afterwards.** The load stops and the proxy heals; the pool must show nothing in
//!   use and a size equal to the connections that really exist; after `close` the
//!   server must show none; every acknowledged id must be in the table.
//!
//! The [`Report`] prints per backend: operations done, errors by kind, the highest
//! server-side connection count, leaked slots, dirty connections handed out, waits
//! longer than the wait timeout, acknowledged rows missing, and the time from each
//! heal to the first successful checkout. The run fails if any must-be-zero figure is
//! not zero or the server ever saw more than `max_size` connections
//! ([`Report::failures`]).

mod config;
mod counting;
mod entry;
mod faults;
mod load;
mod monitor;
mod network;
mod recovery;
mod report;
mod run;
mod tally;
mod victims;

pub use config::{ChaosConfig, Command};
pub use entry::main;
pub use recovery::Recovery;
pub use report::{Report, Rows, StatusAfterLoad};
pub use run::run;
pub use tally::ErrorCount;

use crate::conformance::{Backend, ConnectionOf};

/// What the chaos run needs from a database beyond the conformance [`Backend`]: a
/// table of its own, a transactional write, and a way to read back what was written.
///
/// `table` is a fresh name per run made of ASCII letters, digits and `_`, safe to use
/// unquoted as a table name or key. The table methods work outside any pool (through
/// the backend's own connection to the server, not through the fault proxy), so they
/// see the server as it is.
#[async_trait::async_trait]
pub trait ChaosBackend: Backend {
    /// Creates `table`, empty (for redis, a key: whatever holds the run's ids).
    async fn create_table(&self, table: &str) -> Result<(), String>;

    /// Writes a row with `id` into `table` in one short transaction on `conn`, the way
    /// a user of the driver would. `Ok` means the server committed it: the id is
    /// acknowledged and must be in the table at the end.
    async fn write_row(
        &self,
        conn: &mut ConnectionOf<Self>,
        table: &str,
        id: u64,
    ) -> Result<(), String>;

    /// Every id in `table`.
    async fn row_ids(&self, table: &str) -> Result<Vec<u64>, String>;

    /// Drops `table`.
    async fn drop_table(&self, table: &str) -> Result<(), String>;

    /// Kills connection `server_id` as [`Backend::kill`] does, but only if it is one of
    /// this backend's pools' connections: the run may ask for an id whose connection
    /// a fault already ended, and a server that reuses ids (postgres's process ids)
    /// may have given it to somebody else's connection since. The default is
    /// [`Backend::kill`], right for servers that never reuse an id.
    async fn kill_own(&self, server_id: u64) -> Result<(), String> {
        self.kill(server_id).await
    }
}

//! The conformance suite: one generic body of cases, run against every backend.
//!
//! A driver implements [`Backend`] for its database in its own `tests/conformance.rs`,
//! a test target with `harness = false` whose whole `main` is [`run_suite`]:
//!
//! ```no_run
//! fn main() {
//!     pool_testkit::conformance::run_suite(pool_testkit::mock::MockBackend::new());
//! }
//! ```
//!
//! Each case builds its own pool from [`Backend::manager`] and checks one behaviour the
//! pool promises, observed from the server's side where it can be (server-side ids,
//! connection counts, kills). The cases, named after what they prove:
//!
//! - `reuses_the_same_server_connection`
//! - `max_size_honoured_server_side_under_concurrency`
//! - `wait_timeout_fires_with_pool_counts`
//! - `dirty_session_is_reset_before_reuse`
//! - `killed_while_idle_is_never_handed_out`
//! - `killed_while_in_use_fails_only_that_user`
//! - `max_lifetime_rotates_connections`
//! - `idle_timeout_rotates_connections`
//! - `min_idle_opens_connections_up_front`
//! - `close_leaves_no_server_connection`
//! - `wrong_credentials_fail_fast_with_the_server_error`
//! - `server_restart_is_recovered_by_itself` (on a server of its own, from
//!   [`Backend::restartable_manager`], which it stops and starts)
//!
//! The network fault cases put a [`FaultProxy`](crate::proxy::FaultProxy) in front of
//! [`Backend::server_address`] and connect through it with [`Backend::manager_at`]:
//!
//! - `blackhole_during_connect_fails_with_the_connect_timeout`
//! - `blackhole_while_idle_times_out_due_checks_and_replaces_them`
//! - `reset_of_every_connection_under_load_fails_only_their_users`
//! - `latency_of_50ms_completes_every_operation_without_a_timeout`
//! - `refused_connects_back_off_and_recover_by_themselves`
//!
//! `cargo xtask conformance` runs every backend's suite and prints them as a matrix.

// The example shows a test target's whole `main`, so the `fn main` is the point.
#![allow(clippy::needless_doctest_main)]

mod cases;
mod runner;

pub use runner::{run_suite, REPORT_ENV};

/// The connection type of a backend's manager.
pub type ConnectionOf<B> = <<B as Backend>::Manager as pool_core::Manager>::Connection;

/// What the suite needs from a database: managers, a round trip, a way to dirty a
/// session and see that it is clean, and a server-side view of the connections.
///
/// Errors are plain strings: the suite only reports them.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The driver's manager.
    type Manager: pool_core::Manager;

    /// Short name in the matrix (`"mock"`, `"postgres"`, ...).
    fn name(&self) -> &'static str;

    /// Words the server's error for wrong credentials contains (for postgres,
    /// `"password authentication failed"`); the pool's error must show them. A
    /// backend may read them from its server at start-up.
    fn wrong_credentials_message(&self) -> String;

    /// A manager for the server under test.
    async fn manager(&self) -> Self::Manager;

    /// A manager for the same server whose connects fail because the credentials are
    /// wrong.
    async fn manager_with_wrong_credentials(&self) -> Self::Manager;

    /// One round trip to the server (a `SELECT 1`, a `PING`).
    async fn round_trip(&self, conn: &mut ConnectionOf<Self>) -> Result<(), String>;

    /// Leaves session state behind the way a careless user does (an open transaction,
    /// a session variable), visibly to [`is_clean`](Backend::is_clean).
    async fn dirty_session(&self, conn: &mut ConnectionOf<Self>) -> Result<(), String>;

    /// Whether the session holds none of what [`dirty_session`](Backend::dirty_session)
    /// leaves behind.
    async fn is_clean(&self, conn: &mut ConnectionOf<Self>) -> Result<bool, String>;

    /// The connection's id on the server (a backend pid, a connection id, a client id).
    async fn server_id(&self, conn: &mut ConnectionOf<Self>) -> Result<u64, String>;

    /// Kills connection `server_id` from the server's side, returning once the server
    /// has dropped it.
    async fn kill(&self, server_id: u64) -> Result<(), String>;

    /// How many connections the server has open for the pools this backend's managers
    /// made (not counting any connection the backend uses for its own queries).
    async fn server_connections(&self) -> Result<usize, String>;

    /// A manager for a server of this backend's own that the suite may stop and start: a
    /// throwaway server (never the shared one), created on first use and kept for the run.
    ///
    /// Each case runs on a runtime of its own, so whatever keeps that server must not
    /// be tied to the runtime of the case that created it.
    async fn restartable_manager(&self) -> Result<Self::Manager, String>;

    /// Stops that server: every connection to it dies, new connects are refused.
    /// Returns once that holds.
    async fn stop_restartable(&self) -> Result<(), String>;

    /// Starts it again on the same address, returning once it accepts connections.
    async fn start_restartable(&self) -> Result<(), String>;

    /// Why `case` cannot hold for this backend, or `None` when it must pass.
    ///
    /// A case named here is not run; the matrix shows it as `n/a` with this reason
    /// (a transaction pooler cannot keep session state across transactions, say).
    /// Nothing is dropped silently: every reason is printed.
    fn not_applicable(&self, case: &str) -> Option<String> {
        let _ = case;
        None
    }

    /// The TCP address the server under test listens on, for the fault cases to put a
    /// fault proxy in front of.
    fn server_address(&self) -> Result<std::net::SocketAddr, String> {
        Err(format!("the {} backend has no TCP address", self.name()))
    }

    /// A manager like [`manager`](Backend::manager) (same credentials, database and
    /// client name, so [`server_connections`](Backend::server_connections) counts its
    /// connections) that connects to `address` instead: the fault proxy's.
    async fn manager_at(&self, address: std::net::SocketAddr) -> Result<Self::Manager, String> {
        Err(format!(
            "the {} backend cannot connect through {address}",
            self.name()
        ))
    }
}

//! Named or unnamed statements: how queries reach the server, and what a transaction
//! pooler in between changes.

use std::fmt;
use std::str::FromStr;

/// The session reset run before a dirty connection is handed out again in
/// [`StatementMode::Unnamed`], behind a transaction pooler: end the transaction the
/// last user left open, nothing more.
///
/// Behind a transaction pooler (PgBouncer with `pool_mode = transaction`, and the
/// poolers that work like it) a client holds a server connection only from the start
/// of a transaction to its end; between transactions it holds none. So the only state
/// a client owns is its open transaction, which pins a server connection until it
/// ends: `ROLLBACK` frees it, and it is valid there (outside a transaction it is a
/// warning). What [`RESET_QUERY`](crate::RESET_QUERY) does besides would run on
/// whichever server connection the pooler picks, a session other clients use and this
/// one does not own, and `RESET ALL` (like `DISCARD ALL`) also resets the parameters
/// the pooler keeps per client (PgBouncer restores `application_name`,
/// `client_encoding`, `DateStyle`, `TimeZone` and `standard_conforming_strings` for
/// each client on every server connection it lends it): after it, PgBouncer records
/// the server's defaults as the client's own, and the connection has lost its
/// `application_name`.
pub const TRANSACTION_POOLER_RESET_QUERY: &str = "ROLLBACK";

/// How [`PgConnection`](crate::PgConnection)'s `query`, `query_one`, `query_opt` and
/// `execute` send a statement given as SQL text, and what the pool resets.
///
/// Use [`Named`](Self::Named) (the default) when the pool talks to PostgreSQL itself or
/// through a session pooler. Use [`Unnamed`](Self::Unnamed) behind a *transaction*
/// pooler: PgBouncer with `pool_mode = transaction` before 1.21, or later with
/// `max_prepared_statements = 0` (its default before 1.24), and poolers that work like
/// it. There, consecutive requests of one client may go to different server
/// connections, and a statement prepared on one is missing on the next: through
/// PgBouncer 1.18 in transaction mode, 20 concurrent clients running 50 `query()`
/// calls each in named mode saw 823 to 854 of the 1,000 fail with
/// `prepared statement "s1" does not exist` (in eight runs), and none in unnamed mode.
///
/// Set it with [`Manager::statement_mode`](crate::Manager::statement_mode), the
/// [`Config`](crate::Config) field `statement_mode`, `{prefix}STATEMENT_MODE` in the
/// environment, or `statement_mode=unnamed` in the connection string
/// (`postgres://app@pgbouncer:6432/orders?statement_mode=unnamed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatementMode {
    /// tokio-postgres's own way: SQL text is prepared as a named statement (`s1`,
    /// `s2`, ...), then bound and executed, then closed: two round trips, and the
    /// server's parameter types. [`PgConnection::prepare_cached`] keeps prepared
    /// statements across checkouts. Sessions are reset with
    /// [`RESET_QUERY`](crate::RESET_QUERY). The default.
    ///
    /// [`PgConnection::prepare_cached`]: crate::PgConnection::prepare_cached
    #[default]
    Named,
    /// For transaction poolers: SQL text is sent as an unnamed statement, parsed,
    /// bound and executed in one round trip (tokio-postgres's `query_typed`), so
    /// nothing outlives the request; the parameter types are declared by the client
    /// (see [`PgConnection`](crate::PgConnection#unnamed-statements)).
    /// [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached) caches
    /// nothing. A dirty session is reset with [`TRANSACTION_POOLER_RESET_QUERY`]
    /// (`ROLLBACK`).
    Unnamed,
}

impl StatementMode {
    /// The reset run on a connection returned dirty: [`RESET_QUERY`](crate::RESET_QUERY)
    /// in named mode, [`TRANSACTION_POOLER_RESET_QUERY`] in unnamed mode.
    pub fn reset_query(self) -> &'static str {
        match self {
            StatementMode::Named => crate::RESET_QUERY,
            StatementMode::Unnamed => TRANSACTION_POOLER_RESET_QUERY,
        }
    }

    /// Its name in configuration: `named` or `unnamed`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementMode::Named => "named",
            StatementMode::Unnamed => "unnamed",
        }
    }
}

impl fmt::Display for StatementMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StatementMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "named" => Ok(StatementMode::Named),
            "unnamed" => Ok(StatementMode::Unnamed),
            other => Err(format!(
                "`{other}` is not a statement mode (named, unnamed)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_and_show_their_names() {
        for mode in [StatementMode::Named, StatementMode::Unnamed] {
            assert_eq!(mode.to_string().parse::<StatementMode>(), Ok(mode));
        }
        assert_eq!(" Unnamed ".parse(), Ok(StatementMode::Unnamed));
        let err = "none".parse::<StatementMode>().unwrap_err();
        assert!(err.contains("named, unnamed"), "{err}");
        assert_eq!(StatementMode::default(), StatementMode::Named);
        assert_eq!(StatementMode::Unnamed.reset_query(), "ROLLBACK");
        assert_eq!(StatementMode::Named.reset_query(), crate::RESET_QUERY);
    }
}

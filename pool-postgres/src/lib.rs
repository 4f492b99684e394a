//! A connection pool for PostgreSQL: a [`pool_core`] manager for
//! [`tokio_postgres`] clients.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = std::env::var("POOL_TEST_POSTGRES_URL")
//!     .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
//! let manager = pool_postgres::Manager::from_url(&url)?;
//! let pool = pool_postgres::Pool::builder(manager)
//!     .max_size(8)
//!     .wait_timeout(Duration::from_secs(5))
//!     .build()?;
//! pool.spawn_upkeep(); // lifetimes, idle reaping, min_idle
//!
//! let conn = pool.get().await?; // a `Pooled`, which dereferences to a `PgConnection`
//! let row = conn.query_one("SELECT $1::int + 1", &[&41]).await?;
//! assert_eq!(row.get::<_, i32>(0), 42);
//! drop(conn); // back to the pool
//!
//! // A failed connect names its cause, in the server's words:
//! let wrong = pool_postgres::Manager::from_url("postgres://postgres@127.0.0.1/no_such_db")?;
//! let pool = pool_postgres::Pool::builder(wrong).build()?;
//! let err = pool.get().await.unwrap_err();
//! assert!(err.to_string().contains(r#"database "no_such_db" does not exist"#));
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//! [`Manager::new`] takes tokio-postgres's own [`tokio_postgres::Config`],
//! [`Manager::from_url`] a `postgres://` URL or libpq `key=value` string, and
//! [`Manager::with_tls`] any tokio-postgres TLS connector (with the `rustls` feature,
//! `Manager::with_rustls` takes a `rustls::ClientConfig`). [`Config`] holds the server,
//! the driver's options and the pool's `PoolConfig` in one serde-deserialisable value,
//! also read from the environment ([`Config::from_env`]`("PG")` reads libpq's `PGHOST`,
//! `PGUSER`, ...), and [`Config::create_pool`] builds the pool from it; [`Config::builder`] makes one in code.
//!
//! # Connections
//! The pool holds [`PgConnection`]s: a [`tokio_postgres::Client`] (it dereferences to
//! one) together with the task that drives its socket, which ends when the connection
//! is dropped. A connection whose task ended (the server closed it, the network
//! failed), or on which a query failed because the connection or the server is gone,
//! is discarded when it comes back.
//!
//! # Checks and resets
//! The pool checks a connection before checkout only when a check is due (idle for
//! `check_interval`, returned dirty, or made before another connection was found
//! broken). What a check does is the manager's [`RecycleMode`]: nothing, a round trip
//! (the default), or a full reset every time. A connection that comes back with session
//! state left behind (see [`PgConnection`] for what is detected, and
//! [`PgConnection::mark_dirty`] for the rest) is reset with [`RESET_QUERY`] before it
//! is handed out again.
//!
//! # Behind a transaction pooler (PgBouncer)
//! With PgBouncer in `pool_mode = transaction` (or another pooler that lends a server
//! connection per transaction) set [`StatementMode::Unnamed`]
//! (`?statement_mode=unnamed` in the URL, `statement_mode = "unnamed"` in a
//! [`Config`], [`Manager::statement_mode`] in code). PgBouncer before 1.21 (and later
//! ones with `max_prepared_statements = 0`) does not carry named prepared statements
//! from one server connection to the next, and tokio-postgres prepares one for every
//! `query`: in the default [`StatementMode::Named`] such queries fail with
//! `prepared statement "s1" does not exist`. In unnamed mode [`PgConnection`]'s
//! `query`, `query_one`, `query_opt` and `execute` send each statement unnamed, in one
//! request, declaring parameter types themselves (see
//! [`PgConnection`](PgConnection#unnamed-statements) for the rules and what stays
//! named); `batch_execute` and `simple_query` work in either mode.
//!
//! There a client owns no session between transactions, so the reset of a dirty
//! connection is [`TRANSACTION_POOLER_RESET_QUERY`] (`ROLLBACK`, which ends a
//! transaction left open and frees the server connection it pinned): what
//! [`RESET_QUERY`] does besides would act on a server connection other clients use,
//! and its `RESET ALL` would wipe the parameters PgBouncer keeps for this client, its
//! `application_name` among them. Session state (`SET`, `LISTEN`, session advisory
//! locks, temporary tables, `WITH HOLD` cursors) does not belong to a client of a
//! transaction pooler and is not reset: keep state in transactions (`SET LOCAL`,
//! `pg_advisory_xact_lock`). The check of [`RecycleMode::Verified`] is the same empty
//! query, answered through the pooler.
//!
//! # Errors
//! Connect and check failures are [`Error`]s keeping tokio-postgres's error as their
//! source; `pool_core::PoolError`'s `Display` shows the whole chain, so a log line
//! reads `cannot connect to postgres://app@db:5432/x: db error: FATAL: database "x"
//! does not exist`. Passwords are never shown: not by [`Manager`]'s `Display` or
//! `Debug`, nor by [`Error`] or [`ConfigError`].
//!
//! # Runtime
//! Connections need tokio: the connection task is spawned with `tokio::spawn`.

mod config;
mod connection;
mod error;
mod manager;
mod param_types;
mod redact;
mod statement;
mod statement_mode;
mod url_options;

pub use config::{Config, ConfigBuilder};
pub use connection::PgConnection;
pub use error::{ConfigError, Error};
pub use manager::{Manager, RecycleMode, RESET_QUERY};
pub use pool_core;
#[cfg(feature = "rustls")]
pub use rustls;
pub use statement::SqlOrStatement;
pub use statement_mode::{StatementMode, TRANSACTION_POOLER_RESET_QUERY};
pub use tokio_postgres;

/// A pool of PostgreSQL connections.
pub type Pool = pool_core::Pool<Manager>;

/// A connection checked out of a [`Pool`]; dereferences to [`PgConnection`] and goes
/// back to the pool when dropped.
pub type Pooled = pool_core::Pooled<Manager>;

/// What [`Pool::get`](pool_core::Pool::get) fails with.
pub type PoolError = pool_core::PoolError<Error>;

/// The workspace README's examples, compiled as doc tests here (this crate sees
/// `pool_core`, `pool_postgres` and, as a dev-dependency, `pool_redis`), so they stay
/// true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

//! A connection pool for MySQL and MariaDB: a [`pool_core`] manager for
//! [`mysql_async`] connections (mysql_async's own `Pool` is not used).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = std::env::var("POOL_TEST_MYSQL_URL")
//!     .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
//! let manager = pool_mysql::Manager::from_url(&url)?;
//! let pool = pool_mysql::Pool::builder(manager)
//!     .max_size(8)
//!     .wait_timeout(Duration::from_secs(5))
//!     .build()?;
//! pool.spawn_upkeep(); // lifetimes, idle reaping, min_idle
//!
//! let mut conn = pool.get().await?; // a `Pooled`, which dereferences to a `MysqlConnection`
//! let answer: Option<i64> = conn.exec_first("SELECT ? + 1", (41,)).await?;
//! assert_eq!(answer, Some(42));
//! drop(conn); // back to the pool
//!
//! // A failed connect names its cause, in the server's words:
//! let wrong = pool_mysql::Manager::from_url("mysql://root@127.0.0.1:3306/no_such_db")?;
//! let pool = pool_mysql::Pool::builder(wrong).build()?;
//! let err = pool.get().await.unwrap_err();
//! assert!(err.to_string().contains("Unknown database 'no_such_db'"), "{err}");
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//! [`Manager::new`] takes mysql_async's own [`mysql_async::Opts`] (or an
//! `OptsBuilder`), and [`Manager::from_url`] a `mysql://` URL. [`Config`] holds the
//! server, the driver's options and the pool's `PoolConfig` in one
//! serde-deserialisable value, also read from the environment
//! ([`Config::from_env`]`("MYSQL_")` reads `MYSQL_HOST`, `MYSQL_USER`, ...), and
//! [`Config::create_pool`] builds the pool from it; [`Config::builder`] makes one in
//! code.
//!
//! # Connections
//! The pool holds [`MysqlConnection`]s, which dereference to [`mysql_async::Conn`]. A
//! connection that mysql_async has closed, on which a query failed because the
//! connection or the server is gone, or whose call was cancelled mid-reply is
//! discarded when it comes back.
//!
//! # Checks and resets
//! The pool checks a connection before checkout only when a check is due (idle for
//! `check_interval`, returned dirty, or made before another connection was found
//! broken). What a check does is the manager's [`RecycleMode`]: nothing, a `COM_PING`
//! round trip (the default), or a full reset every time. A connection that comes back
//! with session state left behind (an open transaction, which the server's status
//! flags show; see [`MysqlConnection`] for the rest, and
//! [`MysqlConnection::mark_dirty`]) is reset with `COM_RESET_CONNECTION` before it is
//! handed out again (see [`Manager`] for the whole reset).
//!
//! # Errors
//! Connect and check failures are [`Error`]s keeping mysql_async's error; a connect
//! failure also says in short what went wrong ([`ConnectFailure`]: access denied,
//! unknown database, refused, unreachable...). `pool_core::PoolError`'s `Display`
//! shows the whole chain, so a log line reads `cannot connect to
//! mysql://app@db:3306/x: unknown database: ERROR 1049 (42000): Unknown database 'x'`.
//! A URL that cannot be used is a [`ConfigError`]. Passwords are never shown: not by
//! [`Manager`]'s `Display` or `Debug`, nor by [`Config`]'s `Debug`, [`Error`] or
//! [`ConfigError`].
//!
//! # Runtime
//! Connections need tokio: mysql_async's sockets are tokio's.

mod config;
mod connection;
mod error;
mod manager;
mod redact;

pub use config::{Config, ConfigBuilder};
pub use connection::MysqlConnection;
pub use error::{ConfigError, ConnectFailure, Error};
pub use manager::{Manager, RecycleMode};
pub use mysql_async;
pub use pool_core;

/// A pool of MySQL or MariaDB connections.
pub type Pool = pool_core::Pool<Manager>;

/// A connection checked out of a [`Pool`]; dereferences to [`MysqlConnection`] and
/// goes back to the pool when dropped.
pub type Pooled = pool_core::Pooled<Manager>;

/// What [`Pool::get`](pool_core::Pool::get) fails with.
pub type PoolError = pool_core::PoolError<Error>;

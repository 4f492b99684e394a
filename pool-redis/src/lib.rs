//! A connection pool for Redis: a [`pool_core`] manager for the [`redis`] crate's
//! async connections, where each pooled connection is one server connection of its own.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use pool_redis::redis::AsyncCommands;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = std::env::var("POOL_TEST_REDIS_URL")
//!     .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
//! let manager = pool_redis::Manager::from_url(&url)?.client_name("docs-example");
//! let pool = pool_redis::Pool::builder(manager)
//!     .max_size(8)
//!     .wait_timeout(Duration::from_secs(5))
//!     .build()?;
//! pool.spawn_upkeep(); // lifetimes, idle reaping, min_idle
//!
//! let mut conn = pool.get().await?; // a `Pooled`, which dereferences to a `RedisConnection`
//! let _: () = conn.set("pool-redis:docs", 41).await?;
//! let n: i64 = conn.incr("pool-redis:docs", 1).await?;
//! assert_eq!(n, 42);
//!
//! // A transaction of its own: MULTI/EXEC on this connection only.
//! let (a, b): (i64, i64) = pool_redis::redis::pipe()
//!     .atomic()
//!     .incr("pool-redis:docs", 1)
//!     .incr("pool-redis:docs", 1)
//!     .query_async(&mut *conn)
//!     .await?;
//! assert_eq!((a, b), (43, 44));
//! drop(conn); // back to the pool
//!
//! // A failed connect names its cause:
//! let nobody = pool_redis::Manager::from_url("redis://127.0.0.1:1")?;
//! let pool = pool_redis::Pool::builder(nobody).build()?;
//! let err = pool.get().await.unwrap_err();
//! assert!(err.to_string().contains("connection refused"), "{err}");
//! # Ok(())
//! # }
//! ```
//!
//! # One server connection per pooled connection
//! The redis crate's usual connection, [`redis::aio::MultiplexedConnection`], is meant
//! to be shared: its clones all send on one socket, so one connection serves a whole
//! program. That is the right choice for plain commands (`GET`, `SET`, pipelines,
//! atomic `pipe().atomic()` transactions, scripts): no pool is needed, and a pool of
//! multiplexed connections only adds sockets.
//!
//! It is the wrong choice for anything that puts *the connection* into a state:
//! `MULTI` sent command by command, `WATCH`, `SELECT`, blocking commands (`BLPOP`,
//! `XREAD BLOCK`, which stall every other user of the socket for as long as they
//! block), `SUBSCRIBE`, `CLIENT TRACKING`. Every clone would share that state. This
//! crate opens a separate socket for each pooled connection (its own `CLIENT ID` on
//! the server) and hands it to one user at a time, so those commands are safe, and
//! resets what a user leaves behind before the next one gets it. Use the pool for
//! those; for plain commands at high rates a single shared multiplexed connection
//! (or a small pool of them) does better.
//!
//! Each [`RedisConnection`] still wraps a `MultiplexedConnection` (the redis crate's
//! only async connection in its 1.x line), opened by this crate on its own socket, and
//! implements [`redis::aio::ConnectionLike`], so every [`redis::AsyncCommands`] method
//! works on it and `query_async(&mut *conn)` takes it. Don't clone the inner connection
//! to keep it past the checkout: the socket closes with the pooled connection (over
//! TLS, when the last clone is dropped).
//!
//! # Configuration
//! [`Manager::new`] takes the redis crate's own [`redis::ConnectionInfo`] and
//! [`Manager::from_url`] a `redis://`, `rediss://` (with the `tls` feature) or
//! `unix://` URL. [`Config`] holds the server, the driver's options and the pool's
//! `PoolConfig` in one serde-deserialisable value, also read from the environment
//! ([`Config::from_env`]`("REDIS_")` reads `REDIS_URL`, `REDIS_HOST`, ...), and
//! [`Config::create_pool`] builds the pool from it; [`Config::builder`] makes one in
//! code.
//!
//! # Checks and resets
//! The pool checks a connection before checkout only when a check is due (idle for
//! `check_interval`, returned dirty, or made before another connection was found
//! broken): a `PING`. A connection returned with session state left behind (inside
//! `MULTI`, with `WATCH`ed keys, another database `SELECT`ed, subscribed, in client
//! tracking, a cancelled command: see [`RedisConnection`]) is reset with `RESET` and
//! its configured settings (see [`Manager`]), or discarded when no reset can undo it.
//!
//! # Errors
//! Connect and check failures are [`Error`]s naming the cause (`cannot resolve the
//! host name`, `connection refused`, `host unreachable`, `timed out`, `authentication
//! failed`) and where, with the underlying error (the server's own words, such as
//! `WRONGPASS invalid username-password pair`) as their source;
//! `pool_core::PoolError`'s `Display` shows the whole chain. A URL that cannot be used
//! is a [`ConfigError`] naming the problem. Passwords are never shown: not by
//! [`Manager`]'s `Display` or `Debug`, nor by [`Config`]'s `Debug`, nor by any error.
//!
//! # TLS
//! With the `tls` feature, `rediss://` URLs (and [`Config::tls`]) connect through
//! rustls with the ring provider and the system's root certificates;
//! `Manager::with_tls_certificates` trusts a root certificate of your own instead (and
//! takes a client certificate for mutual TLS). Over TLS the redis crate opens and
//! drives the socket, so a connection whose socket the server closed is found by the
//! next check or command rather than at once.
//!
//! # Redis Cluster
//! [`ClusterManager`] pools the redis crate's cluster connections, configured with the
//! cluster's seed nodes: a [`ClusterPool`] hands out [`RedisClusterConnection`]s, each
//! a connection to every node that sends each command to the node serving its key.
//! Checks, resets and errors work as above, on every node; see the [`cluster`] module.
//!
//! # Runtime
//! Connections need tokio: the task driving each socket is spawned with
//! `tokio::spawn`.

pub mod cluster;
mod config;
mod connection;
mod env;
mod error;
mod manager;
mod redact;
mod reset;
mod session;
mod usage;

pub use cluster::{ClusterConfig, ClusterConfigBuilder, ClusterManager, RedisClusterConnection};
pub use config::{Config, ConfigBuilder, Protocol};
pub use connection::RedisConnection;
pub use error::{ConfigError, Error};
pub use manager::Manager;
pub use pool_core;
pub use redis;

/// A pool of Redis connections.
pub type Pool = pool_core::Pool<Manager>;

/// A connection checked out of a [`Pool`]; dereferences to [`RedisConnection`] and goes
/// back to the pool when dropped.
pub type Pooled = pool_core::Pooled<Manager>;

/// What [`Pool::get`](pool_core::Pool::get) (and [`ClusterPool`]'s) fails with.
pub type PoolError = pool_core::PoolError<Error>;

/// A pool of Redis Cluster connections (see [`cluster`]).
pub type ClusterPool = pool_core::Pool<ClusterManager>;

/// A connection checked out of a [`ClusterPool`]; dereferences to
/// [`RedisClusterConnection`] and goes back to the pool when dropped.
pub type ClusterPooled = pool_core::Pooled<ClusterManager>;

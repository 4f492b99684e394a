//! A runtime-agnostic async connection pool: the checkout/return state machine that the
//! `pool-postgres`, `pool-mysql` and `pool-redis` drivers build on.
//!
//! ```
//! use pool_core::{ConnectionInfo, Manager, Pool};
//! use std::time::Duration;
//!
//! /// A stand-in for a database client: a driver crate provides the real one.
//! struct Counter;
//!
//! #[derive(Debug)]
//! struct Never;
//! impl std::fmt::Display for Never {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("never")
//!     }
//! }
//! impl std::error::Error for Never {}
//!
//! #[async_trait::async_trait]
//! impl Manager for Counter {
//!     type Connection = u64;
//!     type Error = Never;
//!     async fn connect(&self) -> Result<u64, Never> {
//!         Ok(0)
//!     }
//!     async fn recycle(&self, _conn: &mut u64, _info: &ConnectionInfo) -> Result<(), Never> {
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(Counter)
//!     .max_size(4)
//!     .wait_timeout(Duration::from_secs(2))
//!     .build()?;
//! pool.spawn_upkeep(); // lifetimes, idle reaping, min_idle
//!
//! let mut conn = pool.get().await?;
//! *conn += 1; // use it as the connection it dereferences to
//! drop(conn); // back to the pool
//!
//! let again = pool.get().await?;
//! assert_eq!(*again, 1, "the same connection was reused");
//! assert_eq!(pool.status().in_use, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What the pool guarantees
//! - **Never more than `max_size` connections**, counting those being opened.
//! - **First come, first served**: waiters are served in arrival order, and a returned
//!   connection goes straight to the first waiter.
//! - **Cancel safety**: dropping a `get` future at any await point (waiting in line,
//!   opening a connection, checking one) gives back what it held: its place, a
//!   connection handed to it, or the room for the one it was opening. The room a
//!   connection takes is owned by exactly one guard at a time, so no path leaks it.
//! - **Separate timeouts**: `wait_timeout` bounds waiting for a connection to come free,
//!   `connect_timeout` each connect, `recycle_timeout` each check.
//! - **The real error**: a failed connect is [`PoolError::Backend`] with the driver's
//!   own error, never a timeout; while connects keep failing the pool backs off
//!   (`connect_backoff` doubling up to `connect_backoff_max`) and callers that nothing
//!   could serve fail at once with [`PoolError::Unavailable`] carrying the last error.
//!   The first connect that succeeds ends the back-off: the pool recovers by itself.
//! - **Checks only when due**: a connection is checked ([`Manager::recycle`]) before
//!   checkout only if it sat idle for `check_interval`, came back dirty, or was last
//!   checked before another connection was found broken (so a server restart is
//!   noticed once by the pool, not once per user).
//! - **Lifetimes with jitter**: each connection expires at `max_lifetime` less a random
//!   tenth of it, so connections opened together do not all close together.
//! - **Nothing dirty handed out**: a connection returned dirty (the manager's
//!   [`ReturnState::Dirty`], or dropped while its holder panicked) is reset before the
//!   next checkout; one returned broken is closed.
//! - **Panics do not poison**: no lock is held while driver or hook code runs; a panic
//!   there unwinds through guards that free the connection's room. A `metrics`
//!   recorder that panics loses that measurement and nothing else.
//! - **No caller waits out a connect for nothing**: a caller opening a connection also
//!   keeps its place in line; if a connection comes back first it takes that one, and
//!   its connect finishes into the pool (with tokio; elsewhere it waits for its
//!   connect). In a burst, few connections are opened and nobody waits 100 ms for one.
//! - **No lock for the common checkout**: the connection returned last waits in a
//!   one-connection lock-free cell, and the next checkout takes it from there: one
//!   atomic swap each way instead of a lock and an unlock. The checkout's reference to
//!   the pool waits there with it, so neither side touches the pool's reference count,
//!   which every core shares. Whenever a caller waits in line, the pool is closed, it is
//!   above `max_size` after a `resize`, or its last `Pool` handle is gone, the cell is
//!   barred and returns go through the lock, so no connection hides from a waiter.
//!   (`Reuse::Fifo` and the `metrics` feature never use it.)
//! - **Cheap to wait on**: a waiting caller costs the pool under 200 bytes (its `get`
//!   future, its slot and its entry in line) and no timer of its own: with tokio, one watchdog
//!   task per pool keeps the waiters' deadlines.
//!
//! # Runtimes and upkeep
//! Timers come from [`deadpool_runtime`] ([`Runtime::Tokio1`] with the default `tokio`
//! feature, `Runtime::Smol2` with the `smol` feature). Configuring a timeout without a
//! runtime is a [`BuildError`]. Background upkeep is a plain future,
//! [`Pool::upkeep`], that you run on any executor; [`Pool::spawn_upkeep`] spawns it on
//! tokio.
//!
//! # Time
//! The pool measures ages, lifetimes and idle times on the monotonic clock. Every moment
//! a limit counts from is read precisely where ending early would matter, so no
//! lifetime, idle timeout, leak threshold or wait ends early. `idle_timeout` counts
//! from the first upkeep pass that finds the connection idle; upkeep looks again
//! within a quarter of `idle_timeout` (and a second) of finishing a pass, so an idle
//! connection closes at most that late, plus however long a pass spends resetting
//! dirty connections and opening `min_idle` ones (without upkeep running, none
//! closes). Checkouts and returns read a coarse clock instead (on Linux
//! `CLOCK_MONOTONIC_COARSE`, a fifth of the cost; the precise one with the `metrics`
//! feature): a lifetime may be noticed a few milliseconds late, and a check due after
//! `check_interval` may come a few milliseconds early or late. Tests that pause
//! tokio's time (`tokio::time::pause`) and expect the pool's ages to move with it turn
//! on the `test-util` feature, under which the pool reads tokio's clock:
//!
//! ```toml
//! [dev-dependencies]
//! pool-core = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! The driver crates pass the feature on under the same name.
//!
//! # Observability
//! `tracing` spans `pool.acquire.wait`, `pool.connect` and `pool.recycle`, and events
//! for opened and closed connections (with the reason), connect failures, timeouts and
//! leaks (a connection held past `leak_threshold`, reported once at `WARN` with the
//! file and line of the `get` that took it).
//!
//! With the `metrics` feature the pool records, through the `metrics` facade and with
//! a `pool.name` label, the OpenTelemetry database-client metrics:
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `db.client.connection.count` | gauge, label `state` = `idle` \| `used` | connections by state |
//! | `db.client.connection.idle.max` | gauge | the most idle connections allowed (`max_size`) |
//! | `db.client.connection.idle.min` | gauge | `min_idle` |
//! | `db.client.connection.max` | gauge | `max_size` |
//! | `db.client.connection.pending_requests` | gauge | callers waiting for a connection |
//! | `db.client.connection.timeouts` | counter | timeouts of any kind |
//! | `db.client.connection.create_time` | histogram, seconds | time to open a connection |
//! | `db.client.connection.wait_time` | histogram, seconds | time from `get` to checkout |
//! | `db.client.connection.use_time` | histogram, seconds | time from checkout to return |
//! | `db.client.connection.closes` | counter, label `reason` | connections closed, by reason: `lifetime`, `idle`, `broken`, `reset_failed`, `check_timed_out`, `hook_rejected`, `cancelled`, `resized`, `retain`, `pool_closed` |
//!
//! A wait timeout's error carries the pool's counts and the last connect failure, so
//! the log line alone explains it.

mod builder;
mod clock;
mod config;
mod errors;
mod get;
mod handback;
pub mod hooks;
mod info;
mod leak;
mod manager;
mod metrics;
mod opening;
mod pool;
mod pooled;
pub mod redact;
mod setters;
mod state;
mod sync;
mod upkeep;
mod waiters;
#[cfg(all(feature = "tokio", not(pool_model)))]
mod watchdog;

pub use builder::Builder;
pub use config::{EnvVarError, PoolConfig, Reuse};
pub use deadpool_runtime::Runtime;
pub use errors::{BuildError, CloseError, HookError, PoolError, TimeoutContext, TimeoutKind};
pub use get::Get;
pub use info::{CheckReason, ConnectionInfo, Status};
pub use manager::{Manager, ReturnState};
pub use pool::Pool;
pub use pooled::Pooled;

#[doc(hidden)]
pub use async_trait::async_trait;

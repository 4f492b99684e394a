//! Redis Cluster: a pool of the redis crate's async cluster connections, configured
//! with the cluster's seed nodes.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use pool_redis::redis::AsyncCommands;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One seed is enough; more let the pool start while some are down.
//! let manager = pool_redis::ClusterManager::from_urls([
//!     "redis://127.0.0.1:7000",
//!     "redis://127.0.0.1:7001",
//!     "redis://127.0.0.1:7002",
//! ])?
//! .client_name("docs-example");
//! let pool = pool_redis::ClusterPool::builder(manager)
//!     .max_size(8)
//!     .wait_timeout(Duration::from_secs(5))
//!     .build()?;
//! pool.spawn_upkeep();
//!
//! let mut conn = pool.get().await?; // a `ClusterPooled`: dereferences to a `RedisClusterConnection`
//! // Each command goes to the node that serves its key.
//! let _: () = conn.set("pool-redis:docs:a", 1).await?;
//! let _: () = conn.set("pool-redis:docs:b", 2).await?;
//! // A transaction runs on one node: its keys share a slot through a hash tag.
//! let (x, y): (i64, i64) = pool_redis::redis::pipe()
//!     .atomic()
//!     .incr("{pool-redis:docs}:x", 1)
//!     .incr("{pool-redis:docs}:y", 1)
//!     .query_async(&mut *conn)
//!     .await?;
//! assert_eq!((x, y), (1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run -p pool-redis --example redis_cluster` runs a longer example against a
//! throwaway cluster of three nodes (or the seed nodes given as arguments).
//!
//! # What a pooled cluster connection is
//! A [`RedisClusterConnection`] wraps the redis crate's
//! [`ClusterConnection`](redis::cluster_async::ClusterConnection): a connection to every
//! node of the cluster (a [`MultiplexedConnection`](redis::aio::MultiplexedConnection)
//! each) and the cluster's slot map, so each command is sent to the node serving its
//! key, redirections (`MOVED`, `ASK`) are followed, and a node connection that breaks
//! is reconnected by the redis crate itself. Like a single-node
//! [`RedisConnection`](crate::RedisConnection), a pooled cluster connection is one
//! user's at a time: what its commands leave in the nodes' sessions (`WATCH`, `MULTI`,
//! `CLIENT TRACKING`, a blocking command) is not seen by anyone else, and is reset
//! before the next user. Plain commands at high rates do better on one shared
//! `ClusterConnection` (it multiplexes); use the pool for those that need a session of
//! their own, and to bound how many connections each node sees: `max_size` cluster
//! connections are `max_size` connections on every node.
//!
//! # The session state a cluster connection carries
//! Each node connection has its own session; a command's state stays on the node it
//! was routed to. A `WATCH key` is on the key's node, and a transaction must be an
//! atomic pipeline (`pipe().atomic()`, sent whole to the node of its first key, with
//! keys in one slot) rather than `MULTI` sent on its own, which the redis crate routes
//! to a node at random (where it then queues whatever else lands on that node; an
//! `EXEC` sent on its own may go to another node, so a connection that saw `MULTI` or
//! `WATCH` is reset whatever followed). What the pool resets on every node before
//! reuse: an open `MULTI`, `WATCH`ed keys,
//! subscriptions (RESP3), client tracking, a `CLIENT SETNAME`, `READONLY`, `AUTH` or
//! `HELLO` of the user's own, and the state a cancelled command may have left. Cluster
//! mode has only database 0: `SELECT` other than 0 fails on Redis. What no reset can
//! undo (subscribing on RESP2, `CLIENT REPLY OFF`, a cancelled blocking command) makes
//! the pool discard the connection.
//!
//! Pub/sub needs a connection built with a push sender for its messages, which a pooled
//! connection has not: use the redis crate's `ClusterClientBuilder::push_sender` on a
//! connection of your own for it.
//!
//! # Server-side identity
//! A cluster connection has no single server-side id: it is one `CLIENT ID` on each
//! node, which [`RedisClusterConnection::node_client_ids`] lists by node address, and
//! with [`ClusterManager::client_name`] every one of them carries the same name in
//! `CLIENT LIST`, on every node. So `CLIENT LIST` on any node shows one named
//! connection per pooled cluster connection.
//!
//! # Checks, failures and recovery
//! A check (when one is due) sends `CLIENT ID` to every node; see [`ClusterManager`].
//! When a node closes a connection, the redis crate reconnects it on the next command
//! that needs it and retries that command (within
//! [`ClusterManager::retries`]), so most users see no error; one that still fails with
//! an I/O error makes the pool discard the whole cluster connection on return and open
//! a new one from the seed nodes. When the whole cluster is down, commands fail within
//! their retries, connects fail with each seed's reason, and the pool connects again
//! by itself with back-off once the cluster is back.
//!
//! # Errors
//! A connect that fails says why: [`Error::SeedsFailed`](crate::Error::SeedsFailed)
//! when no seed node could be used (each seed's own reason: `connection refused`,
//! `cannot resolve the host name`, ...), [`Error::Auth`](crate::Error::Auth) with the
//! server's words when the credentials are refused, and
//! [`Error::Handshake`](crate::Error::Handshake) with the redis crate's error when the
//! seeds answer but the cluster connection fails (cluster mode off, slots not
//! covered). Seed URLs that cannot be used, or seeds that disagree on credentials, are
//! a [`ConfigError`](crate::ConfigError) when the manager is made. Passwords are never
//! shown: not by the manager's `Display` (`redis cluster
//! redis://app:***@10.0.0.1:7000,10.0.0.2:7000`) or `Debug`, nor by
//! [`ClusterConfig`]'s `Debug`, nor by any error.
//!
//! # TLS
//! With the `tls` feature, `rediss://` seed URLs connect every node through the redis
//! crate's rustls support with the system's root certificates. (This crate's tests
//! cover TLS against a single server, not a cluster.)

mod config;
mod connection;
mod manager;

pub use config::{ClusterConfig, ClusterConfigBuilder};
pub use connection::RedisClusterConnection;
pub use manager::ClusterManager;

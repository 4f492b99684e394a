//! The pooled cluster connection: one `redis::cluster_async::ClusterConnection` (a
//! connection to every node of the cluster, routing each command to the node that
//! serves its key) and what the pool needs to know about the sessions it holds.

use std::collections::BTreeMap;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisResult, Value};

use crate::session::Session;
use crate::usage::Usage;

/// A Redis Cluster connection held by the pool: a connection to each node of the
/// cluster, never shared with another checkout.
///
/// It implements [`redis::aio::ConnectionLike`], so every [`redis::AsyncCommands`]
/// method works on it and `cmd.query_async(&mut *conn)` and `pipe.query_async(&mut
/// *conn)` take it; each command goes to the node that serves its key (see the
/// [cluster docs](crate::cluster)). It dereferences to the
/// [`ClusterConnection`] it wraps.
///
/// # Sessions
/// Behind it is one server connection per node, each with a session of its own, so
/// what a command leaves behind stays on the node it was routed to: `WATCH key` on the
/// key's node, a `MULTI` sent on its own (it has no key) on a node picked at random.
/// An `EXEC`, `DISCARD` or `UNWATCH` sent on its own may reach another node than the
/// one holding the transaction, so a connection that saw `MULTI` or `WATCH` is reset
/// on return whatever followed.
/// Commands sent through this type (not through the inner connection) are watched
/// exactly as [`RedisConnection`](crate::RedisConnection)'s are, and a connection that
/// comes back with any session state left on any node (`MULTI`, `WATCH`, `CLIENT
/// TRACKING`, `SUBSCRIBE` on RESP3, `CLIENT SETNAME`, `READONLY`, a cancelled command,
/// [`mark_dirty`](Self::mark_dirty)...) is reset on every node before its next
/// checkout. Cluster mode has only database 0, so `SELECT` leaves nothing behind.
///
/// It is discarded instead when no reset can undo what was done (`SUBSCRIBE` on
/// RESP2, `CLIENT REPLY OFF`, `QUIT`, a cancelled blocking command), and when a
/// command failed with an I/O error even after the redis crate's own retries (see
/// [`ClusterManager`](crate::ClusterManager)): the pool then opens a fresh one, which
/// reads the cluster's layout from the seed nodes again.
///
/// Not seen: commands sent through the inner [`ClusterConnection`] (`&mut **conn`, a
/// clone of it). A clone keeps the connections to the nodes open after the pool closed
/// this one: don't keep one past the checkout.
pub struct RedisClusterConnection {
    inner: ClusterConnection,
    /// Each node connection's `CLIENT ID`, by node address, as of the last check.
    node_ids: BTreeMap<String, u64>,
    usage: Usage,
}

impl RedisClusterConnection {
    pub(crate) fn new(inner: ClusterConnection, db: i64, resp3: bool) -> Self {
        RedisClusterConnection {
            inner,
            node_ids: BTreeMap::new(),
            usage: Usage::for_cluster(db, resp3),
        }
    }

    /// The `CLIENT ID` of this connection's connection to each node, by the node's
    /// address (`host:port`, as the cluster announces it), as of its last check or
    /// reset: the server-side identity of a cluster connection. When the redis crate
    /// replaces a node's connection (it reconnects by itself after the node closed
    /// it), the new one shows here after the next check.
    pub fn node_client_ids(&self) -> &BTreeMap<String, u64> {
        &self.node_ids
    }

    pub(crate) fn set_node_ids(&mut self, ids: BTreeMap<String, u64>) {
        self.node_ids = ids;
    }

    /// The inner connection (commands sent through it are not watched).
    pub fn inner(&mut self) -> &mut ClusterConnection {
        &mut self.inner
    }

    /// Tells the pool a node's session may hold state: the connection is reset on every
    /// node before it is handed out again.
    pub fn mark_dirty(&mut self) {
        self.usage.mark_dirty();
    }

    /// Whether the connection will be reset before it is handed out again.
    pub fn is_dirty(&self) -> bool {
        self.usage.is_dirty()
    }

    /// Whether the connection cannot be reused: a command failed with an I/O error, or
    /// a node's session was left in a state no reset undoes (see the type's docs).
    pub fn is_closed(&self) -> bool {
        self.usage.unusable_reason().is_some()
    }

    /// Why the connection cannot be reused, if it cannot (for messages).
    pub(crate) fn closed_reason(&self) -> Option<&'static str> {
        self.usage.unusable_reason()
    }

    pub(crate) fn mark_clean(&mut self) {
        self.usage.mark_clean();
    }

    pub(crate) fn note_error(&mut self, err: &redis::RedisError) {
        self.usage.note_error(err);
    }

    pub(crate) fn session(&self) -> &Session {
        self.usage.session()
    }

    /// [`ClusterConnection::route_command`]: `cmd` to the nodes `routing` names (one
    /// node by address or slot, every primary, every node), watched as every command
    /// sent through this type is.
    pub async fn route_command(&mut self, cmd: Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        let call = self.usage.start([&cmd], false);
        let result = self.inner.route_command(cmd, routing).await;
        self.usage.finish(call, result)
    }

    /// [`ClusterConnection::route_pipeline`]: `pipeline` to one node, watched as every
    /// command sent through this type is.
    pub async fn route_pipeline(
        &mut self,
        pipeline: Pipeline,
        offset: usize,
        count: usize,
        route: SingleNodeRoutingInfo,
    ) -> RedisResult<Vec<Value>> {
        let call = self
            .usage
            .start(pipeline.cmd_iter(), pipeline.is_transaction());
        let result = self
            .inner
            .route_pipeline(pipeline, offset, count, route)
            .await;
        self.usage.finish(call, result)
    }
}

crate::usage::tracked_connection!(RedisClusterConnection, ClusterConnection);

impl std::fmt::Debug for RedisClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterConnection")
            .field("node_client_ids", &self.node_ids)
            .field("closed", &self.is_closed())
            .field("dirty", &self.is_dirty())
            .finish_non_exhaustive()
    }
}

//! The `pool_core::Manager` for the redis crate's async cluster connections.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use pool_core::{ConnectionInfo, ReturnState};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo,
};
use redis::{ConnectionAddr, RedisError, Value};

use super::connection::RedisClusterConnection;
use crate::error::{is_auth_failure, ConfigError, Error};
use crate::manager::{parse_url, redis_problem};
use crate::reset::{read_reset_replies, ResetReplies, SessionSetup};

/// How often the redis crate retries a command (after a redirection, a lost node
/// connection, `TRYAGAIN`...) before the error reaches the caller, by default.
const DEFAULT_RETRIES: u32 = 3;
/// The shortest wait before a retry, by default.
pub(super) const DEFAULT_MIN_RETRY_WAIT: Duration = Duration::from_millis(10);
/// The longest wait before a retry, by default.
pub(super) const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_millis(100);

/// Opens, checks and resets [`RedisClusterConnection`]s for a
/// [`ClusterPool`](crate::ClusterPool).
///
/// Configured with the cluster's seed nodes: the nodes a connection first asks for the
/// cluster's layout (`CLUSTER SLOTS`). One is enough; more let it start while some are
/// down. Every seed must have the same credentials, protocol and TLS. Each
/// [`RedisClusterConnection`] it opens holds a connection to every node of the
/// cluster (see the [cluster docs](crate::cluster)).
///
/// # Opening
/// The redis crate opens the cluster connection (a connection to each seed, the
/// cluster's layout, a connection to every node, each authenticated and on the
/// configured protocol), then this manager names every node connection with
/// `CLIENT SETNAME` when a [`client_name`](Self::client_name) is set and reads each
/// one's `CLIENT ID` ([`RedisClusterConnection::node_client_ids`]). When the redis
/// crate cannot open it, each seed node is tried on its own to say why: no seed
/// reachable ([`Error::SeedsFailed`], with each seed's reason), the credentials refused
/// ([`Error::Auth`], with the server's words), or the seeds answer and the cluster
/// itself failed ([`Error::Handshake`], with the redis crate's error).
///
/// # Checks and resets
/// When a check is due the manager sends `CLIENT ID` to every node: a node whose
/// connection does not answer fails the check (the connection is discarded), and a
/// node whose connection the redis crate replaced since (it reconnects by itself after
/// a node closed its connection) is named again. A connection returned dirty is reset
/// on every node, one pipeline per node: `RESET` and what a fresh connection is
/// configured with (`HELLO 3` on RESP3, `AUTH`, the name), or on a server without
/// `RESET` (before Redis 6.2) `DISCARD`, `UNWATCH`, `CLIENT TRACKING OFF` and the
/// settings; then it is checked as above.
///
/// # Retries
/// The redis crate follows the cluster's redirections (`MOVED`, `ASK`), reconnects a
/// node whose connection broke and retries the command, and retries `TRYAGAIN` after
/// a short wait; each counts as a retry. This manager allows [`retries`](Self::retries)
/// of them (3 by default) with waits between [`retry_wait`](Self::retry_wait) 10 and
/// 100 ms, so that a command whose node is gone fails within a fraction of a second
/// and the pool, not the caller, waits for the cluster. (The redis crate alone allows
/// 16 retries of more than a second each: set that when callers should rather ride
/// out a failover without an error.)
#[derive(Clone)]
pub struct ClusterManager {
    seeds: Vec<redis::ConnectionInfo>,
    client_name: Option<String>,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    retries: u32,
    min_retry_wait: Duration,
    max_retry_wait: Duration,
    target: String,
    /// A node answered `RESET` with "unknown command": use the older commands.
    no_reset: Arc<AtomicBool>,
}

impl ClusterManager {
    /// A manager for the cluster whose seed nodes are `seeds`, the redis crate's own
    /// connection settings (address, credentials, protocol).
    ///
    /// Fails when there is no seed, a seed is a Unix socket (a cluster names its nodes
    /// by host and port), or the seeds differ in credentials, protocol, database or
    /// TLS.
    pub fn new(
        seeds: impl IntoIterator<Item = redis::ConnectionInfo>,
    ) -> Result<Self, ConfigError> {
        let seeds: Vec<redis::ConnectionInfo> = seeds.into_iter().collect();
        if seeds.is_empty() {
            return Err(ConfigError::setting(
                "nodes",
                "nodes",
                "no seed node given: a cluster needs the address of at least one of its nodes",
            ));
        }
        if let Some(seed) = seeds
            .iter()
            .find(|seed| matches!(seed.addr(), ConnectionAddr::Unix(_)))
        {
            return Err(ConfigError::setting(
                "nodes",
                "nodes",
                format!(
                    "seed node {} is a Unix socket: a cluster's nodes are reached by host \
                     and port",
                    crate::redact::describe(seed)
                ),
            ));
        }
        // The redis crate's own checks: the same credentials, protocol, database and
        // TLS on every seed.
        ClusterClientBuilder::new(seeds.clone())
            .build()
            .map_err(|e| ConfigError::setting("nodes", "nodes", redis_problem(&e)))?;
        let target = crate::redact::describe_cluster(&seeds);
        Ok(ClusterManager {
            seeds,
            client_name: None,
            connect_timeout: None,
            response_timeout: None,
            retries: DEFAULT_RETRIES,
            min_retry_wait: DEFAULT_MIN_RETRY_WAIT,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            target,
            no_reset: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A manager for the cluster whose seed nodes are `urls`: `redis://[user][:password@]host:port`
    /// (`rediss://` with the `tls` feature), or plain `host:port`.
    ///
    /// ```
    /// let manager = pool_redis::ClusterManager::from_urls([
    ///     "redis://:secret@10.0.0.1:7000",
    ///     "redis://:secret@10.0.0.2:7000",
    /// ])?;
    /// assert_eq!(
    ///     manager.to_string(),
    ///     "redis cluster redis://:***@10.0.0.1:7000,10.0.0.2:7000"
    /// );
    ///
    /// let err = pool_redis::ClusterManager::from_urls(["10.0.0.1:port"]).unwrap_err();
    /// assert!(err.to_string().contains("invalid port number"), "{err}");
    /// # Ok::<(), pool_redis::ConfigError>(())
    /// ```
    pub fn from_urls<S: AsRef<str>>(
        urls: impl IntoIterator<Item = S>,
    ) -> Result<Self, ConfigError> {
        let seeds = urls
            .into_iter()
            .map(|url| parse_seed(url.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        ClusterManager::new(seeds)
    }

    /// Names every node connection with `CLIENT SETNAME` (shown by `CLIENT LIST` on
    /// each node), again after each reset and on a node connection the redis crate
    /// replaced.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Bounds each node connect (the redis crate's `connection_timeout`, 1 s unless
    /// set); the pool's `connect_timeout` bounds the whole connect too.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// Bounds the wait for every reply, retries included (the redis crate's response
    /// timeout). Off by default, so blocking commands may block; a command that runs
    /// out of time fails and makes the connection dirty.
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// How often a command is retried (after a redirection, a lost node connection,
    /// `TRYAGAIN`) before its error reaches the caller; 3 by default. 0 turns retries
    /// off, redirections included: only for a cluster whose slots never move.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The shortest and longest wait before a retry (10 ms and 100 ms by default); the
    /// wait grows with each retry of a command, at random between the two.
    pub fn retry_wait(mut self, min: Duration, max: Duration) -> Self {
        self.min_retry_wait = min;
        self.max_retry_wait = max.max(min);
        self
    }

    /// The seed nodes' connection settings.
    pub fn seeds(&self) -> &[redis::ConnectionInfo] {
        &self.seeds
    }

    /// The name set by [`client_name`](Self::client_name).
    pub fn get_client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// The settings every node connection shares (credentials, protocol, database).
    fn settings(&self) -> &redis::RedisConnectionInfo {
        self.seeds[0].redis_settings()
    }

    /// The redis crate's client for this configuration.
    fn client(&self) -> Result<ClusterClient, RedisError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut builder = ClusterClientBuilder::new(self.seeds.clone())
            .retries(self.retries)
            .min_retry_wait(millis(self.min_retry_wait))
            .max_retry_wait(millis(self.max_retry_wait));
        if let Some(timeout) = self.connect_timeout {
            builder = builder.connection_timeout(timeout);
        }
        if let Some(timeout) = self.response_timeout {
            builder = builder.response_timeout(timeout);
        }
        builder.build()
    }

    async fn open(&self) -> Result<RedisClusterConnection, Error> {
        let client = self
            .client()
            .map_err(|source| self.handshake_error("cluster client", source))?;
        let inner = match client.get_async_connection().await {
            Ok(inner) => inner,
            Err(cluster_error) => return Err(self.diagnose(cluster_error).await),
        };
        let settings = self.settings();
        let mut conn =
            RedisClusterConnection::new(inner, settings.db(), settings.protocol().supports_resp3());
        if let Some(name) = &self.client_name {
            let mut setname = redis::cmd("CLIENT");
            setname.arg("SETNAME").arg(name);
            let every_node = RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllNodes,
                Some(ResponsePolicy::AllSucceeded),
            ));
            conn.inner()
                .route_command(setname, every_node)
                .await
                .and_then(Value::extract_error)
                .map_err(|e| self.handshake_error("CLIENT SETNAME", e))?;
        }
        let ids = node_client_ids(conn.inner())
            .await
            .map_err(|e| self.handshake_error("CLIENT ID", e))?;
        conn.set_node_ids(ids);
        Ok(conn)
    }

    /// Why the cluster connection could not be opened: each seed node is tried on its
    /// own (a plain connection with the same credentials, closed at once), whose
    /// errors name their cause, unlike the redis crate's summary of them.
    async fn diagnose(&self, cluster_error: RedisError) -> Error {
        let tries = self.seeds.iter().map(|seed| {
            let single = crate::Manager::new(seed.clone())
                .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(1)));
            async move { pool_core::Manager::connect(&single).await.err() }
        });
        // In the seeds' order.
        let mut failures: Vec<Error> = Vec::new();
        let mut answered = false;
        for outcome in join_all(tries).await {
            match outcome {
                Some(error) => failures.push(error),
                None => answered = true,
            }
        }
        if answered || failures.is_empty() {
            // The seeds answer: the cluster itself failed (no slots, cluster mode off,
            // a node of the layout unreachable...).
            tracing::debug!(target = %self.target, error = %cluster_error, "the seed nodes answer but the cluster connection failed");
            return self.handshake_error("cluster setup", cluster_error);
        }
        if failures.iter().all(Error::is_auth) {
            if let Error::Auth { source, .. } = failures.swap_remove(0) {
                return Error::Auth {
                    target: self.target.clone(),
                    source,
                };
            }
        }
        Error::SeedsFailed {
            target: self.target.clone(),
            failures,
        }
    }

    /// A handshake error, named as an authentication failure when it is one.
    fn handshake_error(&self, step: &'static str, source: RedisError) -> Error {
        let target = self.target.clone();
        if is_auth_failure(&source) {
            Error::Auth { target, source }
        } else {
            Error::Handshake {
                target,
                step,
                source,
            }
        }
    }

    /// Checks every node connection with `CLIENT ID`, and names again those the redis
    /// crate replaced since the last check.
    async fn check(&self, conn: &mut RedisClusterConnection) -> Result<(), Error> {
        let ids = match node_client_ids(conn.inner()).await {
            Ok(ids) => ids,
            Err(source) => {
                conn.note_error(&source);
                return Err(Error::Recycle {
                    step: "health check",
                    source,
                });
            }
        };
        if let Some(name) = &self.client_name {
            for (node, id) in &ids {
                if conn.node_client_ids().get(node) == Some(id) {
                    continue;
                }
                let mut setname = redis::cmd("CLIENT");
                setname.arg("SETNAME").arg(name);
                conn.inner()
                    .route_command(setname, RoutingInfo::SingleNode(by_address(node)))
                    .await
                    .and_then(Value::extract_error)
                    .map_err(|source| Error::Recycle {
                        step: "naming a new node connection",
                        source,
                    })?;
            }
        }
        conn.set_node_ids(ids);
        Ok(())
    }

    /// Resets the session on every node the connection knows, one pipeline each.
    async fn reset(&self, conn: &mut RedisClusterConnection) -> Result<(), Error> {
        let setup = SessionSetup::new(self.settings(), self.client_name.as_deref());
        loop {
            let with_reset = !self.no_reset.load(Ordering::Relaxed);
            let (pipe, steps) = setup.reset_pipeline(conn.session(), with_reset)?;
            let cluster: &ClusterConnection = conn;
            let resets = conn.node_client_ids().keys().map(|node| {
                let (mut inner, pipe, count) = (cluster.clone(), pipe.clone(), steps.len());
                let route = by_address(node);
                async move { inner.route_pipeline(pipe, 0, count, route).await }
            });
            let mut no_reset = false;
            for outcome in join_all(resets).await {
                let replies = match outcome {
                    Ok(replies) => replies,
                    Err(source) => {
                        conn.note_error(&source);
                        return Err(Error::Recycle {
                            step: "session reset",
                            source,
                        });
                    }
                };
                match read_reset_replies(&steps, replies) {
                    ResetReplies::Done => {}
                    ResetReplies::NoReset => no_reset = true,
                    ResetReplies::Failed(source) => {
                        return Err(Error::Recycle {
                            step: "session reset",
                            source,
                        })
                    }
                }
            }
            if !no_reset {
                conn.mark_clean();
                return Ok(());
            }
            tracing::debug!(target = %self.target, "a node has no RESET; resetting with the older commands");
            self.no_reset.store(true, Ordering::Relaxed);
        }
    }
}

/// Each node connection's `CLIENT ID`, by node address: one `CLIENT ID` sent to every
/// node the connection knows. A node whose connection broke is reconnected and asked
/// again by the redis crate (within its retries); one still failing fails the whole.
async fn node_client_ids(
    conn: &mut ClusterConnection,
) -> Result<BTreeMap<String, u64>, RedisError> {
    let mut client_id = redis::cmd("CLIENT");
    client_id.arg("ID");
    let reply = conn
        .route_command(
            client_id,
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None)),
        )
        .await?;
    let unexpected = |what: String| {
        RedisError::from((redis::ErrorKind::Client, "unexpected CLIENT ID reply", what))
    };
    let Value::Map(by_node) = reply else {
        return Err(unexpected(format!("{reply:?}")));
    };
    let mut ids = BTreeMap::new();
    for (node, id) in by_node {
        let node = match node {
            Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Value::SimpleString(text) => text,
            other => return Err(unexpected(format!("a node named {other:?}"))),
        };
        let id = match id {
            Value::Int(id) => u64::try_from(id).map_err(|_| unexpected(format!("{node}: {id}")))?,
            Value::ServerError(e) => return Err(e.into()),
            other => return Err(unexpected(format!("{node}: {other:?}"))),
        };
        ids.insert(node, id);
    }
    if ids.is_empty() {
        return Err(RedisError::from((
            redis::ErrorKind::ClusterConnectionNotFound,
            "no node connection answered",
        )));
    }
    Ok(ids)
}

/// Routing to the node at `node` (`host:port`, as the cluster names it).
fn by_address(node: &str) -> SingleNodeRoutingInfo {
    let (host, port) = node.rsplit_once(':').unwrap_or((node, "0"));
    SingleNodeRoutingInfo::ByAddress {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port: port.parse().unwrap_or(0),
    }
}

/// A seed node's settings from a URL or a plain `host:port`.
pub(crate) fn parse_seed(input: &str) -> Result<redis::ConnectionInfo, ConfigError> {
    let trimmed = input.trim();
    if trimmed.contains("://") {
        parse_url(trimmed)
    } else {
        parse_url(&format!("redis://{trimmed}")).map_err(|e| ConfigError::url(input, e.problem()))
    }
}

impl fmt::Display for ClusterManager {
    /// The cluster, by its seed nodes, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)
    }
}

impl fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterManager")
            .field("target", &self.target)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("retries", &self.retries)
            .field("min_retry_wait", &self.min_retry_wait)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl pool_core::Manager for ClusterManager {
    type Connection = RedisClusterConnection;
    type Error = Error;

    async fn connect(&self) -> Result<RedisClusterConnection, Error> {
        // The redis crate spawns the cluster connection's task on the current runtime.
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoTokioRuntime)?;
        self.open().await
    }

    async fn recycle(
        &self,
        conn: &mut RedisClusterConnection,
        info: &ConnectionInfo,
    ) -> Result<(), Error> {
        if let Some(reason) = conn.closed_reason() {
            return Err(Error::Closed { reason });
        }
        if info.needs_reset() || conn.is_dirty() {
            self.reset(conn).await?;
        }
        self.check(conn).await
    }

    fn has_broken(&self, conn: &mut RedisClusterConnection) -> bool {
        conn.is_closed()
    }

    fn target(&self) -> Option<String> {
        Some(self.target.clone())
    }

    fn return_state(&self, conn: &mut RedisClusterConnection) -> ReturnState {
        if conn.is_dirty() {
            ReturnState::Dirty
        } else {
            ReturnState::Clean
        }
    }
}

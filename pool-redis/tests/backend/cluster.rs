//! The redis-cluster conformance backend: the suite's cases on a throwaway Redis Cluster
//! of three masters (`pool_testkit::servers::redis_cluster`), through
//! [`ClusterManager`] (see `conformance_cluster.rs`).
//!
//! # What the server-side view means for a cluster connection
//! A pooled cluster connection holds one connection on every node, each with a
//! `CLIENT ID` of its own on its node. Every connection the suite's pools open is
//! named with a name unique to the run (`CLIENT SETNAME`, set by the manager on every
//! node connection), so:
//!
//! - [`server_id`](Backend::server_id) is the connection's `CLIENT ID` on the node with
//!   the lowest address (`host:port`, compared as text) of those it holds connections
//!   to: a fixed node for each cluster (the restart case has a cluster of its own). It
//!   changes when that node connection is replaced, which is when the server-side
//!   session changed. The ids of the connection's other node connections are
//!   remembered with it, for `kill`.
//! - [`kill`](Backend::kill) kills every node connection of the cluster connection
//!   whose id that is (`CLIENT KILL ID` on each node), returning once no node lists
//!   them.
//! - [`server_connections`](Backend::server_connections) is the largest number of
//!   connections with the run's name on any one node: each pooled cluster connection
//!   has at most one connection per node, so that is the number of cluster connections
//!   the server side still sees.
//!
//! Cases that cannot hold on a cluster are listed, with the reason, in
//! [`NOT_APPLICABLE`] and [`FAULT_PROXY_CASES`]; the matrix shows them as `n/a`.

// Each test target that includes `backend` uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pool_redis::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use pool_redis::redis::{self, Value};
use pool_redis::{ClusterManager, RedisClusterConnection};
use pool_testkit::conformance::Backend;
use pool_testkit::servers::RedisCluster as ThrowawayCluster;

use super::{probe, text, MISSING_USER};

/// Cases that cannot hold on a Redis Cluster, and why. Kept in one place: the matrix
/// prints each reason.
pub(crate) const NOT_APPLICABLE: &[(&str, &str)] = &[(
    "killed_while_in_use_fails_only_that_user",
    "a cluster connection heals a killed node connection by itself: the redis crate \
     reconnects to the node and retries the command, so the holder of the killed \
     connection sees no error, which this case needs first. tests/cluster.rs kills one \
     node's connections under users instead: they see at most an error and the pool \
     serves every node's keys again",
)];

/// The cases that reach the server through the fault proxy (a TCP proxy in front of
/// [`Backend::server_address`]). They cannot run on a cluster: a cluster client
/// connects to the seed it was given only to read the cluster's layout, then to every
/// node at the address the node announces in `CLUSTER SLOTS`, around any proxy in
/// front of a seed. So this backend keeps the trait's default `server_address` (an
/// error) and lists those cases here, by name (the suite's network fault cases).
pub(crate) const FAULT_PROXY_CASES: &[&str] = &[
    "blackhole_during_connect_fails_with_the_connect_timeout",
    "blackhole_while_idle_times_out_due_checks_and_replaces_them",
    "reset_of_every_connection_under_load_fails_only_their_users",
    "latency_of_50ms_completes_every_operation_without_a_timeout",
    "refused_connects_back_off_and_recover_by_themselves",
];

const FAULT_PROXY_REASON: &str = "a fault proxy cannot stand between a cluster client and \
     the cluster: the client reads the nodes' own addresses from CLUSTER SLOTS and \
     connects to them directly, around a proxy in front of one seed";

/// The server-side view and the throwaway clusters of one conformance run.
pub(crate) struct RedisCluster {
    /// The cluster under test; stopped and removed when this is dropped.
    cluster: Option<ThrowawayCluster>,
    /// Its seed URLs, the first node's first.
    pub(crate) seeds: Vec<String>,
    /// The `CLIENT SETNAME` of every node connection the suite's pools open.
    pub(crate) name: String,
    /// The server's own words when [`MISSING_USER`] authenticates, found up front.
    wrong_credentials_message: String,
    /// Each `server_id` handed out, with the connection's ids on every node.
    node_ids: Mutex<HashMap<u64, BTreeMap<String, u64>>>,
    /// The restart case's throwaway cluster, started on first use.
    restartable: RestartableCluster,
}

impl RedisCluster {
    /// A backend that reaches no cluster: enough to list the cases.
    pub(crate) fn for_listing() -> Self {
        RedisCluster {
            cluster: None,
            seeds: Vec::new(),
            name: String::new(),
            wrong_credentials_message: String::new(),
            node_ids: Mutex::default(),
            restartable: RestartableCluster::default(),
        }
    }

    /// A backend on `cluster`.
    pub(crate) fn new(cluster: ThrowawayCluster) -> Result<Self, String> {
        let seeds = cluster.urls();
        let first: redis::ConnectionInfo = seeds[0]
            .parse()
            .map_err(|e| format!("the cluster's first URL is not a redis URL: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Ok(RedisCluster {
            wrong_credentials_message: probe(&first)?,
            cluster: Some(cluster),
            seeds,
            name: format!("pool_conformance_cluster_{}_{nanos}", std::process::id()),
            node_ids: Mutex::default(),
            restartable: RestartableCluster::default(),
        })
    }

    /// The nodes' addresses (`127.0.0.1:PORT`).
    fn nodes(&self) -> impl Iterator<Item = &str> {
        self.seeds
            .iter()
            .map(|seed| seed.trim_start_matches("redis://"))
    }

    /// A connection to one node, outside the pools.
    async fn admin(node: &str) -> Result<redis::aio::MultiplexedConnection, String> {
        redis::Client::open(format!("redis://{node}"))
            .map_err(|e| format!("admin client for {node}: {e}"))?
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("admin connect to {node}: {e}"))
    }

    async fn client_list(admin: &mut redis::aio::MultiplexedConnection) -> Result<String, String> {
        redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(admin)
            .await
            .map_err(|e| format!("CLIENT LIST: {e}"))
    }

    /// The connection's reply to `cmd` from every node it holds a connection to.
    async fn on_every_node(
        conn: &mut RedisClusterConnection,
        cmd: &redis::Cmd,
    ) -> Result<BTreeMap<String, Value>, String> {
        let reply = conn
            .inner()
            .route_command(
                cmd.clone(),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let Value::Map(by_node) = reply else {
            return Err(format!("a reply from every node expected, got {reply:?}"));
        };
        by_node
            .into_iter()
            .map(|(node, value)| {
                text(&node)
                    .map(|node| (node, value))
                    .ok_or_else(|| "a node without an address in the reply".to_owned())
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Backend for RedisCluster {
    type Manager = ClusterManager;

    fn name(&self) -> &'static str {
        "redis-cluster"
    }

    fn wrong_credentials_message(&self) -> String {
        self.wrong_credentials_message.clone()
    }

    async fn manager(&self) -> ClusterManager {
        ClusterManager::from_urls(&self.seeds)
            .expect("the throwaway cluster's URLs are valid seeds")
            .client_name(&self.name)
    }

    async fn manager_with_wrong_credentials(&self) -> ClusterManager {
        let seeds = self.seeds.iter().map(|seed| {
            let info: redis::ConnectionInfo = seed.parse().expect("a valid seed URL");
            let settings = info
                .redis_settings()
                .clone()
                .set_username(MISSING_USER)
                .set_password("wrong");
            info.set_redis_settings(settings)
        });
        ClusterManager::new(seeds)
            .expect("seeds with the same credentials")
            .client_name(&self.name)
    }

    async fn round_trip(&self, conn: &mut RedisClusterConnection) -> Result<(), String> {
        // PING goes to every primary, so this is a round trip to every node.
        let answer: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(format!("PING answered {answer:?}"))
        }
    }

    /// A `MULTI` sent on its own, the way a careless user starts a transaction on a
    /// cluster connection: the redis crate sends it to a node at random, whose session
    /// is then inside a transaction.
    async fn dirty_session(&self, conn: &mut RedisClusterConnection) -> Result<(), String> {
        redis::cmd("MULTI")
            .query_async::<()>(conn)
            .await
            .map_err(|e| format!("MULTI: {e}"))
    }

    /// No node's session is inside `MULTI` (where `CLIENT INFO` is only queued). Asked
    /// through the inner connection, so asking changes nothing the pool follows.
    async fn is_clean(&self, conn: &mut RedisClusterConnection) -> Result<bool, String> {
        let infos = Self::on_every_node(conn, redis::cmd("CLIENT").arg("INFO")).await?;
        for (node, info) in &infos {
            let info =
                text(info).ok_or_else(|| format!("{node}: CLIENT INFO answered {info:?}"))?;
            if info == "QUEUED" || !info.split_whitespace().any(|field| field == "multi=-1") {
                return Ok(false);
            }
        }
        Ok(!infos.is_empty())
    }

    /// The connection's `CLIENT ID` on the node with the lowest address (see the module
    /// docs); a node inside `MULTI`, where `CLIENT ID` is only queued, is taken at the
    /// id the connection last saw there.
    async fn server_id(&self, conn: &mut RedisClusterConnection) -> Result<u64, String> {
        let replies = Self::on_every_node(conn, redis::cmd("CLIENT").arg("ID")).await?;
        let mut ids = BTreeMap::new();
        for (node, reply) in replies {
            let id = match reply {
                Value::Int(id) => {
                    u64::try_from(id).map_err(|_| format!("{node}: CLIENT ID {id}"))?
                }
                other if text(&other).as_deref() == Some("QUEUED") => *conn
                    .node_client_ids()
                    .get(&node)
                    .ok_or_else(|| format!("{node}: in MULTI, and its id was never seen"))?,
                other => return Err(format!("{node}: CLIENT ID answered {other:?}")),
            };
            ids.insert(node, id);
        }
        let (_, &id) = ids
            .first_key_value()
            .ok_or("the connection holds no node connection")?;
        self.node_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, ids);
        Ok(id)
    }

    async fn kill(&self, server_id: u64) -> Result<(), String> {
        let ids = self
            .node_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&server_id)
            .cloned()
            .ok_or_else(|| format!("{server_id} is no server id this backend handed out"))?;
        for (node, id) in &ids {
            let mut admin = Self::admin(node).await?;
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut admin)
                .await
                .map_err(|e| format!("{node}: CLIENT KILL ID {id}: {e}"))?;
            if killed != 1 {
                return Err(format!(
                    "{node}: CLIENT KILL ID {id} killed {killed} clients"
                ));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (node, id) in &ids {
            let mut admin = Self::admin(node).await?;
            let needle = format!("id={id}");
            loop {
                let list = Self::client_list(&mut admin).await?;
                if !list
                    .lines()
                    .any(|line| line.split_whitespace().next() == Some(needle.as_str()))
                {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{node}: client {id} still listed 10s after CLIENT KILL"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    async fn server_connections(&self) -> Result<usize, String> {
        let needle = format!("name={}", self.name);
        let mut most = 0;
        for node in self.nodes() {
            let mut admin = Self::admin(node).await?;
            let list = Self::client_list(&mut admin).await?;
            let named = list
                .lines()
                .filter(|line| line.split_whitespace().any(|field| field == needle))
                .count();
            most = most.max(named);
        }
        Ok(most)
    }

    /// A manager for a second throwaway cluster of three masters, never the one the
    /// other cases use.
    async fn restartable_manager(&self) -> Result<ClusterManager, String> {
        let seeds = self.restartable.urls().await?;
        Ok(ClusterManager::from_urls(&seeds)
            .map_err(|e| format!("the throwaway cluster's URLs: {e}"))?
            .client_name(format!("{}_restartable", self.name)))
    }

    /// Stops all three nodes.
    async fn stop_restartable(&self) -> Result<(), String> {
        self.restartable.stop().await
    }

    /// Starts all three nodes again, returning once the cluster is whole
    /// (`cluster_state:ok` on every node).
    async fn start_restartable(&self) -> Result<(), String> {
        self.restartable.start().await
    }

    fn not_applicable(&self, case: &str) -> Option<String> {
        if let Some((_, reason)) = NOT_APPLICABLE.iter().find(|(name, _)| *name == case) {
            return Some((*reason).to_owned());
        }
        FAULT_PROXY_CASES
            .contains(&case)
            .then(|| FAULT_PROXY_REASON.to_owned())
    }
}

/// A throwaway cluster created on first use and kept for the whole run, stopped and
/// started from async code on tokio's blocking threads. A `RedisCluster` holds no
/// runtime resources, so one made under one case's runtime serves the next.
#[derive(Clone, Default)]
struct RestartableCluster {
    cluster: Arc<Mutex<Option<ThrowawayCluster>>>,
}

impl RestartableCluster {
    async fn urls(&self) -> Result<Vec<String>, String> {
        self.with(|cluster| Ok(cluster.urls())).await
    }

    async fn stop(&self) -> Result<(), String> {
        self.with(|cluster| {
            cluster
                .stop()
                .map_err(|e| format!("stopping the throwaway cluster: {e}"))
        })
        .await
    }

    async fn start(&self) -> Result<(), String> {
        self.with(|cluster| {
            cluster
                .start()
                .map_err(|e| format!("starting the throwaway cluster: {e}"))
        })
        .await
    }

    async fn with<T, F>(&self, action: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&mut ThrowawayCluster) -> Result<T, String> + Send + 'static,
    {
        let cluster = Arc::clone(&self.cluster);
        tokio::task::spawn_blocking(move || {
            let mut slot = cluster.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(
                    pool_testkit::servers::redis_cluster()
                        .map_err(|e| format!("a throwaway Redis Cluster: {e}"))?,
                );
            }
            action(slot.as_mut().expect("created above"))
        })
        .await
        .map_err(|e| format!("the blocking task for the restartable cluster: {e}"))?
    }
}

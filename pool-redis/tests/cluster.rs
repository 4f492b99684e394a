//! The cluster manager against a real Redis Cluster: connections that reach and name
//! every node, resets of dirty sessions on every node, authentication across resets,
//! one node's connections killed under users and while idle, and connect errors that
//! name their cause.
//!
//! Each test that needs a cluster starts a throwaway one of three masters of its own
//! (`pool_testkit::servers::redis_cluster`, a few seconds), dropped when the test ends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pool_redis::redis::{self, AsyncCommands, Value};
use pool_redis::{ClusterManager, ClusterPool, Error, PoolError, RedisClusterConnection};
use pool_testkit::servers::{self, RedisCluster};

/// A new throwaway cluster, started on a blocking thread.
async fn cluster() -> RedisCluster {
    tokio::task::spawn_blocking(servers::redis_cluster)
        .await
        .expect("the blocking task")
        .unwrap_or_else(|e| panic!("a throwaway Redis Cluster: {e}"))
}

fn name(test: &str) -> String {
    format!("pool_redis_cluster_test_{test}_{}", std::process::id())
}

fn pool(manager: ClusterManager, size: usize) -> ClusterPool {
    ClusterPool::builder(manager)
        .max_size(size)
        .wait_timeout(Duration::from_secs(10))
        .check_interval(Duration::from_millis(50))
        .build()
        .expect("a pool")
}

/// A plain connection to one node (`127.0.0.1:PORT`), outside any pool.
async fn admin(node: &str, password: Option<&str>) -> redis::aio::MultiplexedConnection {
    let url = match password {
        Some(password) => format!("redis://:{password}@{node}"),
        None => format!("redis://{node}"),
    };
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("admin connection to {node}: {e}"))
}

/// The nodes' addresses (`127.0.0.1:PORT`), in order.
fn nodes(cluster: &RedisCluster) -> Vec<String> {
    let mut nodes: Vec<String> = cluster
        .ports()
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    nodes.sort();
    nodes
}

/// `CLIENT LIST` lines on `node` of the connections named `name`.
async fn named_clients(node: &str, password: Option<&str>, name: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin(node, password).await)
        .await
        .unwrap();
    let needle = format!("name={name}");
    list.lines()
        .filter(|line| line.split_whitespace().any(|field| field == needle))
        .map(str::to_owned)
        .collect()
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// For each node, a key it serves (`CLUSTER NODES` gives the slot ranges,
/// `CLUSTER KEYSLOT` each candidate key's slot).
async fn a_key_on_every_node(cluster: &RedisCluster) -> BTreeMap<String, String> {
    let first = &nodes(cluster)[0];
    let mut conn = admin(first, None).await;
    let layout: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    // `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges>...`
    let mut ranges: Vec<(u16, u16, String)> = Vec::new();
    for line in layout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let node = fields[1].split('@').next().unwrap().to_owned();
        for range in &fields[8..] {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            ranges.push((start.parse().unwrap(), end.parse().unwrap(), node.clone()));
        }
    }
    let mut keys = BTreeMap::new();
    for i in 0.. {
        let key = format!("pool-redis-cluster-test:{i}");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let (_, _, node) = ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .unwrap_or_else(|| panic!("slot {slot} is served by no node: {layout}"));
        keys.entry(node.clone()).or_insert(key);
        if keys.len() == 3 {
            return keys;
        }
    }
    unreachable!()
}

/// Kills every connection named `name` on `node`; how many there were.
async fn kill_named(node: &str, name: &str) -> usize {
    let victims = named_clients(node, None, name).await;
    let mut conn = admin(node, None).await;
    for line in &victims {
        let id = field(line, "id");
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(killed, 1, "CLIENT KILL ID {id} on {node}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !named_clients(node, None, name).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{node}: killed clients still listed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victims.len()
}

/// `CLIENT INFO` of the connection on every node, asked through the inner connection.
async fn client_info_by_node(conn: &mut RedisClusterConnection) -> BTreeMap<String, String> {
    let reply = conn
        .inner()
        .route_command(
            redis::cmd("CLIENT").arg("INFO").clone(),
            redis::cluster_routing::RoutingInfo::MultiNode((
                redis::cluster_routing::MultipleNodeRoutingInfo::AllNodes,
                None,
            )),
        )
        .await
        .expect("CLIENT INFO on every node");
    let Value::Map(by_node) = reply else {
        panic!("CLIENT INFO answered {reply:?}");
    };
    let text = |value: Value| match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => text,
        other => panic!("CLIENT INFO answered {other:?}"),
    };
    by_node
        .into_iter()
        .map(|(node, info)| (text(node), text(info)))
        .collect()
}

/// A connection holds one connection on every node, named on each, and
/// `node_client_ids` gives their ids; the same ids come back at the next checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reaches_every_node_named_and_identified() {
    let cluster = cluster().await;
    let name = name("every_node");
    let manager = ClusterManager::from_urls(cluster.urls())
        .unwrap()
        .client_name(&name);
    let shown = manager.to_string();
    assert!(
        shown.starts_with("redis cluster redis://127.0.0.1:"),
        "{shown}"
    );
    let pool = pool(manager, 2);
    let keys = a_key_on_every_node(&cluster).await;

    let ids = {
        let mut conn = pool.get().await.unwrap();
        for (node, key) in &keys {
            let _: () = conn.set(key, node).await.unwrap();
            let back: String = conn.get(key).await.unwrap();
            assert_eq!(&back, node);
        }
        conn.node_client_ids().clone()
    };
    assert_eq!(
        ids.keys().cloned().collect::<Vec<_>>(),
        nodes(&cluster),
        "one connection per node"
    );
    for (node, id) in &ids {
        let named = named_clients(node, None, &name).await;
        assert_eq!(named.len(), 1, "{node}: {named:?}");
        assert_eq!(field(&named[0], "id"), id.to_string(), "{node}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await; // a check is due now
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.node_client_ids(), &ids, "the same node connections");
}

/// Session state left on any node (WATCHed keys on all three, client tracking, an open
/// MULTI) is reset on every node before the next checkout, on the same node
/// connections, with the password and the name set again; on RESP3 the connections
/// stay on RESP3. A wrong password fails with the server's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_sessions_are_reset_on_every_node_and_authentication_survives_resets() {
    const PASSWORD: &str = "cluster-pw";
    let cluster = cluster().await;
    let keys = a_key_on_every_node(&cluster).await;
    for node in nodes(&cluster) {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(PASSWORD)
            .query_async::<()>(&mut admin(&node, None).await)
            .await
            .unwrap();
    }
    let key_list: Vec<&String> = keys.values().collect();
    let seeds = |password: &str| -> Vec<String> {
        cluster
            .ports()
            .iter()
            .map(|port| format!("redis://:{password}@127.0.0.1:{port}"))
            .collect()
    };

    let err = pool(ClusterManager::from_urls(seeds("wrong-pw")).unwrap(), 1)
        .get()
        .await
        .unwrap_err();
    let shown = err.to_string();
    eprintln!("wrong password: {shown}");
    assert!(
        matches!(&err, PoolError::Backend(e) if e.is_auth()),
        "{err:?}"
    );
    assert!(shown.contains("authentication failed"), "{shown}");
    assert!(shown.contains("WRONGPASS"), "the server's words: {shown}");
    assert!(!shown.contains("wrong-pw"), "{shown}");

    for protocol in ["resp2", "resp3"] {
        let name = name(&format!("reset_{protocol}"));
        let urls: Vec<String> = seeds(PASSWORD)
            .into_iter()
            .map(|url| format!("{url}?protocol={protocol}"))
            .collect();
        let pool = pool(
            ClusterManager::from_urls(urls).unwrap().client_name(&name),
            1,
        );
        let first = {
            let mut conn = pool.get().await.unwrap();
            // WATCH with keys on every node is split into one WATCH per node.
            redis::cmd("WATCH")
                .arg(&key_list)
                .query_async::<()>(&mut *conn)
                .await
                .unwrap();
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .query_async::<()>(&mut *conn)
                .await
                .unwrap();
            redis::cmd("MULTI")
                .query_async::<()>(&mut *conn)
                .await
                .unwrap();
            assert!(conn.is_dirty(), "{protocol}: not seen as dirty");
            conn.node_client_ids().clone()
        };
        // Someone else changes every watched key: a WATCH left behind would abort the
        // next user's transactions.
        for (node, key) in &keys {
            let _: () = admin(node, Some(PASSWORD))
                .await
                .set(key, "changed")
                .await
                .unwrap();
        }

        let mut conn = pool.get().await.unwrap();
        assert_eq!(
            conn.node_client_ids(),
            &first,
            "{protocol}: replaced, not reset"
        );
        assert!(!conn.is_dirty(), "{protocol}: still dirty");
        let infos = client_info_by_node(&mut conn).await;
        assert_eq!(infos.len(), 3, "{protocol}: {infos:?}");
        for (node, info) in &infos {
            assert_eq!(field(info, "multi"), "-1", "{protocol} {node}: {info}");
            assert!(
                !field(info, "flags").contains('t'),
                "{protocol} {node}: tracking left on: {info}"
            );
            assert_eq!(field(info, "name"), name, "{protocol} {node}: {info}");
            assert_eq!(field(info, "user"), "default", "{protocol} {node}: {info}");
            let resp = if protocol == "resp3" { "3" } else { "2" };
            assert_eq!(field(info, "resp"), resp, "{protocol} {node}: {info}");
        }
        for key in keys.values() {
            let (n,): (i64,) = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(key)
                .arg(1)
                .ignore()
                .incr(key, 1)
                .query_async(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{protocol}: a transaction after the reset: {e}"));
            assert_eq!(n, 2, "{protocol}: {key}");
        }
    }
}

/// A `MULTI` and an `EXEC` sent on their own may reach different nodes: the connection
/// stays dirty, and the node left inside `MULTI` is reset before the next user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_split_across_nodes_is_reset() {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let cluster = cluster().await;
    let nodes = nodes(&cluster);
    let on = |node: &str| {
        let (host, port) = node.rsplit_once(':').unwrap();
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port: port.parse().unwrap(),
        })
    };
    let name = name("split_multi");
    let pool = pool(
        ClusterManager::from_urls(cluster.urls())
            .unwrap()
            .client_name(&name),
        1,
    );
    {
        let mut conn = pool.get().await.unwrap();
        let ok = conn
            .route_command(redis::cmd("MULTI"), on(&nodes[0]))
            .await
            .unwrap();
        assert_eq!(ok, Value::Okay);
        let exec = conn
            .route_command(redis::cmd("EXEC"), on(&nodes[1]))
            .await
            .and_then(Value::extract_error);
        assert!(
            exec.is_err(),
            "EXEC without MULTI on the other node: {exec:?}"
        );
        assert!(conn.is_dirty(), "MULTI is still open on {}", nodes[0]);
    }
    let mut conn = pool.get().await.unwrap();
    for (node, info) in client_info_by_node(&mut conn).await {
        assert_eq!(field(&info, "multi"), "-1", "{node}: {info}");
    }
}

/// One node's connections killed while every pooled connection is in use: each user
/// sees at most one error, only for the killed node's key, and the pool then serves
/// every node's keys again by itself, with the killed node seeing the pool's
/// connections again, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nodes_connections_killed_in_use_cost_at_most_an_error_and_the_pool_recovers() {
    const USERS: usize = 4;
    let cluster = cluster().await;
    let keys = a_key_on_every_node(&cluster).await;
    let name = name("kill_in_use");
    let pool = pool(
        ClusterManager::from_urls(cluster.urls())
            .unwrap()
            .client_name(&name),
        USERS,
    );
    let mut held = Vec::new();
    for _ in 0..USERS {
        let mut conn = pool.get().await.unwrap();
        for key in keys.values() {
            let _: i64 = conn.incr(key, 1).await.unwrap();
        }
        held.push(conn);
    }
    let victim = nodes(&cluster)[1].clone();
    assert_eq!(kill_named(&victim, &name).await, USERS);

    let mut users = tokio::task::JoinSet::new();
    for mut conn in held {
        let keys = keys.clone();
        users.spawn(async move {
            let mut errors = Vec::new();
            for (node, key) in &keys {
                if let Err(e) = conn.incr::<_, _, i64>(key, 1).await {
                    errors.push((node.clone(), e.to_string()));
                }
            }
            errors
        });
    }
    let mut users_with_an_error = 0;
    while let Some(errors) = users.join_next().await {
        let errors = errors.unwrap();
        assert!(
            errors.len() <= 1,
            "a user saw more than one error: {errors:?}"
        );
        for (node, error) in &errors {
            assert_eq!(node, &victim, "an error on a node nobody killed: {error}");
            users_with_an_error += 1;
        }
    }

    // By itself: every connection the pool hands out serves every node's keys, and in
    // a few checkouts (each checks the connections idle past check_interval) every node
    // shows the pool's connections, named.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Vec::new();
        for i in 0..USERS {
            let mut conn = pool.get().await.unwrap();
            for (node, key) in &keys {
                conn.incr::<_, _, i64>(key, 1)
                    .await
                    .unwrap_or_else(|e| panic!("checkout {i} after the kill, {node}: {e}"));
            }
            again.push(conn);
        }
        drop(again);
        let size = pool.status().size;
        let mut named = Vec::new();
        for node in nodes(&cluster) {
            named.push(named_clients(&node, None, &name).await.len());
        }
        if named.iter().all(|&n| n == size) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "named connections per node {named:?}, pool size {size}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "killed {USERS} connections on {victim} under {USERS} users: \
         {users_with_an_error} saw an error"
    );
}

/// One node's connections killed while the pooled connections are idle: each is
/// checked at its next checkout, which reconnects the node and names the new
/// connection, so no user sees an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nodes_connections_killed_while_idle_are_healed_by_the_check() {
    const SIZE: usize = 3;
    let cluster = cluster().await;
    let keys = a_key_on_every_node(&cluster).await;
    let name = name("kill_idle");
    let pool = pool(
        ClusterManager::from_urls(cluster.urls())
            .unwrap()
            .client_name(&name),
        SIZE,
    );
    let mut before = Vec::new();
    {
        let mut held = Vec::new();
        for _ in 0..SIZE {
            let mut conn = pool.get().await.unwrap();
            let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
            assert_eq!(pong, "PONG");
            before.push(conn.node_client_ids().clone());
            held.push(conn);
        }
    }
    let victim = nodes(&cluster)[2].clone();
    assert_eq!(kill_named(&victim, &name).await, SIZE);
    tokio::time::sleep(Duration::from_millis(150)).await; // past check_interval

    let mut held = Vec::new();
    for i in 0..SIZE {
        let mut conn = pool.get().await.unwrap();
        for (node, key) in &keys {
            conn.incr::<_, _, i64>(key, 1)
                .await
                .unwrap_or_else(|e| panic!("checkout {i}, {node}: {e}"));
        }
        let ids = conn.node_client_ids();
        assert!(
            !before
                .iter()
                .any(|old| old.get(&victim) == ids.get(&victim)),
            "checkout {i} still lists a killed connection on {victim}: {ids:?}"
        );
        held.push(conn);
    }
    assert_eq!(named_clients(&victim, None, &name).await.len(), SIZE);
}

/// Connect failures name their cause: no seed reachable (each seed's reason), a server
/// that is not in cluster mode, and a password never shown.
#[tokio::test]
async fn connect_errors_name_their_cause() {
    // Nothing listens on ports 1 and 2.
    let manager =
        ClusterManager::from_urls(["redis://:s3cret@127.0.0.1:1", "redis://:s3cret@127.0.0.1:2"])
            .unwrap();
    let started = Instant::now();
    let err = pool(manager, 1).get().await.unwrap_err();
    let shown = err.to_string();
    eprintln!("no seed reachable: {shown}");
    assert!(started.elapsed() < Duration::from_secs(5), "{shown}");
    assert!(shown.contains("no seed node reachable"), "{shown}");
    assert!(
        shown.contains("redis://:***@127.0.0.1:1/0: connection refused"),
        "{shown}"
    );
    assert!(
        shown.contains("redis://:***@127.0.0.1:2/0: connection refused"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        matches!(&err, PoolError::Backend(e @ Error::SeedsFailed { failures, .. })
            if failures.len() == 2 && e.is_refused()),
        "{err:?}"
    );

    // A server without cluster mode answers, but cannot be a cluster's seed.
    let server = servers::redis().expect("a Redis server");
    let err = pool(ClusterManager::from_urls([server.url()]).unwrap(), 1)
        .get()
        .await
        .unwrap_err();
    let shown = err.to_string();
    eprintln!("not a cluster: {shown}");
    assert!(shown.contains("cluster setup failed"), "{shown}");
    assert!(shown.contains("cluster support disabled"), "{shown}");
}

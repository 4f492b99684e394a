//! A small program on a pool of Redis Cluster connections: ten tasks share four
//! cluster connections, each adding to one of three counters (on different nodes) with
//! a `WATCH`ed transaction, which is safe because a pooled connection's sessions on the
//! nodes are its own.
//!
//! ```text
//! cargo run -p pool-redis --example redis_cluster [-- redis://host:7000 redis://host:7001 ...]
//! ```
//!
//! The seed nodes are the arguments; without any, a throwaway cluster of three masters
//! is started for the run (needs `redis-server` and `redis-cli` installed).

use std::time::Duration;

use pool_redis::redis::{self, AsyncCommands};
use pool_redis::{ClusterManager, ClusterPool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut seeds: Vec<String> = std::env::args().skip(1).collect();
    // Kept until the end: dropping it stops the throwaway cluster.
    let mut _throwaway = None;
    if seeds.is_empty() {
        println!("starting a throwaway cluster of three masters...");
        let cluster = tokio::task::spawn_blocking(pool_testkit::servers::redis_cluster).await??;
        seeds = cluster.urls();
        _throwaway = Some(cluster);
    }
    let manager = ClusterManager::from_urls(&seeds)?.client_name("pool-redis-cluster-example");
    println!("connecting to {manager}"); // never shows a password

    let pool = ClusterPool::builder(manager)
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(60))
        .build()?;
    pool.spawn_upkeep();

    {
        let conn = pool.get().await?;
        println!("one pooled connection holds a connection on every node:");
        for (node, id) in conn.node_client_ids() {
            println!("  {node}: client {id}");
        }
    }

    // Three counters; their slots (and so, most likely, their nodes) differ.
    let counters = [
        "pool-redis:example:a",
        "pool-redis:example:b",
        "pool-redis:example:c",
    ];
    {
        let mut conn = pool.get().await?;
        for key in counters {
            conn.del::<_, ()>(key).await?;
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..10_i64 {
        let pool = pool.clone();
        let key = counters[task as usize % counters.len()];
        tasks.spawn(async move {
            let mut conn = pool.get().await?;
            // Optimistic locking on the key's node: WATCH goes to the node serving the
            // key, and so does the atomic pipeline (all its keys are that one key).
            loop {
                redis::cmd("WATCH")
                    .arg(key)
                    .query_async::<()>(&mut *conn)
                    .await?;
                let current: i64 = conn.get::<_, Option<i64>>(key).await?.unwrap_or(0);
                let done: Option<(i64,)> = redis::pipe()
                    .atomic()
                    .set(key, current + task)
                    .ignore()
                    .get(key)
                    .query_async(&mut *conn)
                    .await?;
                if let Some((now,)) = done {
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!(
                        "task {task}: added {task} to {key}, now {now}"
                    ));
                }
                // Another task changed the key: EXEC did nothing; try again.
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        println!("{}", done??);
    }
    let mut conn = pool.get().await?;
    let mut total = 0;
    for key in counters {
        let value: i64 = conn.get(key).await?;
        total += value;
    }
    drop(conn);
    println!(
        "counters: {total} in all (expected {})",
        (0..10).sum::<i64>()
    );
    println!("pool: {}", pool.status());

    pool.close(Duration::from_secs(5)).await?;
    Ok(())
}

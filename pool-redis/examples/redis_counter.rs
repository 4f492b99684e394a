//! A small program on a pool: ten tasks share four connections, each adding to a
//! counter with a `WATCH`ed transaction, which is safe because a pooled connection is
//! a server connection of its own.
//!
//! ```text
//! cargo run -p pool-redis --example redis_counter [-- redis://[:password@]host:6379/0]
//! ```
//!
//! The URL is the first argument, else `POOL_TEST_REDIS_URL`, else
//! `redis://127.0.0.1:6379/0`.

use std::time::Duration;

use pool_redis::redis::{self, AsyncCommands};
use pool_redis::{Manager, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("POOL_TEST_REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_owned());
    let manager = Manager::from_url(&url)?.client_name("pool-redis-example");
    println!("connecting to {manager}"); // never shows the password

    let pool = Pool::builder(manager)
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(60))
        .build()?;
    pool.spawn_upkeep();

    let key = "pool-redis:example:counter";
    pool.get().await?.del::<_, ()>(key).await?;

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..10_i64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut conn = pool.get().await?;
            // Optimistic locking: WATCH the key, then MULTI/EXEC on this connection
            // alone. A pooled connection is a server connection of its own, so no other
            // task's commands land inside the transaction.
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
                    let id = conn.client_id();
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!(
                        "task {task}: added {task}, counter now {now}, on client {id}"
                    ));
                }
                // Another task changed the key: EXEC did nothing; try again.
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        println!("{}", done??);
    }
    let total: i64 = pool.get().await?.get(key).await?;
    println!("counter: {total} (expected {})", (0..10).sum::<i64>());
    println!("pool: {}", pool.status());

    pool.close(Duration::from_secs(5)).await?;
    Ok(())
}

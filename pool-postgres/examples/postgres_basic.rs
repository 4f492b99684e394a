//! A small program on a pool: several tasks share a few connections.
//!
//! ```text
//! cargo run -p pool-postgres --example postgres_basic [-- postgres://user@host:5432/dbname]
//! ```
//!
//! The URL is the first argument, else `POOL_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`.

use std::time::Duration;

use pool_postgres::{Manager, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("POOL_TEST_POSTGRES_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let manager = Manager::from_url(&url)?;
    println!("connecting to {manager}"); // never shows the password

    let pool = Pool::builder(manager)
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(60))
        .build()?;
    pool.spawn_upkeep();

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..10_i32 {
        let pool = pool.clone();
        tasks.spawn(async move {
            let conn = pool.get().await?;
            // Prepared once per connection, reused by every later checkout of it.
            let statement = conn
                .prepare_cached("SELECT pg_backend_pid(), $1::int * 2")
                .await?;
            let row = conn.query_one(&statement, &[&task]).await?;
            let (pid, doubled): (i32, i32) = (row.get(0), row.get(1));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!(
                "task {task}: {task} * 2 = {doubled} on server process {pid}"
            ))
        });
    }
    while let Some(done) = tasks.join_next().await {
        println!("{}", done??);
    }
    println!("pool: {}", pool.status());

    pool.close(Duration::from_secs(5)).await?;
    Ok(())
}

//! A small program on a pool: several tasks share a few connections.
//!
//! ```text
//! cargo run -p pool-mysql --example mysql_basic [-- mysql://user@host:3306/dbname]
//! ```
//!
//! The URL is the first argument, else `POOL_TEST_MYSQL_URL`, else
//! `mysql://root@127.0.0.1:3306/test`.

use std::time::Duration;

use pool_mysql::{Manager, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("POOL_TEST_MYSQL_URL").ok())
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".to_owned());
    let manager = Manager::from_url(&url)?;
    println!("connecting to {manager}"); // never shows the password

    let pool = Pool::builder(manager)
        .max_size(4)
        .wait_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(60))
        .build()?;
    pool.spawn_upkeep();

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..10_i64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut conn = pool.get().await?;
            // A prepared statement, cached by mysql_async on this connection and
            // reused by every later checkout of it.
            let row: Option<(u64, i64)> = conn
                .exec_first("SELECT CONNECTION_ID(), ? * 2", (task,))
                .await?;
            let (id, doubled) = row.ok_or("no row")?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(format!(
                "task {task}: {task} * 2 = {doubled} on server connection {id}"
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

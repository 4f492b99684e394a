//! PostgreSQL contenders: `SELECT 1` by simple query through pool-postgres (by default
//! and with FIFO reuse), deadpool-postgres (Fast and Verified recycling), bb8-postgres (with and without its
//! check on every checkout), and direct tokio-postgres clients.

use tokio_postgres::NoTls;

use pool_core::Reuse;

use super::{
    failed, fill, ours_setup, Backend, BoxFuture, Contender, Kind, Setup, Worker, POOL_SIZE,
};

const QUERY: &str = "SELECT 1";

pub const BACKEND: Backend = Backend {
    key: "postgres",
    title: "PostgreSQL",
    query: "`SELECT 1` by simple query",
    note: "",
    server: pool_testkit::servers::postgres,
    url: with_application_name,
    contenders,
};

/// Names the benchmark's connections in `pg_stat_activity`, so they can be told apart
/// from those of whoever else uses the server.
fn with_application_name(url: &str) -> String {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_url || url.contains("application_name=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name=pool-bench")
}

fn config(url: &str) -> Result<tokio_postgres::Config, String> {
    url.parse().map_err(failed("reading the URL"))
}

fn contenders() -> Vec<Contender> {
    vec![
        Contender {
            name: "pool-postgres",
            settings: "default config (`Verified` checks, only when due: idle 1 s, dirty, or a peer found broken)",
            kind: Kind::Ours,
            setup: |url, tasks| ours(url, tasks, Reuse::MostRecent),
        },
        Contender {
            name: "pool-postgres fifo",
            settings: "as pool-postgres, with `reuse(Reuse::Fifo)`: idle connections taken oldest first",
            kind: Kind::OursVariant,
            setup: |url, tasks| ours(url, tasks, Reuse::Fifo),
        },
        Contender {
            name: "deadpool-postgres Fast",
            settings: "defaults: `RecyclingMethod::Fast` (no check at all)",
            kind: Kind::Pool,
            setup: |url, tasks| deadpool(url, tasks, deadpool_postgres::RecyclingMethod::Fast),
        },
        Contender {
            name: "deadpool-postgres Verified",
            settings: "`RecyclingMethod::Verified` (a round trip on every checkout)",
            kind: Kind::Pool,
            setup: |url, tasks| deadpool(url, tasks, deadpool_postgres::RecyclingMethod::Verified),
        },
        Contender {
            name: "bb8-postgres",
            settings: "defaults: `test_on_check_out` (a round trip on every checkout)",
            kind: Kind::Pool,
            setup: |url, tasks| bb8(url, tasks, true),
        },
        Contender {
            name: "bb8-postgres no check",
            settings: "`test_on_check_out(false)`",
            kind: Kind::Pool,
            setup: |url, tasks| bb8(url, tasks, false),
        },
        Contender {
            name: "no pool",
            settings: "one tokio-postgres client per task",
            kind: Kind::Floor,
            setup: direct,
        },
    ]
}

// pool-postgres ----------------------------------------------------------------------

struct Ours(pool_postgres::Pool);

#[async_trait::async_trait]
impl Worker for Ours {
    async fn query(&mut self) -> Result<(), String> {
        let conn = self.0.get().await.map_err(|e| e.to_string())?;
        conn.simple_query(QUERY).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn ours(url: String, tasks: usize, reuse: Reuse) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager = pool_postgres::Manager::from_url(&url).map_err(failed("pool-postgres"))?;
        ours_setup("pool-postgres", manager, tasks, reuse, |pool| {
            Box::new(Ours(pool))
        })
        .await
    })
}

// deadpool-postgres ------------------------------------------------------------------

struct Deadpool(deadpool_postgres::Pool);

#[async_trait::async_trait]
impl Worker for Deadpool {
    async fn query(&mut self) -> Result<(), String> {
        let conn = self.0.get().await.map_err(|e| e.to_string())?;
        conn.simple_query(QUERY).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn deadpool(
    url: String,
    tasks: usize,
    recycling_method: deadpool_postgres::RecyclingMethod,
) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager = deadpool_postgres::Manager::from_config(
            config(&url)?,
            NoTls,
            deadpool_postgres::ManagerConfig { recycling_method },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(failed("deadpool-postgres"))?;
        fill(POOL_SIZE, || pool.get()).await?;
        let workers = (0..tasks)
            .map(|_| Box::new(Deadpool(pool.clone())) as Box<dyn Worker>)
            .collect();
        Ok(Setup {
            workers,
            close: Box::pin(async move { pool.close() }),
        })
    })
}

// bb8-postgres -----------------------------------------------------------------------

type Bb8Manager = bb8_postgres::PostgresConnectionManager<NoTls>;

struct Bb8(bb8::Pool<Bb8Manager>);

#[async_trait::async_trait]
impl Worker for Bb8 {
    async fn query(&mut self) -> Result<(), String> {
        let conn = self.0.get().await.map_err(|e| e.to_string())?;
        conn.simple_query(QUERY).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn bb8(url: String, tasks: usize, test_on_check_out: bool) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager = bb8_postgres::PostgresConnectionManager::new(config(&url)?, NoTls);
        let pool = bb8::Pool::builder()
            .max_size(POOL_SIZE as u32)
            .test_on_check_out(test_on_check_out)
            .build(manager)
            .await
            .map_err(failed("bb8-postgres"))?;
        fill(POOL_SIZE, || pool.get()).await?;
        let workers = (0..tasks)
            .map(|_| Box::new(Bb8(pool.clone())) as Box<dyn Worker>)
            .collect();
        // bb8 closes its connections when the last handle is dropped.
        Ok(Setup {
            workers,
            close: Box::pin(async move { drop(pool) }),
        })
    })
}

// no pool ----------------------------------------------------------------------------

struct Direct(tokio_postgres::Client);

#[async_trait::async_trait]
impl Worker for Direct {
    async fn query(&mut self) -> Result<(), String> {
        self.0
            .simple_query(QUERY)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn direct(url: String, tasks: usize) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let config = config(&url)?;
        let mut workers: Vec<Box<dyn Worker>> = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let (client, connection) = config.connect(NoTls).await.map_err(failed("connecting"))?;
            // Ends when the client is dropped.
            tokio::spawn(connection);
            workers.push(Box::new(Direct(client)));
        }
        Ok(Setup {
            workers,
            close: Box::pin(async {}),
        })
    })
}

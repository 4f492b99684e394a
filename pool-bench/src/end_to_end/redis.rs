//! Redis contenders: `PING` through pool-redis (by default and with FIFO reuse),
//! deadpool-redis, bb8-redis (with and
//! without its `PING` on every checkout), and direct connections (one socket per task).

use pool_core::Reuse;

use super::{
    failed, fill, ours_setup, Backend, BoxFuture, Contender, Kind, Setup, Worker, POOL_SIZE,
};

pub const BACKEND: Backend = Backend {
    key: "redis",
    title: "Redis",
    query: "`PING`",
    note: "",
    server: pool_testkit::servers::redis,
    url: str::to_owned,
    contenders,
};

/// Names the benchmark's connections in `CLIENT LIST` (our driver names its own).
const CLIENT_NAME: &str = "pool-bench";

async fn ping(conn: &mut impl redis::aio::ConnectionLike) -> Result<(), String> {
    let pong: String = redis::cmd("PING")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}

fn contenders() -> Vec<Contender> {
    vec![
        Contender {
            name: "pool-redis",
            settings: "default config (`PING` checks only when due: idle 1 s, dirty, or a peer found broken), `client_name(\"pool-bench\")`",
            kind: Kind::Ours,
            setup: |url, tasks| ours(url, tasks, Reuse::MostRecent),
        },
        Contender {
            name: "pool-redis fifo",
            settings: "as pool-redis, with `reuse(Reuse::Fifo)`: idle connections taken oldest first",
            kind: Kind::OursVariant,
            setup: |url, tasks| ours(url, tasks, Reuse::Fifo),
        },
        Contender {
            name: "deadpool-redis",
            settings: "defaults (its recycle sends a `PING` on every checkout)",
            kind: Kind::Pool,
            setup: deadpool,
        },
        Contender {
            name: "bb8-redis",
            settings: "defaults: `test_on_check_out` (a `PING` on every checkout)",
            kind: Kind::Pool,
            setup: |url, tasks| bb8(url, tasks, true),
        },
        Contender {
            name: "bb8-redis no check",
            settings: "`test_on_check_out(false)`",
            kind: Kind::Pool,
            setup: |url, tasks| bb8(url, tasks, false),
        },
        Contender {
            name: "no pool",
            settings: "one multiplexed connection (its own socket) per task",
            kind: Kind::Floor,
            setup: direct,
        },
    ]
}

// pool-redis -------------------------------------------------------------------------

struct Ours(pool_redis::Pool);

#[async_trait::async_trait]
impl Worker for Ours {
    async fn query(&mut self) -> Result<(), String> {
        let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
        ping(&mut *conn).await
    }
}

fn ours(url: String, tasks: usize, reuse: Reuse) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager = pool_redis::Manager::from_url(&url)
            .map_err(failed("pool-redis"))?
            .client_name(CLIENT_NAME);
        ours_setup("pool-redis", manager, tasks, reuse, |pool| {
            Box::new(Ours(pool))
        })
        .await
    })
}

// deadpool-redis ---------------------------------------------------------------------

struct Deadpool(deadpool_redis::Pool);

#[async_trait::async_trait]
impl Worker for Deadpool {
    async fn query(&mut self) -> Result<(), String> {
        let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
        ping(&mut conn).await
    }
}

fn deadpool(url: String, tasks: usize) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager =
            deadpool_redis::Manager::new(url.as_str()).map_err(failed("deadpool-redis"))?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(failed("deadpool-redis"))?;
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

// bb8-redis --------------------------------------------------------------------------

struct Bb8(bb8::Pool<bb8_redis::RedisConnectionManager>);

#[async_trait::async_trait]
impl Worker for Bb8 {
    async fn query(&mut self) -> Result<(), String> {
        let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
        ping(&mut *conn).await
    }
}

fn bb8(url: String, tasks: usize, test_on_check_out: bool) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager =
            bb8_redis::RedisConnectionManager::new(url.as_str()).map_err(failed("bb8-redis"))?;
        let pool = bb8::Pool::builder()
            .max_size(POOL_SIZE as u32)
            .test_on_check_out(test_on_check_out)
            .build(manager)
            .await
            .map_err(failed("bb8-redis"))?;
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

struct Direct(redis::aio::MultiplexedConnection);

#[async_trait::async_trait]
impl Worker for Direct {
    async fn query(&mut self) -> Result<(), String> {
        ping(&mut self.0).await
    }
}

fn direct(url: String, tasks: usize) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let client = redis::Client::open(url.as_str()).map_err(failed("reading the URL"))?;
        let mut workers: Vec<Box<dyn Worker>> = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(failed("connecting"))?;
            workers.push(Box::new(Direct(conn)));
        }
        Ok(Setup {
            workers,
            close: Box::pin(async {}),
        })
    })
}

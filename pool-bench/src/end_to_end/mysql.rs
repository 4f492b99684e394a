//! MySQL/MariaDB contenders: `SELECT 1` through pool-mysql (by default and with FIFO
//! reuse), mysql_async's own `Pool`
//! (with its default reset of every returned connection, and without), and direct
//! mysql_async connections. deadpool and bb8 publish no MySQL adapter, so mysql_async's
//! pool is the peer.

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts};

use pool_core::Reuse;

use super::{
    failed, fill, ours_setup, Backend, BoxFuture, Contender, Kind, Setup, Worker, POOL_SIZE,
};

const QUERY: &str = "SELECT 1";

pub const BACKEND: Backend = Backend {
    key: "mysql",
    title: "MySQL (MariaDB)",
    query: "`SELECT 1`",
    note: "deadpool and bb8 publish no MySQL adapter (there is no deadpool-mysql or \
           bb8-mysql crate), so mysql_async's own `Pool` is the pool to beat here.",
    server: pool_testkit::servers::mysql,
    url: str::to_owned,
    contenders,
};

fn opts(url: &str) -> Result<Opts, String> {
    Opts::from_url(url).map_err(failed("reading the URL"))
}

fn contenders() -> Vec<Contender> {
    vec![
        Contender {
            name: "pool-mysql",
            settings: "default config (ping checks only when due: idle 1 s, dirty, or a peer found broken; `COM_RESET_CONNECTION` only after a dirty return)",
            kind: Kind::Ours,
            setup: |url, tasks| ours(url, tasks, Reuse::MostRecent),
        },
        Contender {
            name: "pool-mysql fifo",
            settings: "as pool-mysql, with `reuse(Reuse::Fifo)`: idle connections taken oldest first",
            kind: Kind::OursVariant,
            setup: |url, tasks| ours(url, tasks, Reuse::Fifo),
        },
        Contender {
            name: "mysql_async Pool",
            settings: "defaults but the size: constraints 16..=16, `reset_connection` on (a `COM_RESET_CONNECTION` round trip after every return)",
            kind: Kind::Pool,
            setup: |url, tasks| mysql_async_pool(url, tasks, true),
        },
        Contender {
            name: "mysql_async Pool no reset",
            settings: "constraints 16..=16, `reset_connection(false)`",
            kind: Kind::Pool,
            setup: |url, tasks| mysql_async_pool(url, tasks, false),
        },
        Contender {
            name: "no pool",
            settings: "one mysql_async `Conn` per task",
            kind: Kind::Floor,
            setup: direct,
        },
    ]
}

// pool-mysql -------------------------------------------------------------------------

struct Ours(pool_mysql::Pool);

#[async_trait::async_trait]
impl Worker for Ours {
    async fn query(&mut self) -> Result<(), String> {
        let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
        conn.query_drop(QUERY).await.map_err(|e| e.to_string())
    }
}

fn ours(url: String, tasks: usize, reuse: Reuse) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let manager = pool_mysql::Manager::from_url(&url).map_err(failed("pool-mysql"))?;
        ours_setup("pool-mysql", manager, tasks, reuse, |pool| {
            Box::new(Ours(pool))
        })
        .await
    })
}

// mysql_async's Pool -----------------------------------------------------------------

struct MysqlAsync(mysql_async::Pool);

#[async_trait::async_trait]
impl Worker for MysqlAsync {
    async fn query(&mut self) -> Result<(), String> {
        let mut conn = self.0.get_conn().await.map_err(|e| e.to_string())?;
        conn.query_drop(QUERY).await.map_err(|e| e.to_string())
    }
}

fn mysql_async_pool(
    url: String,
    tasks: usize,
    reset_connection: bool,
) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let constraints = PoolConstraints::new(POOL_SIZE, POOL_SIZE)
            .ok_or("mysql_async: invalid pool constraints")?;
        let pool_opts = PoolOpts::default()
            .with_constraints(constraints)
            .with_reset_connection(reset_connection);
        let pool = mysql_async::Pool::new(OptsBuilder::from_opts(opts(&url)?).pool_opts(pool_opts));
        fill(POOL_SIZE, || pool.get_conn()).await?;
        let workers = (0..tasks)
            .map(|_| Box::new(MysqlAsync(pool.clone())) as Box<dyn Worker>)
            .collect();
        Ok(Setup {
            workers,
            close: Box::pin(async move {
                let _ = pool.disconnect().await;
            }),
        })
    })
}

// no pool ----------------------------------------------------------------------------

struct Direct(mysql_async::Conn);

#[async_trait::async_trait]
impl Worker for Direct {
    async fn query(&mut self) -> Result<(), String> {
        self.0.query_drop(QUERY).await.map_err(|e| e.to_string())
    }
}

fn direct(url: String, tasks: usize) -> BoxFuture<Result<Setup, String>> {
    Box::pin(async move {
        let opts = opts(&url)?;
        let mut workers: Vec<Box<dyn Worker>> = Vec::with_capacity(tasks);
        for _ in 0..tasks {
            let conn = mysql_async::Conn::new(opts.clone())
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

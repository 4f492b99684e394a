//! The mysql conformance backend, shared by the test targets that drive a real server
//! (the conformance suite; see `conformance.rs`).

pub(crate) mod chaos;

use std::collections::HashSet;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use pool_mysql::{Manager, MysqlConnection};
use pool_testkit::conformance::Backend;
use pool_testkit::servers::{self, Server};

/// A user no test server has.
const MISSING_USER: &str = "pool_conformance_no_such_user";

/// The server-side ids of the connections the suite's managers opened.
type Ids = Arc<Mutex<HashSet<u64>>>;

pub(crate) struct Mysql {
    /// The server; a throwaway one stops when this is dropped.
    _server: Option<Server>,
    /// How to reach it.
    pub(crate) opts: Opts,
    /// Every connection id the suite's managers have opened.
    pub(crate) ids: Ids,
    /// The server's own words when [`MISSING_USER`] connects, found once up front.
    pub(crate) wrong_credentials_message: String,
    /// The restart case's throwaway server, started on first use.
    pub(crate) restartable: servers::Restartable,
}

impl Mysql {
    /// A backend that reaches no server: enough to list the cases.
    pub(crate) fn for_listing() -> Self {
        Mysql {
            _server: None,
            opts: Opts::default(),
            ids: Ids::default(),
            wrong_credentials_message: String::new(),
            restartable: servers::Restartable::new(servers::Database::Mysql),
        }
    }

    pub(crate) fn new(server: Server) -> Result<Self, String> {
        let opts = Opts::from_url(server.url())
            .map_err(|e| format!("the test server's URL is not a mysql URL: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
        let wrong_credentials_message = runtime.block_on(probe(&opts))?;
        Ok(Mysql {
            _server: Some(server),
            opts,
            ids: Ids::default(),
            wrong_credentials_message,
            restartable: servers::Restartable::new(servers::Database::Mysql),
        })
    }

    /// A connection outside the pools, for looking at and acting on the server.
    async fn admin(&self) -> Result<Conn, String> {
        Conn::new(self.opts.clone())
            .await
            .map_err(|e| format!("admin connect: {}", chain(&e)))
    }

    /// `opts` recording the server-side id of each connection they open, for
    /// [`server_connections`](Backend::server_connections).
    fn recording(&self, opts: OptsBuilder) -> OptsBuilder {
        let ids = Arc::clone(&self.ids);
        opts.after_connect(move |conn: &mut Conn| -> Callback<'_> {
            ids.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(u64::from(conn.id()));
            Box::pin(std::future::ready(Ok(())))
        })
    }

    /// Which of `ids` the server still has.
    async fn present(&self, admin: &mut Conn, ids: &HashSet<u64>) -> Result<usize, String> {
        let listed: Vec<u64> = admin
            .query("SELECT ID FROM information_schema.PROCESSLIST")
            .await
            .map_err(my)?;
        Ok(listed.iter().filter(|id| ids.contains(id)).count())
    }
}

/// Checks the server answers and returns what it says to a user that does not exist
/// (`Access denied for user ...`), up to the user's name.
async fn probe(opts: &Opts) -> Result<String, String> {
    let shown = Manager::new(opts.clone());
    let conn = Conn::new(opts.clone()).await.map_err(|e| {
        format!(
            "no mysql server at {shown}: {}\nset POOL_TEST_MYSQL_URL to a server the tests \
             may use",
            chain(&e)
        )
    })?;
    let _ = conn.disconnect().await;
    let wrong = OptsBuilder::from_opts(opts.clone()).user(Some(MISSING_USER));
    match Conn::new(wrong).await {
        Ok(_) => Err(format!("the server let the missing user {MISSING_USER} in")),
        Err(mysql_async::Error::Server(server)) => Ok(server
            .message
            .split_once('\'')
            .map_or(server.message.as_str(), |(words, _)| words)
            .trim()
            .to_owned()),
        Err(e) => Err(format!(
            "connecting as {MISSING_USER} failed without a server error: {}",
            chain(&e)
        )),
    }
}

/// An error with its sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn my(e: mysql_async::Error) -> String {
    chain(&e)
}

/// The future an `after_connect` callback returns.
type Callback<'a> = Pin<Box<dyn Future<Output = mysql_async::Result<()>> + Send + 'a>>;

#[async_trait::async_trait]
impl Backend for Mysql {
    type Manager = Manager;

    fn name(&self) -> &'static str {
        "mysql"
    }

    fn wrong_credentials_message(&self) -> String {
        self.wrong_credentials_message.clone()
    }

    async fn manager(&self) -> Manager {
        Manager::new(self.recording(OptsBuilder::from_opts(self.opts.clone())))
    }

    fn server_address(&self) -> Result<SocketAddr, String> {
        if let Some(socket) = self.opts.socket() {
            return Err(format!(
                "the test server is reached through socket {socket}, not TCP"
            ));
        }
        let (host, port) = (self.opts.ip_or_hostname(), self.opts.tcp_port());
        (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port} resolves to no address"))
    }

    /// [`manager`](Backend::manager)'s options (user, password, database, the id
    /// recording) with `address` as host and port, and `prefer_socket` off: with it on
    /// (mysql_async's default) a connect to 127.0.0.1 moves itself to the server's
    /// Unix socket once connected, around the proxy.
    async fn manager_at(&self, address: SocketAddr) -> Result<Manager, String> {
        let opts = OptsBuilder::from_opts(self.opts.clone())
            .ip_or_hostname(address.ip().to_string())
            .tcp_port(address.port())
            .socket(None::<String>)
            .prefer_socket(false);
        Ok(Manager::new(self.recording(opts)))
    }

    async fn manager_with_wrong_credentials(&self) -> Manager {
        Manager::new(OptsBuilder::from_opts(self.opts.clone()).user(Some(MISSING_USER)))
    }

    async fn round_trip(&self, conn: &mut MysqlConnection) -> Result<(), String> {
        match conn.query_first::<i64, _>("SELECT 1").await.map_err(my)? {
            Some(1) => Ok(()),
            other => Err(format!("SELECT 1 answered {other:?}")),
        }
    }

    /// A user variable, then a transaction left open: the way a careless user leaves a
    /// session, through the connection's own `query_drop`.
    async fn dirty_session(&self, conn: &mut MysqlConnection) -> Result<(), String> {
        conn.query_drop("SET @pool_test_marker = 'dirty'")
            .await
            .map_err(my)?;
        conn.query_drop("BEGIN").await.map_err(my)
    }

    /// No marker variable and no open transaction, asked through the `Conn` itself so
    /// the question does not count as a statement the pool sees.
    async fn is_clean(&self, conn: &mut MysqlConnection) -> Result<bool, String> {
        let answer: Option<(i64, Option<String>)> = conn
            .conn_mut()
            .query_first("SELECT @@in_transaction, @pool_test_marker")
            .await
            .map_err(my)?;
        match answer {
            Some((in_transaction, marker)) => Ok(in_transaction == 0 && marker.is_none()),
            None => Err("the clean check answered no row".into()),
        }
    }

    async fn server_id(&self, conn: &mut MysqlConnection) -> Result<u64, String> {
        conn.query_first::<u64, _>("SELECT CONNECTION_ID()")
            .await
            .map_err(my)?
            .ok_or_else(|| "CONNECTION_ID() gave no row".to_owned())
    }

    async fn kill(&self, server_id: u64) -> Result<(), String> {
        let mut admin = self.admin().await?;
        admin
            .query_drop(format!("KILL {server_id}"))
            .await
            .map_err(my)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let only = HashSet::from([server_id]);
        loop {
            if self.present(&mut admin, &only).await? == 0 {
                let _ = admin.disconnect().await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("connection {server_id} still there 10s after KILL"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn server_connections(&self) -> Result<usize, String> {
        let ids = self
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut admin = self.admin().await?;
        let count = self.present(&mut admin, &ids).await;
        let _ = admin.disconnect().await;
        count
    }

    async fn restartable_manager(&self) -> Result<Manager, String> {
        let url = self.restartable.url().await?;
        Manager::from_url(&url).map_err(|e| format!("the throwaway server's URL: {e}"))
    }

    async fn stop_restartable(&self) -> Result<(), String> {
        self.restartable.stop().await
    }

    async fn start_restartable(&self) -> Result<(), String> {
        self.restartable.start().await
    }
}

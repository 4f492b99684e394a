//! The postgres conformance backend, shared by the test targets that drive a real server
//! (the conformance suite; see `conformance.rs`).

pub(crate) mod chaos;
pub(crate) mod pgbouncer;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use pool_postgres::{Manager, PgConnection};
use pool_testkit::conformance::Backend;
use pool_testkit::servers::{self, Server};
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// A role no test server has.
const MISSING_ROLE: &str = "pool_conformance_no_such_role";

pub(crate) struct Postgres {
    /// The server; a throwaway one stops when this is dropped.
    _server: Option<Server>,
    /// How to reach it.
    pub(crate) config: tokio_postgres::Config,
    /// The `application_name` of every connection the suite's pools open.
    pub(crate) app: String,
    /// The server's own words when [`MISSING_ROLE`] connects, found once up front.
    pub(crate) wrong_credentials_message: String,
    /// The restart case's throwaway server, started on first use.
    pub(crate) restartable: servers::Restartable,
}

impl Postgres {
    /// A backend that reaches no server: enough to list the cases.
    pub(crate) fn for_listing() -> Self {
        Postgres {
            _server: None,
            config: tokio_postgres::Config::new(),
            app: String::new(),
            wrong_credentials_message: String::new(),
            restartable: servers::Restartable::new(servers::Database::Postgres),
        }
    }

    pub(crate) fn new(server: Server) -> Result<Self, String> {
        let config: tokio_postgres::Config = server
            .url()
            .parse()
            .map_err(|e| format!("the test server's URL is not a postgres URL: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let app = format!("pool_conformance_{}_{nanos}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
        let wrong_credentials_message =
            runtime.block_on(probe(&config, &pool_postgres::Manager::new(config.clone())))?;
        Ok(Postgres {
            _server: Some(server),
            config,
            app,
            wrong_credentials_message,
            restartable: servers::Restartable::new(servers::Database::Postgres),
        })
    }

    /// A connection outside the pools, for looking at and acting on the server.
    async fn admin(&self) -> Result<tokio_postgres::Client, String> {
        let mut config = self.config.clone();
        config.application_name("pool_conformance_admin");
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| format!("admin connect: {}", chain(&e)))?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// Checks the server answers and returns what it says to a role that does not exist
/// (with trust auth, `role "..." does not exist`; with password auth, `password
/// authentication failed for user "..."`).
async fn probe(config: &tokio_postgres::Config, shown: &Manager) -> Result<String, String> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        format!(
            "no postgres server at {shown}: {}\nset POOL_TEST_POSTGRES_URL to a server \
             the tests may use",
            chain(&e)
        )
    })?;
    // Close it politely: without the client the connection says goodbye and ends.
    drop(client);
    let _ = connection.await;
    let mut wrong = config.clone();
    wrong.user(MISSING_ROLE);
    match wrong.connect(NoTls).await {
        Ok(_) => Err(format!("the server let the missing role {MISSING_ROLE} in")),
        Err(e) => match e.as_db_error() {
            Some(db) => Ok(db.message().to_owned()),
            None => Err(format!(
                "connecting as {MISSING_ROLE} failed without a server error: {}",
                chain(&e)
            )),
        },
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

fn pg(e: tokio_postgres::Error) -> String {
    chain(&e)
}

/// The first column of the first row of a simple query's answer.
fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

#[async_trait::async_trait]
impl Backend for Postgres {
    type Manager = Manager;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn wrong_credentials_message(&self) -> String {
        self.wrong_credentials_message.clone()
    }

    async fn manager(&self) -> Manager {
        let mut config = self.config.clone();
        config.application_name(&self.app);
        Manager::new(config)
    }

    /// The first host and port of the config, resolved (a `host=/run/postgresql`
    /// socket directory has no TCP address).
    fn server_address(&self) -> Result<SocketAddr, String> {
        let host = match self.config.get_hostaddrs().first() {
            Some(ip) => ip.to_string(),
            None => match self.config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                Some(other) => {
                    return Err(format!(
                        "the test server is reached through {other:?}, not TCP"
                    ))
                }
                None => "localhost".to_owned(),
            },
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port} resolves to no address"))
    }

    /// [`manager`](Backend::manager)'s config (user, password, database, options,
    /// TLS mode, `application_name`) with `address` as its only host: tokio-postgres's
    /// config can add hosts but not remove them, so it is copied field by field.
    async fn manager_at(&self, address: SocketAddr) -> Result<Manager, String> {
        let from = &self.config;
        let mut config = tokio_postgres::Config::new();
        if let Some(user) = from.get_user() {
            config.user(user);
        }
        if let Some(password) = from.get_password() {
            config.password(password);
        }
        if let Some(dbname) = from.get_dbname() {
            config.dbname(dbname);
        }
        if let Some(options) = from.get_options() {
            config.options(options);
        }
        config
            .ssl_mode(from.get_ssl_mode())
            .channel_binding(from.get_channel_binding())
            .host(address.ip().to_string())
            .port(address.port())
            .application_name(&self.app);
        Ok(Manager::new(config))
    }

    async fn manager_with_wrong_credentials(&self) -> Manager {
        let mut config = self.config.clone();
        config.application_name(&self.app);
        config.user(MISSING_ROLE);
        Manager::new(config)
    }

    async fn round_trip(&self, conn: &mut PgConnection) -> Result<(), String> {
        let answer = conn.simple_query("SELECT 1").await.map_err(pg)?;
        match first_value(&answer).as_deref() {
            Some("1") => Ok(()),
            other => Err(format!("SELECT 1 answered {other:?}")),
        }
    }

    /// A session setting, then a transaction left open: the way a careless user leaves
    /// a session, through the connection's own `batch_execute`.
    async fn dirty_session(&self, conn: &mut PgConnection) -> Result<(), String> {
        conn.batch_execute("SET pool_test.marker = 'dirty'")
            .await
            .map_err(pg)?;
        conn.batch_execute("BEGIN").await.map_err(pg)
    }

    /// No marker setting and no open transaction. Asked with a single-statement simple
    /// query: outside a transaction block that statement is its own transaction, so
    /// `now()` equals `statement_timestamp()`; inside one begun earlier it does not.
    async fn is_clean(&self, conn: &mut PgConnection) -> Result<bool, String> {
        let answer = conn
            .client()
            .simple_query(
                "SELECT coalesce(current_setting('pool_test.marker', true), '') = '' \
                        AND now() = statement_timestamp()",
            )
            .await
            .map_err(pg)?;
        match first_value(&answer).as_deref() {
            Some("t") => Ok(true),
            Some("f") => Ok(false),
            other => Err(format!("the clean check answered {other:?}")),
        }
    }

    async fn server_id(&self, conn: &mut PgConnection) -> Result<u64, String> {
        let answer = conn
            .client()
            .simple_query("SELECT pg_backend_pid()")
            .await
            .map_err(pg)?;
        first_value(&answer)
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| "pg_backend_pid() gave no number".to_owned())
    }

    async fn kill(&self, server_id: u64) -> Result<(), String> {
        let pid = i32::try_from(server_id).map_err(|_| format!("pid {server_id} too large"))?;
        let admin = self.admin().await?;
        let terminated: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .map_err(pg)?
            .get(0);
        if !terminated {
            return Err(format!("pg_terminate_backend({pid}) found no such backend"));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await
                .map_err(pg)?
                .get(0);
            if alive == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("backend {pid} still there 10s after termination"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn server_connections(&self) -> Result<usize, String> {
        let admin = self.admin().await?;
        let count: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&self.app],
            )
            .await
            .map_err(pg)?
            .get(0);
        usize::try_from(count).map_err(|_| format!("a negative count: {count}"))
    }

    async fn restartable_manager(&self) -> Result<Manager, String> {
        let url = self.restartable.url().await?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("the throwaway server's URL: {e}"))?;
        config.application_name(format!("{}_restartable", self.app));
        Ok(Manager::new(config))
    }

    async fn stop_restartable(&self) -> Result<(), String> {
        self.restartable.stop().await
    }

    async fn start_restartable(&self) -> Result<(), String> {
        self.restartable.start().await
    }
}

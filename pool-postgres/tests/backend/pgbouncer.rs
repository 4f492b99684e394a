//! The postgres conformance backend behind PgBouncer in `pool_mode = transaction`
//! (`conformance_pgbouncer.rs`): the suite's pools connect to a throwaway PgBouncer
//! (`pool_testkit::servers::pgbouncer`) in front of the test server, in
//! `StatementMode::Unnamed`.
//!
//! What the server side means here: a pool's connection is a *client* of PgBouncer,
//! which lends it one of its own server connections per transaction. So a connection's
//! server-side id is its PgBouncer client (its port and connect time, from the admin
//! console's `SHOW CLIENTS`), the connections counted are PgBouncer's clients with this
//! run's `application_name`, a kill goes through the console, and the restart case
//! restarts a PgBouncer of its own (what the pools connect to) in front of the same
//! server. The session state a client of a transaction pooler owns is its open
//! transaction, so that is what `dirty_session` leaves behind.
//!
//! The plain postgres backend (`Postgres`, the parent module) supplies what is the same
//! through the pooler: the round trip and the clean check, and the upstream server.

// Every target that shares `mod backend;` compiles this file; only the PgBouncer
// target uses it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pool_postgres::{Manager, PgConnection, StatementMode};
use pool_testkit::conformance::Backend;
use pool_testkit::servers::{PgBouncer, RestartablePgBouncer, Server};
use tokio_postgres::{NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::{first_value, pg, Postgres, MISSING_ROLE};

/// The case a PgBouncer 1.18 cannot serve, and why.
const KILL_ONE_CLIENT: (&str, &str) = (
    "killed_while_in_use_fails_only_that_user",
    "PgBouncer cannot drop one client connection: its admin console's KILL drops every \
     client of a database (KILL_CLIENT came in PgBouncer 1.24), and terminating the server \
     backend does not reach the client, which in transaction pooling holds no server \
     connection between transactions",
);

pub(crate) struct PgBouncerBackend {
    /// Field order is drop order: the PgBouncers stop before the upstream server.
    bouncer: Option<PgBouncer>,
    /// The restart case's PgBouncer, started on first use.
    restartable: RestartablePgBouncer,
    /// Whether the restart case started it, so its console knows connections too.
    restartable_used: AtomicBool,
    /// The upstream server, its plain backend.
    postgres: Postgres,
    /// PgBouncer's client config (its URL).
    config: tokio_postgres::Config,
    /// The database the pools connect to: the console's `KILL` and `RESUME` take it.
    database: String,
    /// PgBouncer's words when [`MISSING_ROLE`] connects.
    wrong_credentials_message: String,
    /// Clients gone with a `KILL` of the whole database (see `kill`).
    killed: Mutex<HashSet<u64>>,
}

impl PgBouncerBackend {
    /// A backend that reaches no server: enough to list the cases.
    pub(crate) fn for_listing() -> Self {
        PgBouncerBackend {
            bouncer: None,
            restartable: RestartablePgBouncer::new(""),
            restartable_used: AtomicBool::new(false),
            postgres: Postgres::for_listing(),
            config: tokio_postgres::Config::new(),
            database: String::new(),
            wrong_credentials_message: String::new(),
            killed: Mutex::default(),
        }
    }

    /// Starts a PgBouncer in front of `upstream` (blocks; call it outside a runtime).
    pub(crate) fn new(upstream: Server) -> Result<Self, String> {
        let bouncer = pool_testkit::servers::pgbouncer(&upstream)
            .map_err(|e| format!("a PgBouncer in front of the test server: {e}"))?;
        let restartable = RestartablePgBouncer::new(upstream.url());
        let postgres = Postgres::new(upstream)?;
        let config: tokio_postgres::Config = bouncer
            .url()
            .parse()
            .map_err(|e| format!("PgBouncer's URL is not a postgres URL: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
        let shown = Manager::new(config.clone());
        let wrong_credentials_message = runtime.block_on(super::probe(&config, &shown))?;
        Ok(PgBouncerBackend {
            database: bouncer.database().to_owned(),
            bouncer: Some(bouncer),
            restartable,
            restartable_used: AtomicBool::new(false),
            postgres,
            config,
            wrong_credentials_message,
            killed: Mutex::default(),
        })
    }

    /// A manager like the suite's pools use: unnamed statements, this run's name.
    fn manager_for(&self, mut config: tokio_postgres::Config, app: &str) -> Manager {
        config.application_name(app);
        Manager::new(config).statement_mode(StatementMode::Unnamed)
    }

    /// A connection to the admin console at `url`, opened per call: each case runs on
    /// a runtime of its own.
    async fn console_at(url: &str) -> Result<tokio_postgres::Client, String> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| format!("PgBouncer's console at {url}: {}", pg(e)))?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn console(&self) -> Result<tokio_postgres::Client, String> {
        let bouncer = self.bouncer.as_ref().ok_or("no PgBouncer: listing only")?;
        Self::console_at(bouncer.admin_url()).await
    }

    /// The consoles of every PgBouncer of this run: the main one, and the restart
    /// case's once it is in use.
    async fn consoles(&self) -> Result<Vec<tokio_postgres::Client>, String> {
        let mut consoles = vec![self.console().await?];
        if self.restartable_used.load(Ordering::Acquire) {
            let url = self.restartable.admin_url().await?;
            consoles.push(Self::console_at(&url).await?);
        }
        Ok(consoles)
    }

    /// The clients of the suite's database on one PgBouncer, with their ids.
    async fn clients(
        &self,
        console: &tokio_postgres::Client,
    ) -> Result<Vec<(u64, SimpleQueryRow)>, String> {
        let rows = show(console, "CLIENTS").await?;
        Ok(rows
            .into_iter()
            .filter(|row| row.get("database") == Some(self.database.as_str()))
            .filter_map(|row| Some((client_id(&row)?, row)))
            .collect())
    }

    /// The id of the PgBouncer client that server backend `pid` is lent to, on any of
    /// this run's PgBouncers.
    async fn client_linked_to(&self, pid: &str) -> Result<u64, String> {
        for console in self.consoles().await? {
            let servers = show(&console, "SERVERS").await?;
            let Some(server) = servers
                .iter()
                .find(|row| row.get("remote_pid") == Some(pid))
            else {
                continue;
            };
            let link = server.get("link").unwrap_or_default();
            let clients = show(&console, "CLIENTS").await?;
            return clients
                .iter()
                .find(|row| !link.is_empty() && row.get("ptr") == Some(link))
                .and_then(client_id)
                .ok_or_else(|| {
                    format!("PgBouncer's server connection to backend {pid} is lent to no client")
                });
        }
        Err(format!(
            "no PgBouncer of this run has a server connection to backend {pid}"
        ))
    }
}

/// A console `SHOW` (`CLIENTS`, `SERVERS`)'s rows.
async fn show(console: &tokio_postgres::Client, what: &str) -> Result<Vec<SimpleQueryRow>, String> {
    let messages = console
        .simple_query(&format!("SHOW {what}"))
        .await
        .map_err(|e| format!("SHOW {what}: {}", pg(e)))?;
    Ok(messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect())
}

/// A PgBouncer client's id: its connect time's digits and its port
/// (`20261123134507` and `57962` give `2026112313450757962`), unique among the clients
/// of one PgBouncer over a run.
fn client_id(row: &SimpleQueryRow) -> Option<u64> {
    let port: u64 = row.get("port")?.parse().ok()?;
    let time: String = row
        .get("connect_time")?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    time.parse::<u64>()
        .ok()?
        .checked_mul(100_000)?
        .checked_add(port)
}

#[async_trait::async_trait]
impl Backend for PgBouncerBackend {
    type Manager = Manager;

    fn name(&self) -> &'static str {
        "postgres-pgbouncer"
    }

    fn wrong_credentials_message(&self) -> String {
        self.wrong_credentials_message.clone()
    }

    async fn manager(&self) -> Manager {
        self.manager_for(self.config.clone(), &self.postgres.app)
    }

    async fn manager_with_wrong_credentials(&self) -> Manager {
        let mut config = self.config.clone();
        config.user(MISSING_ROLE);
        self.manager_for(config, &self.postgres.app)
    }

    async fn round_trip(&self, conn: &mut PgConnection) -> Result<(), String> {
        self.postgres.round_trip(conn).await
    }

    /// A transaction left open with a setting made in it: the state a client of a
    /// transaction pooler owns (a session-level `SET` would land on whichever server
    /// connection PgBouncer lends, not on this client).
    async fn dirty_session(&self, conn: &mut PgConnection) -> Result<(), String> {
        conn.batch_execute("BEGIN; SET LOCAL pool_test.marker = 'dirty'")
            .await
            .map_err(pg)
    }

    async fn is_clean(&self, conn: &mut PgConnection) -> Result<bool, String> {
        self.postgres.is_clean(conn).await
    }

    /// The connection's PgBouncer client: the backend that answers inside a transaction
    /// (which keeps the server connection lent to this client) is looked up in
    /// `SHOW SERVERS`, and its link in `SHOW CLIENTS`. A transaction already open is
    /// used as it is, and left open.
    async fn server_id(&self, conn: &mut PgConnection) -> Result<u64, String> {
        let client = conn.client();
        let in_transaction = first_value(
            &client
                .simple_query("SELECT now() <> statement_timestamp()")
                .await
                .map_err(pg)?,
        )
        .as_deref()
            == Some("t");
        if !in_transaction {
            client.batch_execute("BEGIN").await.map_err(pg)?;
        }
        let pid = client
            .simple_query("SELECT pg_backend_pid()")
            .await
            .map_err(pg)
            .and_then(|answer| first_value(&answer).ok_or_else(|| "no pid".to_owned()));
        let id = match pid {
            Ok(pid) => self.client_linked_to(&pid).await,
            Err(e) => Err(e),
        };
        if !in_transaction {
            client.batch_execute("COMMIT").await.map_err(pg)?;
        }
        id
    }

    /// Kills client `server_id` with the console's `KILL` of the suite's database, then
    /// `RESUME`s it: PgBouncer 1.18 can drop only every client of a database at once,
    /// so the others go too (and later kills of those find them gone, which is what
    /// was asked). Returns once PgBouncer no longer lists the client.
    async fn kill(&self, server_id: u64) -> Result<(), String> {
        let console = self.console().await?;
        let clients = self.clients(&console).await?;
        if !clients.iter().any(|(id, _)| *id == server_id) {
            let killed = self.killed.lock().unwrap_or_else(PoisonError::into_inner);
            return if killed.contains(&server_id) {
                Ok(())
            } else {
                Err(format!("PgBouncer has no client {server_id}"))
            };
        }
        self.killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(clients.iter().map(|(id, _)| *id));
        let db = &self.database;
        console
            .batch_execute(&format!("KILL {db}"))
            .await
            .map_err(|e| format!("KILL {db}: {}", pg(e)))?;
        console
            .batch_execute(&format!("RESUME {db}"))
            .await
            .map_err(|e| format!("RESUME {db}: {}", pg(e)))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let clients = self.clients(&console).await?;
            if !clients.iter().any(|(id, _)| *id == server_id) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "PgBouncer client {server_id} still there 10s after KILL"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// PgBouncer's clients with this run's `application_name`.
    async fn server_connections(&self) -> Result<usize, String> {
        let console = self.console().await?;
        let clients = self.clients(&console).await?;
        Ok(clients
            .iter()
            .filter(|(_, row)| row.get("application_name") == Some(self.postgres.app.as_str()))
            .count())
    }

    async fn restartable_manager(&self) -> Result<Manager, String> {
        let url = self.restartable.url().await?;
        self.restartable_used.store(true, Ordering::Release);
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("the restartable PgBouncer's URL: {e}"))?;
        Ok(self.manager_for(config, &format!("{}_restartable", self.postgres.app)))
    }

    async fn stop_restartable(&self) -> Result<(), String> {
        self.restartable.stop().await
    }

    async fn start_restartable(&self) -> Result<(), String> {
        self.restartable.start().await
    }

    fn not_applicable(&self, case: &str) -> Option<String> {
        (case == KILL_ONE_CLIENT.0).then(|| KILL_ONE_CLIENT.1.to_owned())
    }

    /// PgBouncer's address: what the pools connect to.
    fn server_address(&self) -> Result<SocketAddr, String> {
        let bouncer = self.bouncer.as_ref().ok_or("no PgBouncer: listing only")?;
        Ok(SocketAddr::from(([127, 0, 0, 1], bouncer.port())))
    }

    async fn manager_at(&self, address: SocketAddr) -> Result<Manager, String> {
        // A config of its own: `host` and `port` add to a config's lists.
        let mut config = tokio_postgres::Config::new();
        config.host(address.ip().to_string()).port(address.port());
        if let Some(user) = self.config.get_user() {
            config.user(user);
        }
        if let Some(dbname) = self.config.get_dbname() {
            config.dbname(dbname);
        }
        Ok(self.manager_for(config, &self.postgres.app))
    }
}

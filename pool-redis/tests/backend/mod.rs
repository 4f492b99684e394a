//! The redis conformance backend, shared by the test targets that drive a real server
//! (the conformance suite; see `conformance.rs`).

pub(crate) mod chaos;
pub(crate) mod cluster;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use pool_redis::redis::{self, Value};
use pool_redis::{Manager, RedisConnection};
use pool_testkit::conformance::Backend;
use pool_testkit::servers::{self, Server};

/// An ACL user no test server has.
const MISSING_USER: &str = "pool_conformance_no_such_user";

pub(crate) struct Redis {
    /// The server; a throwaway one stops when this is dropped.
    _server: Option<Server>,
    /// How to reach it.
    pub(crate) info: redis::ConnectionInfo,
    /// The `CLIENT SETNAME` of every connection the suite's pools open.
    pub(crate) name: String,
    /// The server's own words when [`MISSING_USER`] authenticates, found once up front.
    pub(crate) wrong_credentials_message: String,
    /// The restart case's throwaway server, started on first use.
    pub(crate) restartable: servers::Restartable,
}

impl Redis {
    /// A backend that reaches no server: enough to list the cases.
    pub(crate) fn for_listing() -> Self {
        Redis {
            _server: None,
            info: "redis://127.0.0.1".parse().expect("a constant URL parses"),
            name: String::new(),
            wrong_credentials_message: String::new(),
            restartable: servers::Restartable::new(servers::Database::Redis),
        }
    }

    pub(crate) fn new(server: Server) -> Result<Self, String> {
        let info: redis::ConnectionInfo = server
            .url()
            .parse()
            .map_err(|e| format!("the test server's URL is not a redis URL: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("pool_conformance_{}_{nanos}", std::process::id());
        let wrong_credentials_message = probe(&info)?;
        Ok(Redis {
            _server: Some(server),
            info,
            name,
            wrong_credentials_message,
            restartable: servers::Restartable::new(servers::Database::Redis),
        })
    }

    /// A connection outside the pools, for looking at and acting on the server.
    async fn admin(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        redis::Client::open(self.info.clone())
            .map_err(|e| format!("admin client: {e}"))?
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("admin connect: {e}"))
    }
}

/// Checks the server answers, and returns what it says when [`MISSING_USER`]
/// authenticates (Redis 6 and later: `invalid username-password pair or user is
/// disabled.`).
fn probe(info: &redis::ConnectionInfo) -> Result<String, String> {
    let shown = Manager::new(info.clone());
    let mut conn = redis::Client::open(info.clone())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
        .map_err(|e| {
            format!(
                "no redis server at {shown}: {e}\nset POOL_TEST_REDIS_URL to a server the \
                 tests may use"
            )
        })?;
    match redis::cmd("AUTH")
        .arg(MISSING_USER)
        .arg("wrong")
        .query::<Value>(&mut conn)
    {
        Ok(_) => Err(format!("the server let the missing user {MISSING_USER} in")),
        Err(e) => e.detail().map(str::to_owned).ok_or_else(|| {
            format!("AUTH as {MISSING_USER} failed without the server's words: {e}")
        }),
    }
}

/// A reply as text (a simple, bulk or verbatim string).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::SimpleString(s) => Some(s.clone()),
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Backend for Redis {
    type Manager = Manager;

    fn name(&self) -> &'static str {
        "redis"
    }

    fn wrong_credentials_message(&self) -> String {
        self.wrong_credentials_message.clone()
    }

    async fn manager(&self) -> Manager {
        Manager::new(self.info.clone()).client_name(&self.name)
    }

    fn server_address(&self) -> Result<SocketAddr, String> {
        let (host, port) = match self.info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host, port),
            redis::ConnectionAddr::TcpTls { .. } => {
                return Err("the test server is reached through TLS, not plain TCP".into())
            }
            _ => return Err("the test server is reached through a Unix socket, not TCP".into()),
        };
        (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {host}:{port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host}:{port} resolves to no address"))
    }

    /// [`manager`](Backend::manager)'s settings (credentials, database, client name)
    /// with `address` as its TCP address.
    async fn manager_at(&self, address: SocketAddr) -> Result<Manager, String> {
        let addr = redis::ConnectionAddr::Tcp(address.ip().to_string(), address.port());
        Ok(Manager::new(self.info.clone().set_addr(addr)).client_name(&self.name))
    }

    async fn manager_with_wrong_credentials(&self) -> Manager {
        let settings = self
            .info
            .redis_settings()
            .clone()
            .set_username(MISSING_USER)
            .set_password("wrong");
        Manager::new(self.info.clone().set_redis_settings(settings)).client_name(&self.name)
    }

    async fn round_trip(&self, conn: &mut RedisConnection) -> Result<(), String> {
        let answer: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(format!("PING answered {answer:?}"))
        }
    }

    /// Another database selected, then a transaction left open: the way a careless
    /// user leaves a connection, through the connection's own commands.
    async fn dirty_session(&self, conn: &mut RedisConnection) -> Result<(), String> {
        let other = (self.info.redis_settings().db() + 1) % 16;
        redis::cmd("SELECT")
            .arg(other)
            .query_async::<()>(&mut *conn)
            .await
            .map_err(|e| format!("SELECT {other}: {e}"))?;
        redis::cmd("MULTI")
            .query_async::<()>(conn)
            .await
            .map_err(|e| format!("MULTI: {e}"))
    }

    /// Not inside `MULTI` (where `CLIENT INFO` would only be queued) and on the
    /// configured database. Asked through the inner connection, so asking changes
    /// nothing the pool follows.
    async fn is_clean(&self, conn: &mut RedisConnection) -> Result<bool, String> {
        let reply = conn
            .inner()
            .send_packed_command(redis::cmd("CLIENT").arg("INFO"))
            .await
            .map_err(|e| format!("CLIENT INFO: {e}"))?;
        let info = text(&reply).ok_or_else(|| format!("CLIENT INFO answered {reply:?}"))?;
        if info == "QUEUED" {
            return Ok(false);
        }
        let db = format!("db={}", self.info.redis_settings().db());
        let fields: Vec<&str> = info.split_whitespace().collect();
        Ok(fields.contains(&"multi=-1") && fields.contains(&db.as_str()))
    }

    /// `CLIENT ID`; inside `MULTI`, where it would only be queued, the id the
    /// connection read with `CLIENT ID` when it was opened.
    async fn server_id(&self, conn: &mut RedisConnection) -> Result<u64, String> {
        let reply = conn
            .inner()
            .send_packed_command(redis::cmd("CLIENT").arg("ID"))
            .await
            .map_err(|e| format!("CLIENT ID: {e}"))?;
        match reply {
            Value::Int(id) => {
                let id = u64::try_from(id).map_err(|_| format!("CLIENT ID answered {id}"))?;
                if id != conn.client_id() {
                    return Err(format!(
                        "CLIENT ID answered {id}, the connection opened as {}",
                        conn.client_id()
                    ));
                }
                Ok(id)
            }
            other if text(&other).as_deref() == Some("QUEUED") => Ok(conn.client_id()),
            other => Err(format!("CLIENT ID answered {other:?}")),
        }
    }

    async fn kill(&self, server_id: u64) -> Result<(), String> {
        let mut admin = self.admin().await?;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(server_id)
            .query_async(&mut admin)
            .await
            .map_err(|e| format!("CLIENT KILL ID {server_id}: {e}"))?;
        if killed != 1 {
            return Err(format!(
                "CLIENT KILL ID {server_id} killed {killed} clients"
            ));
        }
        let needle = format!("id={server_id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut admin)
                .await
                .map_err(|e| format!("CLIENT LIST: {e}"))?;
            let alive = list
                .lines()
                .any(|line| line.split_whitespace().next() == Some(needle.as_str()));
            if !alive {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "client {server_id} still listed 10s after CLIENT KILL"
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn server_connections(&self) -> Result<usize, String> {
        let mut admin = self.admin().await?;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut admin)
            .await
            .map_err(|e| format!("CLIENT LIST: {e}"))?;
        let needle = format!("name={}", self.name);
        Ok(list
            .lines()
            .filter(|line| line.split_whitespace().any(|field| field == needle))
            .count())
    }

    async fn restartable_manager(&self) -> Result<Manager, String> {
        let url = self.restartable.url().await?;
        Ok(Manager::from_url(&url)
            .map_err(|e| format!("the throwaway server's URL: {e}"))?
            .client_name(format!("{}_restartable", self.name)))
    }

    async fn stop_restartable(&self) -> Result<(), String> {
        self.restartable.stop().await
    }

    async fn start_restartable(&self) -> Result<(), String> {
        self.restartable.start().await
    }
}

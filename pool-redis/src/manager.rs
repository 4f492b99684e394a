//! The `pool_core::Manager` for the redis crate's async connections.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::{ConnectionInfo, ReturnState};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisError, Value};

use crate::connection::RedisConnection;
use crate::error::{is_auth_failure, ConfigError, Error};
use crate::reset::{add_auth, read_reset_replies, ResetReplies, SessionSetup};

/// Opens, checks and resets [`RedisConnection`]s for a [`Pool`](crate::Pool).
///
/// Every connection it opens is a server connection of its own (its own socket and
/// `CLIENT ID`); see the [crate docs](crate#one-server-connection-per-pooled-connection)
/// for how that differs from sharing one multiplexed connection.
///
/// # Opening
/// The socket is opened by this crate (TCP with `TCP_NODELAY`, or a Unix socket; over
/// TLS the redis crate opens it), then the redis crate's handshake runs (`HELLO` on
/// RESP3, the database, the library name), then one more round trip: `AUTH` on RESP2
/// (done here rather than by the redis crate so that a refusal keeps the server's own
/// words), `CLIENT SETNAME` when a [`client_name`](Self::client_name) is set, and
/// `CLIENT ID`. The redis crate's own connect and response timeouts are off unless set
/// here: the pool's `connect_timeout` and `recycle_timeout` bound connects and checks.
///
/// # Checks and resets
/// When a check is due the manager sends `PING`. A connection that comes back dirty
/// (see [`RedisConnection`]) is reset instead, in one round trip: `RESET` (Redis 6.2 and
/// later: leaves `MULTI`, unwatches, unsubscribes, ends client tracking and `MONITOR`,
/// selects database 0, drops the name and the authentication), then what the
/// connection is configured with again (`HELLO 3` on RESP3, `AUTH`, `SELECT`,
/// `CLIENT SETNAME`). On a server without `RESET` the reset is `DISCARD`, `UNWATCH`,
/// `CLIENT TRACKING OFF`, `AUTH`, `SELECT` and `CLIENT SETNAME`, and a subscribed
/// connection is discarded instead.
#[derive(Clone)]
pub struct Manager {
    info: redis::ConnectionInfo,
    client_name: Option<String>,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    target: String,
    /// The server answered `RESET` with "unknown command": use the older commands.
    no_reset: Arc<AtomicBool>,
}

impl Manager {
    /// A manager connecting with the redis crate's `info` (address, credentials,
    /// database, protocol).
    pub fn new(info: redis::ConnectionInfo) -> Self {
        let target = crate::redact::describe(&info);
        Manager {
            info,
            client_name: None,
            connect_timeout: None,
            response_timeout: None,
            target,
            no_reset: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A manager for a URL: `redis://[user][:password@]host[:port][/db]`,
    /// `rediss://...` (needs the `tls` feature), or
    /// `unix:///path/to/redis.sock[?db=N&user=U&pass=P]`. `?protocol=resp3` asks for
    /// RESP3.
    ///
    /// ```
    /// let manager = pool_redis::Manager::from_url("redis://app:secret@cache:6380/2")?;
    /// assert_eq!(manager.to_string(), "redis://app:***@cache:6380/2");
    ///
    /// let err = pool_redis::Manager::from_url("redis://app:secret@cache:port/2").unwrap_err();
    /// assert!(err.to_string().contains("invalid port number"), "{err}");
    /// assert!(!err.to_string().contains("secret"), "{err}");
    /// # Ok::<(), pool_redis::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Ok(Manager::new(parse_url(url)?))
    }

    /// A manager for a `rediss://` URL that trusts the certificates in `certs` (a root
    /// certificate in PEM, and a client certificate for mutual TLS) rather than the
    /// system's. Needs the `tls` feature.
    #[cfg(feature = "tls")]
    pub fn with_tls_certificates(
        url: &str,
        certs: redis::TlsCertificates,
    ) -> Result<Self, ConfigError> {
        let info = parse_url(url)?;
        let client = redis::Client::build_with_tls(info, certs)
            .map_err(|e| ConfigError::url(url, redis_problem(&e)))?;
        Ok(Manager::new(client.get_connection_info().clone()))
    }

    /// Names every connection with `CLIENT SETNAME` (shown by `CLIENT LIST`), again
    /// after each reset.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Bounds the driver's own connect (resolve, socket, handshake); the pool's
    /// `connect_timeout` bounds it too. Off by default.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// Bounds the wait for every reply on the connection (the redis crate's response
    /// timeout). Off by default, so blocking commands may block; a command that runs
    /// out of time fails and makes the connection dirty.
    pub fn response_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.response_timeout = timeout.into();
        self
    }

    /// The redis crate's connection settings this manager connects with.
    pub fn connection_info(&self) -> &redis::ConnectionInfo {
        &self.info
    }

    /// The name set by [`client_name`](Self::client_name).
    pub fn get_client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    fn resp3(&self) -> bool {
        self.info.redis_settings().protocol().supports_resp3()
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(self.response_timeout)
    }

    /// Opens the socket and runs the handshake.
    async fn open(&self, runtime: &tokio::runtime::Handle) -> Result<RedisConnection, Error> {
        let settings = self.info.redis_settings();
        let resp3 = self.resp3();
        // On RESP2 with a password this crate sends `AUTH` itself: the redis crate
        // replaces the server's refusal by its own words. `SELECT` must then follow it.
        let own_auth = !resp3 && settings.password().is_some();
        let handshake = if own_auth {
            redis::RedisConnectionInfo::default()
                .set_protocol(settings.protocol())
                .set_skip_set_lib_name()
        } else {
            settings.clone()
        };
        let handshake_failed = |source: RedisError| self.handshake_error("handshake", source);
        let (mut inner, task) = match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let stream = self.tcp(host, *port).await?;
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(&handshake, stream, self.async_config())
                        .await
                        .map_err(handshake_failed)?;
                (conn, Some(self.spawn_driver(runtime, driver)))
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|source| Error::Connect {
                        target: self.target.clone(),
                        source,
                    })?;
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(&handshake, stream, self.async_config())
                        .await
                        .map_err(handshake_failed)?;
                (conn, Some(self.spawn_driver(runtime, driver)))
            }
            // TLS: the redis crate opens the socket and drives it.
            _ => {
                let client = redis::Client::open(self.info.clone().set_redis_settings(handshake))
                    .map_err(|e| self.handshake_error("connect", e))?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&self.async_config())
                    .await
                    .map_err(|e| self.handshake_error("connect", e))?;
                (conn, None)
            }
        };

        let mut setup = redis::pipe();
        let mut steps: Vec<&'static str> = Vec::new();
        if own_auth {
            add_auth(&mut setup, settings);
            steps.push("AUTH");
            if settings.db() != 0 {
                setup.cmd("SELECT").arg(settings.db());
                steps.push("SELECT");
            }
        }
        if let Some(name) = &self.client_name {
            setup.cmd("CLIENT").arg("SETNAME").arg(name);
            steps.push("CLIENT SETNAME");
        }
        setup.cmd("CLIENT").arg("ID");
        steps.push("CLIENT ID");
        let replies = inner
            .send_packed_commands(&setup, 0, steps.len())
            .await
            .map_err(|e| self.handshake_error("setup", e))?;
        let mut client_id = None;
        for (step, reply) in steps.iter().zip(replies) {
            match reply {
                Value::ServerError(e) => return Err(self.handshake_error(step, e.into())),
                Value::Int(id) if *step == "CLIENT ID" => client_id = u64::try_from(id).ok(),
                _ => {}
            }
        }
        let client_id = client_id.ok_or_else(|| {
            self.handshake_error(
                "CLIENT ID",
                RedisError::from((redis::ErrorKind::Client, "CLIENT ID gave no number")),
            )
        })?;
        Ok(RedisConnection::new(
            inner,
            task,
            client_id,
            settings.db(),
            resp3,
        ))
    }

    /// Spawns the future that drives a connection's socket; it ends when the socket
    /// closes (the server closed it, the network failed) or the connection is dropped.
    fn spawn_driver(
        &self,
        runtime: &tokio::runtime::Handle,
        driver: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::AbortHandle {
        let target = self.target.clone();
        runtime
            .spawn(async move {
                driver.await;
                tracing::debug!(%target, "redis connection socket closed");
            })
            .abort_handle()
    }

    /// A TCP connection to the first address of `host` that accepts one.
    async fn tcp(&self, host: &str, port: u16) -> Result<tokio::net::TcpStream, Error> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| Error::Resolve {
                target: self.target.clone(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        if addrs.is_empty() {
            return Err(Error::Resolve {
                target: self.target.clone(),
                source: last,
            });
        }
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(Error::Connect {
            target: self.target.clone(),
            source: last,
        })
    }

    /// A handshake error, named as an authentication failure when it is one.
    fn handshake_error(&self, step: &'static str, source: RedisError) -> Error {
        let target = self.target.clone();
        if is_auth_failure(&source) {
            Error::Auth { target, source }
        } else {
            Error::Handshake {
                target,
                step,
                source,
            }
        }
    }

    /// What a fresh connection is configured with, for resets.
    fn setup(&self) -> SessionSetup<'_> {
        SessionSetup::new(self.info.redis_settings(), self.client_name.as_deref())
    }

    /// Resets the session of a dirty connection (see the type's docs).
    async fn reset(&self, conn: &mut RedisConnection) -> Result<(), Error> {
        loop {
            let with_reset = !self.no_reset.load(Ordering::Relaxed);
            let (pipe, steps) = self.setup().reset_pipeline(conn.session(), with_reset)?;
            let replies = match conn
                .inner()
                .send_packed_commands(&pipe, 0, steps.len())
                .await
            {
                Ok(replies) => replies,
                Err(source) => {
                    conn.note_error(&source);
                    return Err(Error::Recycle {
                        step: "session reset",
                        source,
                    });
                }
            };
            match read_reset_replies(&steps, replies) {
                ResetReplies::Done => {
                    conn.mark_clean();
                    return Ok(());
                }
                ResetReplies::NoReset => {
                    // An older server: remember, and run the older commands instead.
                    tracing::debug!(target = %self.target, "the server has no RESET; resetting with the older commands");
                    self.no_reset.store(true, Ordering::Relaxed);
                }
                ResetReplies::Failed(source) => {
                    return Err(Error::Recycle {
                        step: "session reset",
                        source,
                    })
                }
            }
        }
    }
}

/// The redis crate's settings for a URL, with a precise error when it cannot be used.
pub(crate) fn parse_url(input: &str) -> Result<redis::ConnectionInfo, ConfigError> {
    let trimmed = input.trim();
    let parsed = url::Url::parse(trimmed).map_err(|e| ConfigError::url(input, e.to_string()))?;
    match parsed.scheme() {
        "redis" | "valkey" | "unix" | "redis+unix" | "valkey+unix" => {}
        "rediss" | "valkeys" => {
            if !cfg!(feature = "tls") {
                return Err(ConfigError::url(
                    input,
                    "TLS (`rediss://`) needs pool-redis's `tls` feature",
                ));
            }
        }
        other => {
            return Err(ConfigError::url(
                input,
                format!("`{other}://` is not a redis URL (redis://, rediss://, unix://)"),
            ))
        }
    }
    if matches!(parsed.scheme(), "redis" | "rediss" | "valkey" | "valkeys")
        && parsed.host_str().is_none_or(str::is_empty)
    {
        return Err(ConfigError::url(input, "no host given"));
    }
    parsed
        .into_connection_info()
        .map_err(|e| ConfigError::url(input, redis_problem(&e)))
}

/// The redis crate's words for a configuration problem, without its error kind.
pub(crate) fn redis_problem(err: &RedisError) -> String {
    let shown = err.to_string();
    let head = shown.split(" - ").next().unwrap_or(&shown).to_owned();
    match err.detail() {
        Some(detail) if !head.contains(detail) => format!("{head}: {detail}"),
        _ => head,
    }
}

impl fmt::Display for Manager {
    /// Where it connects, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("target", &self.target)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl pool_core::Manager for Manager {
    type Connection = RedisConnection;
    type Error = Error;

    async fn connect(&self) -> Result<RedisConnection, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoTokioRuntime)?;
        match self.connect_timeout {
            None => self.open(&runtime).await,
            Some(limit) => match tokio::time::timeout(limit, self.open(&runtime)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Connect {
                    target: self.target.clone(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {limit:?}"),
                    ),
                }),
            },
        }
    }

    async fn recycle(
        &self,
        conn: &mut RedisConnection,
        info: &ConnectionInfo,
    ) -> Result<(), Error> {
        if let Some(reason) = conn.closed_reason() {
            return Err(Error::Closed { reason });
        }
        if info.needs_reset() || conn.is_dirty() {
            return self.reset(conn).await;
        }
        match conn.inner().send_packed_command(&redis::cmd("PING")).await {
            Ok(Value::ServerError(e)) => Err(Error::Recycle {
                step: "health check",
                source: e.into(),
            }),
            Ok(_) => Ok(()),
            Err(source) => {
                conn.note_error(&source);
                Err(Error::Recycle {
                    step: "health check",
                    source,
                })
            }
        }
    }

    fn has_broken(&self, conn: &mut RedisConnection) -> bool {
        conn.is_closed()
    }

    fn target(&self) -> Option<String> {
        Some(self.target.clone())
    }

    fn return_state(&self, conn: &mut RedisConnection) -> ReturnState {
        if conn.is_dirty() {
            ReturnState::Dirty
        } else {
            ReturnState::Clean
        }
    }
}

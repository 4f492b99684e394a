//! The `pool_core::Manager` for tokio-postgres.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use pool_core::{ConnectionInfo, ReturnState};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket};

use crate::connection::{PgConnection, CLOSE_GRACE};
use crate::error::{ConfigError, Error};
use crate::url_options::{self, PoolOptions};
use crate::StatementMode;

/// The session reset run before a dirty connection is handed out again, in
/// [`StatementMode::Named`] (the default; behind a transaction pooler, in
/// [`StatementMode::Unnamed`], it is
/// [`TRANSACTION_POOLER_RESET_QUERY`](crate::TRANSACTION_POOLER_RESET_QUERY)).
///
/// It is one simple query, so one round trip. `ROLLBACK` comes first (it ends an open
/// or failed transaction; outside one it is only a warning). The rest is what
/// `DISCARD ALL` does except `DEALLOCATE ALL`: `DISCARD ALL` cannot run in a
/// multi-statement query (that is an implicit transaction block), and dropping every
/// prepared statement would break the statements tokio-postgres prepares and caches
/// for itself (its type lookups).
pub const RESET_QUERY: &str = "ROLLBACK; \
     SET SESSION AUTHORIZATION DEFAULT; \
     RESET ALL; \
     CLOSE ALL; \
     UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); \
     DISCARD PLANS; \
     DISCARD TEMP; \
     DISCARD SEQUENCES";

/// How much the manager does when the pool checks a connection before checkout.
///
/// The pool checks a connection only when a check is due: it sat idle for the pool's
/// `check_interval`, it came back dirty, or another connection was found broken since
/// its last check. A connection that came back dirty is always reset (see
/// [`StatementMode::reset_query`]), whatever the mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecycleMode {
    /// No round trip: only whether the connection task is still running.
    Fast,
    /// A round trip (an empty simple query) when a check is due. The default. Behind
    /// a transaction pooler the round trip goes through the pooler to a server
    /// connection it lends for that one query: it proves the pooler answers and can
    /// reach the server.
    #[default]
    Verified,
    /// A full session reset before every reuse, for sessions the pool cannot follow
    /// (statements run through the client directly).
    Clean,
}

/// The future that drives a connection's socket, whatever its TLS.
type ConnectionFuture = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Opens a client and its connection future: [`Manager`] holds one, so that it is one
/// type whatever TLS it connects with.
#[async_trait::async_trait]
trait Connector: Send + Sync + 'static {
    async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, ConnectionFuture), tokio_postgres::Error>;
}

/// Connects with a tokio-postgres TLS connector (`NoTls` included).
struct WithTls<T>(T);

#[async_trait::async_trait]
impl<T> Connector for WithTls<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, ConnectionFuture), tokio_postgres::Error> {
        let (client, connection) = config.connect(self.0.clone()).await?;
        Ok((client, Box::pin(connection)))
    }
}

/// Opens, checks and resets [`PgConnection`]s for a [`Pool`](crate::Pool).
///
/// [`new`](Self::new) and [`from_url`](Self::from_url) connect without TLS;
/// [`with_tls`](Self::with_tls) takes any tokio-postgres TLS connector. Needs a tokio
/// runtime: the connection task is spawned with `tokio::spawn`.
#[derive(Clone)]
pub struct Manager {
    config: tokio_postgres::Config,
    connector: Arc<dyn Connector>,
    recycle_mode: RecycleMode,
    statement_mode: StatementMode,
    target: String,
}

impl Manager {
    /// A manager connecting with tokio-postgres's `config`, without TLS.
    pub fn new(config: tokio_postgres::Config) -> Self {
        Manager::with_tls(config, NoTls)
    }

    /// A manager connecting with tokio-postgres's `config` through `tls`, a
    /// tokio-postgres TLS connector (such as `tokio-postgres-rustls`'s or
    /// `postgres-native-tls`'s); the config's `sslmode` says whether TLS is required.
    pub fn with_tls<T>(config: tokio_postgres::Config, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + Sync + 'static,
        T::TlsConnect: Send + Sync,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let target = crate::redact::describe(&config);
        Manager {
            config,
            connector: Arc::new(WithTls(tls)),
            recycle_mode: RecycleMode::default(),
            statement_mode: StatementMode::default(),
            target,
        }
    }

    /// A manager connecting through rustls with `tls` (its root certificates and
    /// verifier); the config's `sslmode` says whether TLS is required (`require`) or
    /// only preferred (`prefer`, tokio-postgres's default). Needs the `rustls` feature.
    #[cfg(feature = "rustls")]
    pub fn with_rustls(config: tokio_postgres::Config, tls: rustls::ClientConfig) -> Self {
        Manager::with_tls(config, tokio_postgres_rustls::MakeRustlsConnect::new(tls))
    }

    /// A manager for a `postgres://user:password@host:port/dbname?option=value` URL or
    /// a libpq `key=value` string (`host=db user=app dbname=x`).
    ///
    /// Besides tokio-postgres's options it reads the pool's `statement_mode`
    /// (`named` or `unnamed`, see [`StatementMode`]):
    /// `postgres://app@pgbouncer:6432/x?statement_mode=unnamed`.
    ///
    /// ```
    /// let manager = pool_postgres::Manager::from_url("postgres://app:secret@db:5432/x")?;
    /// assert_eq!(manager.to_string(), "postgres://app:***@db:5432/x");
    ///
    /// let err = pool_postgres::Manager::from_url("postgres://app:secret@db:port/x").unwrap_err();
    /// assert!(err.to_string().contains("port"), "{err}");
    /// assert!(!err.to_string().contains("secret"), "{err}");
    /// # Ok::<(), pool_postgres::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let (config, options) = parse_url(url)?;
        if config.get_hosts().is_empty() {
            return Err(ConfigError::new(url, "no host given"));
        }
        let manager = Manager::new(config);
        Ok(match options.statement_mode {
            Some(mode) => manager.statement_mode(mode),
            None => manager,
        })
    }

    /// Sets how much a due check does (the default is [`RecycleMode::Verified`]).
    pub fn recycle_mode(mut self, mode: RecycleMode) -> Self {
        self.recycle_mode = mode;
        self
    }

    /// The mode set by [`recycle_mode`](Self::recycle_mode).
    pub fn get_recycle_mode(&self) -> RecycleMode {
        self.recycle_mode
    }

    /// Sets how connections send SQL text and what a session reset does (the default
    /// is [`StatementMode::Named`]; use [`StatementMode::Unnamed`] behind a
    /// transaction pooler such as PgBouncer in `pool_mode = transaction`).
    pub fn statement_mode(mut self, mode: StatementMode) -> Self {
        self.statement_mode = mode;
        self
    }

    /// The mode set by [`statement_mode`](Self::statement_mode).
    pub fn get_statement_mode(&self) -> StatementMode {
        self.statement_mode
    }

    /// tokio-postgres's config this manager connects with.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// tokio-postgres's config for a URL or `key=value` string, and the pool's own
/// options in it.
pub(crate) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, PoolOptions), ConfigError> {
    if let Some(scheme) = pool_core::redact::url_scheme(url.trim_start()) {
        let known = ["postgres", "postgresql"];
        // tokio-postgres would read any other as a `key=value` string and report an
        // unexpected end of it.
        if !known.iter().any(|k| scheme.eq_ignore_ascii_case(k)) {
            return Err(ConfigError::new(
                url,
                format!(
                    "unsupported scheme `{scheme}://`: expected `postgres://` or `postgresql://`"
                ),
            ));
        }
    }
    let (rest, options) = url_options::split(url)?;
    let config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        let message = innermost_message(&e);
        if rest.contains('=') || rest.contains("://") {
            ConfigError::new(url, message)
        } else {
            ConfigError::new(
                url,
                format!("neither a `postgres://` URL nor a libpq `key=value` string ({message})"),
            )
        }
    })?;
    Ok((config, options))
}

/// The message of the innermost source of `err`: for a connection string, the part
/// that names the problem (`invalid value for option `port``).
fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
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
            .field("recycle_mode", &self.recycle_mode)
            .field("statement_mode", &self.statement_mode)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl pool_core::Manager for Manager {
    type Connection = PgConnection;
    type Error = Error;

    async fn connect(&self) -> Result<PgConnection, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoTokioRuntime)?;
        let connecting = self.connector.connect(&self.config);
        let connected = match self.config.get_connect_timeout() {
            // tokio-postgres bounds only each socket connect with it; libpq, whose
            // option it is, the whole connect to each host.
            Some(&limit) => {
                let hosts = u32::try_from(self.config.get_hosts().len().max(1)).unwrap_or(u32::MAX);
                let bound = limit.saturating_mul(hosts);
                tokio::time::timeout(bound, connecting).await.map_err(|_| {
                    Error::ConnectTimedOut {
                        target: self.target.clone(),
                        after: bound,
                    }
                })?
            }
            None => connecting.await,
        };
        let (client, connection) = connected.map_err(|source| Error::Connect {
            target: self.target.clone(),
            source,
        })?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        let target = self.target.clone();
        let task = runtime.spawn(async move {
            let mut connection = connection;
            let outcome = tokio::select! {
                outcome = &mut connection => outcome,
                // The `PgConnection` was dropped (and its client with it): the
                // connection is saying goodbye; give it a bounded time to.
                _ = closed_rx => {
                    match tokio::time::timeout(CLOSE_GRACE, &mut connection).await {
                        Ok(outcome) => outcome,
                        Err(_) => {
                            tracing::debug!(%target, "postgres connection did not close in time; dropping its socket");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%target, error = %e, "postgres connection ended with an error");
            }
        });
        Ok(PgConnection::new(
            client,
            closed_tx,
            task.abort_handle(),
            self.statement_mode,
        ))
    }

    async fn recycle(&self, conn: &mut PgConnection, info: &ConnectionInfo) -> Result<(), Error> {
        if conn.is_closed() {
            return Err(Error::Closed);
        }
        if info.needs_reset() || conn.is_dirty() {
            conn.client()
                .batch_execute(self.statement_mode.reset_query())
                .await
                .map_err(|source| Error::Recycle {
                    step: "session reset",
                    source,
                })?;
            conn.mark_clean();
            return Ok(());
        }
        match self.recycle_mode {
            RecycleMode::Fast => Ok(()),
            RecycleMode::Verified | RecycleMode::Clean => conn
                .client()
                .simple_query("")
                .await
                .map(drop)
                .map_err(|source| Error::Recycle {
                    step: "health check",
                    source,
                }),
        }
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        conn.is_closed()
    }

    fn target(&self) -> Option<String> {
        Some(self.target.clone())
    }

    fn return_state(&self, conn: &mut PgConnection) -> ReturnState {
        if self.recycle_mode == RecycleMode::Clean || conn.is_dirty() {
            ReturnState::Dirty
        } else {
            ReturnState::Clean
        }
    }
}

//! The driver's whole configuration, from code, serde or the environment.

use std::fmt;
use std::time::Duration;

use pool_core::{BuildError, PoolConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion};
use serde::Deserialize;

use crate::env::EnvVars;
use crate::{ConfigError, Manager, Pool};

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// RESP2, every server's. The default.
    #[default]
    Resp2,
    /// RESP3 (Redis 6 and later): typed replies, and pub/sub messages kept apart from
    /// replies.
    Resp3,
}

/// Where to connect, the driver's options and the pool's settings, in one value that
/// deserialises from a config file (a `[redis]` section, say) or is read from the
/// environment with [`from_env`](Self::from_env).
///
/// The server is a `url` and/or separate fields, which override the URL's. Durations
/// are in human form (`"5s"`). Unknown fields are an error, so a misspelt setting is
/// not silently ignored.
///
/// ```
/// let config: pool_redis::Config = serde_json::from_str(r#"{
///     "url": "redis://:secret@cache:6379",
///     "db": 2,
///     "client_name": "orders-api",
///     "pool": { "max_size": 16, "wait_timeout": "2s" }
/// }"#)?;
/// assert_eq!(config.pool.max_size, 16);
/// let manager = config.manager()?;
/// assert_eq!(manager.to_string(), "redis://:***@cache:6379/2");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A `redis://`, `rediss://` (with the `tls` feature) or `unix://` URL.
    pub url: Option<String>,
    /// The server's host name or IP address.
    pub host: Option<String>,
    /// The server's port (6379 if neither this nor the URL says).
    pub port: Option<u16>,
    /// A Unix socket to connect through instead of TCP.
    pub socket: Option<String>,
    /// Connect with TLS (needs the `tls` feature).
    pub tls: bool,
    /// The ACL user (Redis 6 and later).
    pub username: Option<String>,
    /// The password. Never shown by `Debug` or by any error.
    pub password: Option<String>,
    /// The database to select (0 if neither this nor the URL says).
    pub db: Option<i64>,
    /// The protocol (RESP2 if neither this nor the URL says).
    pub protocol: Option<Protocol>,
    /// The name `CLIENT LIST` shows for these connections.
    pub client_name: Option<String>,
    /// How long the driver's own connect may take (the pool's `connect_timeout`
    /// bounds it too).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// How long any reply may take (off by default).
    #[serde(with = "humantime_serde")]
    pub response_timeout: Option<Duration>,
    /// The pool's settings.
    pub pool: PoolConfig,
}

impl Config {
    /// An empty config: set `url`, `host` or `socket` before use.
    pub fn new() -> Self {
        Config::default()
    }

    /// A builder for a config in code:
    /// `Config::builder().host("cache").db(2).max_size(16).build()`.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A config for `url` with the default driver options and pool settings.
    pub fn from_url(url: impl Into<String>) -> Self {
        Config {
            url: Some(url.into()),
            ..Config::default()
        }
    }

    /// Reads a config from environment variables named `{prefix}NAME`: `URL`, `HOST`,
    /// `PORT`, `SOCKET`, `TLS` (`true`/`false`), `USERNAME` (or `USER`), `PASSWORD`,
    /// `DB`, `PROTOCOL` (`resp2`, `resp3`), `CLIENT_NAME`, `CONNECT_TIMEOUT` and
    /// `RESPONSE_TIMEOUT` (`5s`, or whole seconds), and any [`PoolConfig`] field as
    /// `{prefix}POOL_{FIELD}` (`REDIS_POOL_MAX_SIZE=16`, `REDIS_POOL_WAIT_TIMEOUT=2s`,
    /// `...=null` to switch one off). With prefix `"REDIS_"`, `REDIS_URL` is the
    /// variable most hosting platforms set.
    ///
    /// An unset variable leaves the default. A value that cannot be read is an error
    /// naming the variable (never showing a password).
    pub fn from_env(prefix: &str) -> Result<Self, ConfigError> {
        Config::from_vars(prefix, &EnvVars::read_process(prefix))
    }

    /// [`from_env`](Self::from_env) on a given list of variables.
    fn from_vars(prefix: &str, vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let env = EnvVars::new(prefix, vars);
        Ok(Config {
            url: env.get("URL"),
            host: env.get("HOST"),
            port: env.parsed("PORT", "port", "a port number")?,
            socket: env.get("SOCKET"),
            tls: env.flag("TLS", "tls")?.unwrap_or(false),
            username: env.get("USERNAME").or_else(|| env.get("USER")),
            password: env.get("PASSWORD"),
            db: env.parsed("DB", "db", "a database number")?,
            protocol: env.protocol("PROTOCOL")?,
            client_name: env.get("CLIENT_NAME"),
            connect_timeout: env.duration("CONNECT_TIMEOUT", "connect_timeout")?,
            response_timeout: env.duration("RESPONSE_TIMEOUT", "response_timeout")?,
            pool: env.pool()?.unwrap_or_default(),
        })
    }

    /// The redis crate's connection settings: the URL's, with the separate fields over
    /// them.
    pub fn connection_info(&self) -> Result<redis::ConnectionInfo, ConfigError> {
        let mut info = match &self.url {
            Some(url) => crate::manager::parse_url(url)?,
            None => {
                if self.host.is_none() && self.socket.is_none() {
                    return Err(ConfigError::setting(
                        "host",
                        "host",
                        "no server given: set `url`, `host` or `socket`",
                    ));
                }
                ConnectionAddr::Tcp("127.0.0.1".to_owned(), 6379)
                    .into_connection_info()
                    .map_err(|e| {
                        ConfigError::setting("host", "host", crate::manager::redis_problem(&e))
                    })?
            }
        };
        if self.tls && !cfg!(feature = "tls") {
            return Err(ConfigError::setting(
                "tls",
                "tls",
                "TLS needs pool-redis's `tls` feature",
            ));
        }
        if let Some(socket) = &self.socket {
            info = info.set_addr(ConnectionAddr::Unix(socket.into()));
        } else if self.host.is_some() || self.port.is_some() || self.tls {
            let (host, port, was_tls) = match info.addr() {
                ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
                ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
                _ => ("127.0.0.1".to_owned(), 6379, false),
            };
            let host = self.host.clone().unwrap_or(host);
            let port = self.port.unwrap_or(port);
            let addr = if self.tls || was_tls {
                ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host, port)
            };
            info = info.set_addr(addr);
        }
        let mut redis = info.redis_settings().clone();
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        if let Some(db) = self.db {
            redis = redis.set_db(db);
        }
        match self.protocol {
            Some(Protocol::Resp2) => redis = redis.set_protocol(ProtocolVersion::RESP2),
            Some(Protocol::Resp3) => redis = redis.set_protocol(ProtocolVersion::RESP3),
            None => {}
        }
        Ok(info.set_redis_settings(redis))
    }

    /// A manager for this config.
    pub fn manager(&self) -> Result<Manager, ConfigError> {
        let mut manager = Manager::new(self.connection_info()?)
            .connect_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout);
        if let Some(name) = &self.client_name {
            manager = manager.client_name(name);
        }
        Ok(manager)
    }

    /// A pool for this config, with its `pool` settings. A connection setting that
    /// cannot be used is a [`BuildError::InvalidConfig`] naming it.
    pub fn create_pool(&self) -> Result<Pool, BuildError> {
        let manager = self.manager().map_err(|e| BuildError::InvalidConfig {
            field: e.field(),
            reason: e.to_string(),
        })?;
        Pool::builder(manager).config(self.pool.clone()).build()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url.as_deref().map(crate::redact::redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("protocol", &self.protocol)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("pool", &self.pool)
            .finish()
    }
}

/// Builds a [`Config`] in code; start with [`Config::builder`]. Each setting is named
/// after its `Config` field; the pool's are set whole with [`pool`](Self::pool) or one
/// by one with the most used of them.
///
/// ```
/// use std::time::Duration;
///
/// let config = pool_redis::Config::builder()
///     .host("cache")
///     .password("secret")
///     .db(3)
///     .client_name("orders-api")
///     .max_size(16)
///     .wait_timeout(Duration::from_secs(2))
///     .build();
/// assert_eq!(config.pool.max_size, 16);
/// assert_eq!(config.manager()?.to_string(), "redis://:***@cache:6379/3");
/// # Ok::<(), pool_redis::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    pool_core::string_setters! {
        config =>
        /// See [`Config::url`].
        url;
        /// See [`Config::host`].
        host;
        /// See [`Config::socket`].
        socket;
        /// See [`Config::username`].
        username;
        /// See [`Config::password`].
        password;
        /// See [`Config::client_name`].
        client_name;
    }

    /// See [`Config::port`].
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = Some(port);
        self
    }

    /// See [`Config::tls`].
    pub fn tls(mut self, tls: bool) -> Self {
        self.config.tls = tls;
        self
    }

    /// See [`Config::db`].
    pub fn db(mut self, db: i64) -> Self {
        self.config.db = Some(db);
        self
    }

    /// See [`Config::protocol`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = Some(protocol);
        self
    }

    /// See [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = Some(timeout);
        self
    }

    /// See [`Config::response_timeout`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = Some(timeout);
        self
    }

    pool_core::pool_setters!(config.pool);

    /// The config.
    pub fn build(self) -> Config {
        self.config
    }

    /// [`Config::create_pool`] on the config.
    pub fn create_pool(self) -> Result<Pool, BuildError> {
        self.config.create_pool()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn environment_variables_are_read_with_a_prefix() {
        let config = Config::from_vars(
            "REDIS_",
            &vars(&[
                ("REDIS_HOST", "cache"),
                ("REDIS_PORT", "6380"),
                ("REDIS_USERNAME", "app"),
                ("REDIS_PASSWORD", "s3cret"),
                ("REDIS_DB", "4"),
                ("REDIS_PROTOCOL", "RESP3"),
                ("REDIS_CLIENT_NAME", "api"),
                ("REDIS_CONNECT_TIMEOUT", "3"),
                ("REDIS_RESPONSE_TIMEOUT", "250ms"),
                ("REDIS_POOL_MAX_SIZE", "16"),
                ("REDIS_POOL_WAIT_TIMEOUT", "2s"),
                ("REDIS_POOL_IDLE_TIMEOUT", "null"),
            ]),
        )
        .unwrap();
        assert_eq!(config.port, Some(6380));
        assert_eq!(config.db, Some(4));
        assert_eq!(config.protocol, Some(Protocol::Resp3));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.response_timeout, Some(Duration::from_millis(250)));
        assert_eq!(config.pool.max_size, 16);
        assert_eq!(config.pool.wait_timeout, Some(Duration::from_secs(2)));
        assert_eq!(config.pool.idle_timeout, None);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let manager = config.manager().unwrap();
        assert_eq!(manager.to_string(), "redis://app:***@cache:6380/4");
        assert_eq!(manager.get_client_name(), Some("api"));
        let info = manager.connection_info().redis_settings();
        assert!(info.protocol().supports_resp3());
        assert_eq!(info.password(), Some("s3cret"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Config::from_vars("R_", &vars(&[("R_PORT", "x")])).unwrap_err();
        assert!(err.to_string().contains("R_PORT"), "{err}");
        let err = Config::from_vars("R_", &vars(&[("R_DB", "two")])).unwrap_err();
        assert!(err.to_string().contains("R_DB"), "{err}");
        let err = Config::from_vars("R_", &vars(&[("R_POOL_MAX_SIZ", "3")])).unwrap_err();
        assert!(err.to_string().contains("`R_POOL_MAX_SIZ`"), "{err}");
        assert!(err.to_string().contains("max_siz"), "{err}");
        let pool_vars = [("R_POOL_MAX_SIZE", "8"), ("R_POOL_WAIT_TIMEOUT", "soon")];
        let err = Config::from_vars("R_", &vars(&pool_vars)).unwrap_err();
        assert!(err.to_string().contains("`R_POOL_WAIT_TIMEOUT`"), "{err}");
        let err = Config::from_vars("R_", &vars(&[("R_PROTOCOL", "resp4")])).unwrap_err();
        assert!(err.to_string().contains("R_PROTOCOL"), "{err}");
        let err = Config::from_vars("R_", &vars(&[("R_TLS", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("R_TLS"), "{err}");
    }

    #[test]
    fn fields_override_the_url_and_a_server_is_required() {
        let config = Config {
            url: Some("redis://app:s3cret@cache/1".into()),
            db: Some(5),
            port: Some(7000),
            ..Config::default()
        };
        assert_eq!(
            config.manager().unwrap().to_string(),
            "redis://app:***@cache:7000/5"
        );
        let config = Config {
            socket: Some("/run/redis.sock".into()),
            password: Some("s3cret".into()),
            ..Config::default()
        };
        assert_eq!(
            config.manager().unwrap().to_string(),
            "unix:///run/redis.sock?db=0&pass=***"
        );
        let err = Config::new().create_pool().unwrap_err();
        assert_eq!(err.field(), "host");
        let err = Config::from_url("redis://app:s3cret@cache:x/0")
            .create_pool()
            .unwrap_err();
        assert_eq!(err.field(), "url");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, problem) in [
            ("http://cache", "not a redis URL"),
            ("redis://cache:99999", "invalid port number"),
            ("redis://cache/x", "database"),
            ("cache:6379", "not a redis URL"),
            ("redis://", "no host"),
        ] {
            let err = crate::Manager::from_url(url).unwrap_err();
            assert!(err.to_string().contains(problem), "{url}: {err}");
        }
        #[cfg(not(feature = "tls"))]
        {
            let err = crate::Manager::from_url("rediss://:s3cret@cache").unwrap_err();
            assert!(err.to_string().contains("`tls` feature"), "{err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn a_redis_section_deserialises_next_to_other_settings() {
        #[derive(Deserialize)]
        struct AppConfig {
            redis: Config,
        }
        let app: AppConfig = serde_json::from_str(
            r#"{ "redis": { "host": "cache", "protocol": "resp3", "pool": { "max_size": 3 } } }"#,
        )
        .unwrap();
        let pool = app.redis.create_pool().unwrap();
        assert_eq!(pool.status().max_size, 3);
        assert!(serde_json::from_str::<Config>(r#"{ "hots": "cache" }"#).is_err());
    }
}

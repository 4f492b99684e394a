//! The driver's whole configuration, from code, serde or the environment.

use std::fmt;
use std::str::FromStr;

use mysql_async::{Opts, OptsBuilder};
use pool_core::{BuildError, PoolConfig};
use serde::Deserialize;

use crate::{ConfigError, Manager, Pool, RecycleMode};

/// Where to connect, the driver's options and the pool's settings, in one value that
/// deserialises from a config file (a `[mysql]` section, say) or is read from the
/// environment with [`from_env`](Self::from_env).
///
/// The server is a `url` (`mysql://user:password@host:port/dbname?option=value`),
/// and/or separate fields, which override the URL's. Durations are in human form
/// (`"5s"`). Unknown fields are an error, so a misspelt setting is not silently
/// ignored.
///
/// ```
/// let config: pool_mysql::Config = serde_json::from_str(r#"{
///     "url": "mysql://app:secret@db:3306/orders",
///     "setup": ["SET time_zone = '+00:00'"],
///     "recycle_mode": "verified",
///     "pool": { "max_size": 16, "wait_timeout": "2s" }
/// }"#)?;
/// assert_eq!(config.pool.max_size, 16);
/// let manager = config.manager()?;
/// assert_eq!(manager.to_string(), "mysql://app:***@db:3306/orders");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A `mysql://user:password@host:port/dbname?option=value` URL.
    pub url: Option<String>,
    /// The server's host name or IP address.
    pub host: Option<String>,
    /// The server's TCP port (3306 if neither this nor the URL says).
    pub port: Option<u16>,
    /// The user to connect as.
    pub user: Option<String>,
    /// The user's password. Never shown by `Debug` or by any error.
    pub password: Option<String>,
    /// The default database.
    pub dbname: Option<String>,
    /// A Unix socket path to connect through instead of TCP.
    pub socket: Option<String>,
    /// Whether to switch to the server's Unix socket when connecting to a local server
    /// over TCP (mysql_async does by default, off Windows).
    pub prefer_socket: Option<bool>,
    /// Statements run on every new connection and again after every session reset
    /// (mysql_async's `setup`): `SET time_zone = '+00:00'`, `SET NAMES utf8mb4`...
    pub setup: Vec<String>,
    /// How many prepared statements mysql_async keeps per connection.
    pub stmt_cache_size: Option<usize>,
    /// What a due check before checkout does.
    pub recycle_mode: RecycleMode,
    /// The pool's settings.
    pub pool: PoolConfig,
}

impl Config {
    /// An empty config: set `url`, `host` or `socket` before use.
    pub fn new() -> Self {
        Config::default()
    }

    /// A builder for a config in code:
    /// `Config::builder().host("db").user("app").max_size(16).build()`.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A config for a `mysql://` URL with the default driver options and pool
    /// settings.
    pub fn from_url(url: impl Into<String>) -> Self {
        Config {
            url: Some(url.into()),
            ..Config::default()
        }
    }

    /// Reads a config from environment variables named `{prefix}NAME`.
    ///
    /// With `prefix` `"MYSQL_"` these are `MYSQL_URL`, `MYSQL_HOST`, `MYSQL_PORT` (or
    /// the mysql client's `MYSQL_TCP_PORT`), `MYSQL_USER`, `MYSQL_PASSWORD` (or the
    /// client's `MYSQL_PWD`), `MYSQL_DATABASE` (or `MYSQL_DBNAME`), `MYSQL_SOCKET`
    /// (or `MYSQL_UNIX_PORT`), `MYSQL_PREFER_SOCKET` (`true`/`false`), `MYSQL_SETUP`
    /// (statements separated by `;`), `MYSQL_STMT_CACHE_SIZE`, `MYSQL_RECYCLE_MODE`
    /// (`fast`, `verified`, `clean`), and any [`PoolConfig`] field as
    /// `MYSQL_POOL_{FIELD}` (`MYSQL_POOL_MAX_SIZE=16`, `MYSQL_POOL_WAIT_TIMEOUT=2s`,
    /// `...=null` to switch one off).
    ///
    /// An unset variable leaves the default. A value that cannot be read is an error
    /// naming the variable (never showing a password).
    pub fn from_env(prefix: &str) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(key, _)| key.starts_with(prefix))
            .collect();
        Config::from_vars(prefix, &vars)
    }

    /// [`from_env`](Self::from_env) on a given list of variables.
    fn from_vars(prefix: &str, vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            let key = format!("{prefix}{name}");
            vars.iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let bad = |name: &str, field: &'static str, problem: String| {
            ConfigError::setting(&format!("{prefix}{name}"), field, problem)
        };
        let mut config = Config {
            url: get("URL"),
            host: get("HOST"),
            user: get("USER"),
            password: get("PASSWORD").or_else(|| get("PWD")),
            dbname: get("DATABASE").or_else(|| get("DBNAME")),
            socket: get("SOCKET").or_else(|| get("UNIX_PORT")),
            ..Config::default()
        };
        for name in ["PORT", "TCP_PORT"] {
            if let Some(port) = get(name) {
                config.port =
                    Some(port.trim().parse().map_err(|_| {
                        bad(name, "port", format!("`{port}` is not a port number"))
                    })?);
                break;
            }
        }
        if let Some(prefer) = get("PREFER_SOCKET") {
            config.prefer_socket = Some(parse_bool(&prefer).ok_or_else(|| {
                bad(
                    "PREFER_SOCKET",
                    "prefer_socket",
                    format!("`{prefer}` is neither true nor false"),
                )
            })?);
        }
        if let Some(setup) = get("SETUP") {
            config.setup = setup
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(size) = get("STMT_CACHE_SIZE") {
            config.stmt_cache_size = Some(size.trim().parse().map_err(|_| {
                bad(
                    "STMT_CACHE_SIZE",
                    "stmt_cache_size",
                    format!("`{size}` is not a number"),
                )
            })?);
        }
        if let Some(mode) = get("RECYCLE_MODE") {
            config.recycle_mode = mode
                .parse()
                .map_err(|e| bad("RECYCLE_MODE", "recycle_mode", e))?;
        }

        let pool_vars = vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Some(pool) = PoolConfig::from_vars(&format!("{prefix}POOL_"), pool_vars)
            .map_err(|e| ConfigError::setting(&e.variable, "pool", e.problem))?
        {
            config.pool = pool;
        }
        Ok(config)
    }

    /// mysql_async's options: the URL's, with the separate fields over them.
    pub fn opts(&self) -> Result<Opts, ConfigError> {
        if self.url.is_none() && self.host.is_none() && self.socket.is_none() {
            return Err(ConfigError::setting(
                "host",
                "host",
                "no server given: set `url`, `host` or `socket`",
            ));
        }
        let base = match &self.url {
            Some(url) => crate::manager::parse_url(url)?,
            None => Opts::default(),
        };
        let mut opts = OptsBuilder::from_opts(base);
        if let Some(host) = &self.host {
            opts = opts.ip_or_hostname(host.clone());
        }
        if let Some(port) = self.port {
            opts = opts.tcp_port(port);
        }
        if let Some(user) = &self.user {
            opts = opts.user(Some(user.clone()));
        }
        if let Some(password) = &self.password {
            opts = opts.pass(Some(password.clone()));
        }
        if let Some(dbname) = &self.dbname {
            opts = opts.db_name(Some(dbname.clone()));
        }
        if let Some(socket) = &self.socket {
            opts = opts.socket(Some(socket.clone()));
        }
        if let Some(prefer) = self.prefer_socket {
            opts = opts.prefer_socket(prefer);
        }
        if !self.setup.is_empty() {
            opts = opts.setup(self.setup.clone());
        }
        if let Some(size) = self.stmt_cache_size {
            opts = opts.stmt_cache_size(size);
        }
        Ok(opts.into())
    }

    /// A manager for this config.
    pub fn manager(&self) -> Result<Manager, ConfigError> {
        Ok(Manager::new(self.opts()?).recycle_mode(self.recycle_mode))
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
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("socket", &self.socket)
            .field("prefer_socket", &self.prefer_socket)
            .field("setup", &self.setup)
            .field("stmt_cache_size", &self.stmt_cache_size)
            .field("recycle_mode", &self.recycle_mode)
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
/// let config = pool_mysql::Config::builder()
///     .host("db")
///     .user("app")
///     .password("secret")
///     .dbname("orders")
///     .recycle_mode(pool_mysql::RecycleMode::Clean)
///     .max_size(16)
///     .wait_timeout(Duration::from_secs(2))
///     .build();
/// assert_eq!(config.pool.max_size, 16);
/// assert_eq!(config.manager()?.to_string(), "mysql://app:***@db:3306/orders");
/// # Ok::<(), pool_mysql::ConfigError>(())
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
        /// See [`Config::user`].
        user;
        /// See [`Config::password`].
        password;
        /// See [`Config::dbname`].
        dbname;
        /// See [`Config::socket`].
        socket;
    }

    /// See [`Config::port`].
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = Some(port);
        self
    }

    /// See [`Config::prefer_socket`].
    pub fn prefer_socket(mut self, prefer: bool) -> Self {
        self.config.prefer_socket = Some(prefer);
        self
    }

    /// Adds a statement to [`Config::setup`].
    pub fn setup(mut self, statement: impl Into<String>) -> Self {
        self.config.setup.push(statement.into());
        self
    }

    /// See [`Config::stmt_cache_size`].
    pub fn stmt_cache_size(mut self, size: usize) -> Self {
        self.config.stmt_cache_size = Some(size);
        self
    }

    /// See [`Config::recycle_mode`].
    pub fn recycle_mode(mut self, mode: RecycleMode) -> Self {
        self.config.recycle_mode = mode;
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

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl FromStr for RecycleMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fast" => Ok(RecycleMode::Fast),
            "verified" => Ok(RecycleMode::Verified),
            "clean" => Ok(RecycleMode::Clean),
            other => Err(format!(
                "`{other}` is not a recycle mode (fast, verified, clean)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn mysql_variables_are_read_with_a_prefix() {
        let config = Config::from_vars(
            "MYSQL_",
            &vars(&[
                ("MYSQL_HOST", "db"),
                ("MYSQL_TCP_PORT", "3307"),
                ("MYSQL_USER", "app"),
                ("MYSQL_PWD", "s3cret"),
                ("MYSQL_DATABASE", "orders"),
                ("MYSQL_PREFER_SOCKET", "false"),
                ("MYSQL_SETUP", "SET time_zone = '+00:00'; SET NAMES utf8mb4"),
                ("MYSQL_STMT_CACHE_SIZE", "64"),
                ("MYSQL_RECYCLE_MODE", "Clean"),
                ("MYSQL_POOL_MAX_SIZE", "16"),
                ("MYSQL_POOL_WAIT_TIMEOUT", "2s"),
                ("MYSQL_POOL_IDLE_TIMEOUT", "null"),
            ]),
        )
        .unwrap();
        assert_eq!(config.host.as_deref(), Some("db"));
        assert_eq!(config.port, Some(3307));
        assert_eq!(config.password.as_deref(), Some("s3cret"));
        assert_eq!(config.dbname.as_deref(), Some("orders"));
        assert_eq!(config.prefer_socket, Some(false));
        assert_eq!(config.setup.len(), 2);
        assert_eq!(config.recycle_mode, RecycleMode::Clean);
        assert_eq!(config.pool.max_size, 16);
        assert_eq!(config.pool.wait_timeout, Some(Duration::from_secs(2)));
        assert_eq!(config.pool.idle_timeout, None);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let manager = config.manager().unwrap();
        assert_eq!(manager.to_string(), "mysql://app:***@db:3307/orders");
        assert_eq!(manager.get_recycle_mode(), RecycleMode::Clean);
        let opts = config.opts().unwrap();
        assert!(!opts.prefer_socket());
        assert_eq!(opts.stmt_cache_size(), 64);
        assert_eq!(opts.setup().len(), 2);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Config::from_vars("APP_DB_", &vars(&[("APP_DB_PORT", "x")])).unwrap_err();
        assert!(err.to_string().contains("APP_DB_PORT"), "{err}");
        let err = Config::from_vars("APP_DB_", &vars(&[("APP_DB_POOL_MAX_SIZ", "3")])).unwrap_err();
        assert!(err.to_string().contains("`APP_DB_POOL_MAX_SIZ`"), "{err}");
        assert!(err.to_string().contains("max_siz"), "{err}");
        let pool_vars = [
            ("APP_DB_POOL_MAX_SIZE", "8"),
            ("APP_DB_POOL_MIN_IDLE", "abc"),
        ];
        let err = Config::from_vars("APP_DB_", &vars(&pool_vars)).unwrap_err();
        assert!(err.to_string().contains("`APP_DB_POOL_MIN_IDLE`"), "{err}");
        assert_eq!(err.field(), "pool");
        let err =
            Config::from_vars("APP_DB_", &vars(&[("APP_DB_RECYCLE_MODE", "slow")])).unwrap_err();
        assert!(err.to_string().contains("APP_DB_RECYCLE_MODE"), "{err}");
        let err =
            Config::from_vars("APP_DB_", &vars(&[("APP_DB_PREFER_SOCKET", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("PREFER_SOCKET"), "{err}");
    }

    #[test]
    fn fields_override_the_url_and_a_server_is_required() {
        let config = Config {
            url: Some("mysql://app:s3cret@db/orders".into()),
            dbname: Some("billing".into()),
            ..Config::default()
        };
        assert_eq!(
            config.manager().unwrap().to_string(),
            "mysql://app:***@db:3306/billing"
        );
        let err = Config::new().create_pool().unwrap_err();
        assert_eq!(err.field(), "host");
        let err = Config::from_url("mysql://app:s3cret@db:x/y")
            .create_pool()
            .unwrap_err();
        assert_eq!(err.field(), "url");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = Config::from_url("postgres://app:s3cret@db/y")
            .create_pool()
            .unwrap_err();
        assert!(err.to_string().contains("scheme"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn a_mysql_section_deserialises_next_to_other_settings() {
        #[derive(Deserialize)]
        struct AppConfig {
            mysql: Config,
        }
        let app: AppConfig = serde_json::from_str(
            r#"{ "mysql": { "host": "db", "user": "app", "pool": { "max_size": 3 } } }"#,
        )
        .unwrap();
        let pool = app.mysql.create_pool().unwrap();
        assert_eq!(pool.status().max_size, 3);
        assert!(serde_json::from_str::<Config>(r#"{ "hots": "db" }"#).is_err());
    }
}

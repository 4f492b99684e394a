//! The driver's whole configuration, from code, serde or the environment.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use pool_core::{BuildError, PoolConfig};
use serde::Deserialize;

use crate::{ConfigError, Manager, Pool, RecycleMode, StatementMode};

/// Where to connect, the driver's options and the pool's settings, in one value that
/// deserialises from a config file (a `[postgres]` section, say) or is read from the
/// environment with [`from_env`](Self::from_env).
///
/// The server is a `url` (a `postgres://` URL or a libpq `key=value` string), and/or
/// separate fields, which override the URL's. Durations are in human form (`"5s"`).
/// Unknown fields are an error, so a misspelt setting is not silently ignored.
///
/// ```
/// let config: pool_postgres::Config = serde_json::from_str(r#"{
///     "url": "postgres://app:secret@db:5432/orders",
///     "application_name": "orders-api",
///     "recycle_mode": "verified",
///     "pool": { "max_size": 16, "wait_timeout": "2s" }
/// }"#)?;
/// assert_eq!(config.pool.max_size, 16);
/// let manager = config.manager()?;
/// assert_eq!(manager.to_string(), "postgres://app:***@db:5432/orders");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// A `postgres://user:password@host:port/dbname?option=value` URL or a libpq
    /// `key=value` string.
    pub url: Option<String>,
    /// The server's host name, IP address or Unix socket directory.
    pub host: Option<String>,
    /// The server's port (5432 if neither this nor the URL says).
    pub port: Option<u16>,
    /// The role to connect as.
    pub user: Option<String>,
    /// The role's password. Never shown by `Debug` or by any error.
    pub password: Option<String>,
    /// The database (the role's name if neither this nor the URL says).
    pub dbname: Option<String>,
    /// The `application_name` the server shows for these connections.
    pub application_name: Option<String>,
    /// How long the driver's own connect may take (the pool's `connect_timeout`
    /// bounds it too).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// What a due check before checkout does.
    pub recycle_mode: RecycleMode,
    /// How connections send SQL text, and what a session reset does: `named` (the
    /// default) when the pool talks to PostgreSQL itself or through a session pooler,
    /// `unnamed` behind a transaction pooler (PgBouncer in `pool_mode = transaction`);
    /// see [`StatementMode`]. Unset, the URL's `statement_mode` option decides, else
    /// `named`.
    pub statement_mode: Option<StatementMode>,
    /// The pool's settings.
    pub pool: PoolConfig,
}

impl Config {
    /// An empty config: set `url` or `host` before use.
    pub fn new() -> Self {
        Config::default()
    }

    /// A builder for a config in code:
    /// `Config::builder().host("db").user("app").max_size(16).build()`.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// A config for `url` (a `postgres://` URL or a libpq `key=value` string) with
    /// the default driver options and pool settings.
    pub fn from_url(url: impl Into<String>) -> Self {
        Config {
            url: Some(url.into()),
            ..Config::default()
        }
    }

    /// Reads a config from environment variables named `{prefix}NAME`.
    ///
    /// With `prefix` `"PG"` these are libpq's own variables: `PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`; with
    /// `"APP_DB_"` they are `APP_DB_HOST` and so on. Also read: `{prefix}URL`,
    /// `{prefix}DBNAME` and `{prefix}APPLICATION_NAME` (same as `DATABASE` and
    /// `APPNAME`), `{prefix}RECYCLE_MODE` (`fast`, `verified`, `clean`),
    /// `{prefix}STATEMENT_MODE` (`named`, `unnamed`), and any
    /// [`PoolConfig`] field as `{prefix}POOL_{FIELD}` (`APP_DB_POOL_MAX_SIZE=16`,
    /// `APP_DB_POOL_WAIT_TIMEOUT=2s`, `...=null` to switch one off).
    /// `CONNECT_TIMEOUT` is whole seconds, as libpq reads it, or a human duration.
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
            password: get("PASSWORD"),
            dbname: get("DBNAME").or_else(|| get("DATABASE")),
            application_name: get("APPLICATION_NAME").or_else(|| get("APPNAME")),
            ..Config::default()
        };
        if let Some(port) = get("PORT") {
            config.port = Some(
                port.trim()
                    .parse()
                    .map_err(|_| bad("PORT", "port", format!("`{port}` is not a port number")))?,
            );
        }
        if let Some(timeout) = get("CONNECT_TIMEOUT") {
            config.connect_timeout = Some(parse_timeout(&timeout).ok_or_else(|| {
                bad(
                    "CONNECT_TIMEOUT",
                    "connect_timeout",
                    format!("`{timeout}` is neither whole seconds nor a duration like `5s`"),
                )
            })?);
        }
        if let Some(mode) = get("RECYCLE_MODE") {
            config.recycle_mode = mode
                .parse()
                .map_err(|e| bad("RECYCLE_MODE", "recycle_mode", e))?;
        }
        if let Some(mode) = get("STATEMENT_MODE") {
            config.statement_mode = Some(
                mode.parse()
                    .map_err(|e| bad("STATEMENT_MODE", "statement_mode", e))?,
            );
        }

        let pool_vars = vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Some(pool) = PoolConfig::from_vars(&format!("{prefix}POOL_"), pool_vars)
            .map_err(|e| ConfigError::setting(&e.variable, "pool", e.problem))?
        {
            config.pool = pool;
        }
        Ok(config)
    }

    /// tokio-postgres's config: the URL's, with the separate fields over it.
    pub fn tokio_postgres_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        self.connection_parts().map(|(pg, _)| pg)
    }

    /// tokio-postgres's config and the statement mode, fields over the URL's.
    fn connection_parts(&self) -> Result<(tokio_postgres::Config, StatementMode), ConfigError> {
        let (mut pg, url_mode) = match &self.url {
            Some(url) => {
                let (pg, options) = crate::manager::parse_url(url)?;
                (pg, options.statement_mode)
            }
            None => (tokio_postgres::Config::new(), None),
        };
        let statement_mode = self.statement_mode.or(url_mode).unwrap_or_default();
        if let Some(host) = &self.host {
            pg.host(host);
        }
        if let Some(port) = self.port {
            pg.port(port);
        }
        if let Some(user) = &self.user {
            pg.user(user);
        }
        if let Some(password) = &self.password {
            pg.password(password);
        }
        if let Some(dbname) = &self.dbname {
            pg.dbname(dbname);
        }
        if let Some(name) = &self.application_name {
            pg.application_name(name);
        }
        if let Some(timeout) = self.connect_timeout {
            pg.connect_timeout(timeout);
        }
        if pg.get_hosts().is_empty() {
            return Err(ConfigError::setting(
                "host",
                "host",
                "no server given: set `url` or `host`",
            ));
        }
        Ok((pg, statement_mode))
    }

    /// A manager for this config (no TLS).
    pub fn manager(&self) -> Result<Manager, ConfigError> {
        let (pg, statement_mode) = self.connection_parts()?;
        Ok(Manager::new(pg)
            .recycle_mode(self.recycle_mode)
            .statement_mode(statement_mode))
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
            .field(
                "url",
                &self
                    .url
                    .as_deref()
                    .map(crate::redact::redact_connection_string),
            )
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("recycle_mode", &self.recycle_mode)
            .field("statement_mode", &self.statement_mode)
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
/// let config = pool_postgres::Config::builder()
///     .host("db")
///     .user("app")
///     .password("secret")
///     .dbname("orders")
///     .recycle_mode(pool_postgres::RecycleMode::Clean)
///     .max_size(16)
///     .wait_timeout(Duration::from_secs(2))
///     .build();
/// assert_eq!(config.pool.max_size, 16);
/// assert_eq!(config.manager()?.to_string(), "postgres://app:***@db:5432/orders");
/// # Ok::<(), pool_postgres::ConfigError>(())
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
        /// See [`Config::application_name`].
        application_name;
    }

    /// See [`Config::port`].
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = Some(port);
        self
    }

    /// See [`Config::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = Some(timeout);
        self
    }

    /// See [`Config::recycle_mode`].
    pub fn recycle_mode(mut self, mode: RecycleMode) -> Self {
        self.config.recycle_mode = mode;
        self
    }

    /// See [`Config::statement_mode`]: `StatementMode::Unnamed` behind a transaction
    /// pooler.
    pub fn statement_mode(mut self, mode: StatementMode) -> Self {
        self.config.statement_mode = Some(mode);
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

/// Whole seconds (libpq's form) or a human duration.
fn parse_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    #[derive(Deserialize)]
    struct Human(#[serde(with = "humantime_serde")] Duration);
    serde_json::from_value::<Human>(serde_json::Value::String(value.to_owned()))
        .ok()
        .map(|Human(d)| d)
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

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn libpq_variables_are_read_with_the_pg_prefix() {
        let config = Config::from_vars(
            "PG",
            &vars(&[
                ("PGHOST", "db"),
                ("PGPORT", "5433"),
                ("PGUSER", "app"),
                ("PGPASSWORD", "s3cret"),
                ("PGDATABASE", "orders"),
                ("PGAPPNAME", "api"),
                ("PGCONNECT_TIMEOUT", "3"),
                ("PGRECYCLE_MODE", "Clean"),
                ("PGSTATEMENT_MODE", "unnamed"),
                ("PGPOOL_MAX_SIZE", "16"),
                ("PGPOOL_WAIT_TIMEOUT", "2s"),
                ("PGPOOL_IDLE_TIMEOUT", "null"),
            ]),
        )
        .unwrap();
        assert_eq!(config.host.as_deref(), Some("db"));
        assert_eq!(config.port, Some(5433));
        assert_eq!(config.dbname.as_deref(), Some("orders"));
        assert_eq!(config.application_name.as_deref(), Some("api"));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(config.recycle_mode, RecycleMode::Clean);
        assert_eq!(config.pool.max_size, 16);
        assert_eq!(config.pool.wait_timeout, Some(Duration::from_secs(2)));
        assert_eq!(config.pool.idle_timeout, None);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");

        let manager = config.manager().unwrap();
        assert_eq!(manager.to_string(), "postgres://app:***@db:5433/orders");
        assert_eq!(manager.get_recycle_mode(), RecycleMode::Clean);
        assert_eq!(manager.get_statement_mode(), StatementMode::Unnamed);
        let pg = config.tokio_postgres_config().unwrap();
        assert_eq!(pg.get_application_name(), Some("api"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
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
        let err = Config::from_vars("APP_DB_", &vars(&[("APP_DB_STATEMENT_MODE", "cached")]))
            .unwrap_err();
        assert!(err.to_string().contains("APP_DB_STATEMENT_MODE"), "{err}");
        assert_eq!(err.field(), "statement_mode");
        let err =
            Config::from_vars("APP_DB_", &vars(&[("APP_DB_CONNECT_TIMEOUT", "soon")])).unwrap_err();
        assert!(err.to_string().contains("CONNECT_TIMEOUT"), "{err}");
        assert_eq!(
            Config::from_vars("APP_DB_", &vars(&[("APP_DB_CONNECT_TIMEOUT", "1500ms")]))
                .unwrap()
                .connect_timeout,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn fields_override_the_url_and_a_server_is_required() {
        let config = Config {
            url: Some("postgres://app:s3cret@db/orders".into()),
            dbname: Some("billing".into()),
            ..Config::default()
        };
        assert_eq!(
            config.manager().unwrap().to_string(),
            "postgres://app:***@db:5432/billing"
        );
        let err = Config::new().create_pool().unwrap_err();
        assert_eq!(err.field(), "host");
        let err = Config::from_url("postgres://app:s3cret@db:x/y")
            .create_pool()
            .unwrap_err();
        assert_eq!(err.field(), "url");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn the_statement_mode_comes_from_the_field_else_the_url_else_named() {
        let behind_pooler = "postgres://app@pgbouncer:6432/orders?statement_mode=unnamed";
        let from_url = Config::from_url(behind_pooler);
        assert_eq!(
            from_url.manager().unwrap().get_statement_mode(),
            StatementMode::Unnamed
        );
        // The option is the pool's: tokio-postgres never sees it.
        assert_eq!(
            from_url.tokio_postgres_config().unwrap().get_dbname(),
            Some("orders")
        );
        let overridden = Config::builder()
            .url(behind_pooler)
            .statement_mode(StatementMode::Named)
            .build();
        assert_eq!(
            overridden.manager().unwrap().get_statement_mode(),
            StatementMode::Named
        );
        assert_eq!(
            Config::from_url("postgres://app@db/x")
                .manager()
                .unwrap()
                .get_statement_mode(),
            StatementMode::Named
        );
        let from_serde: Config =
            serde_json::from_str(r#"{ "host": "pgbouncer", "statement_mode": "unnamed" }"#)
                .unwrap();
        assert_eq!(
            from_serde.manager().unwrap().get_statement_mode(),
            StatementMode::Unnamed
        );
        assert!(
            serde_json::from_str::<Config>(r#"{ "host": "db", "statement_mode": "cached" }"#)
                .is_err()
        );
        let err = Config::from_url("postgres://app:s3cret@db/x?statement_mode=cached")
            .create_pool()
            .unwrap_err();
        assert_eq!(err.field(), "url");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn a_postgres_section_deserialises_next_to_other_settings() {
        #[derive(Deserialize)]
        struct AppConfig {
            postgres: Config,
        }
        let app: AppConfig = serde_json::from_str(
            r#"{ "postgres": { "host": "db", "user": "app", "pool": { "max_size": 3 } } }"#,
        )
        .unwrap();
        let pool = app.postgres.create_pool().unwrap();
        assert_eq!(pool.status().max_size, 3);
        assert!(serde_json::from_str::<Config>(r#"{ "hots": "db" }"#).is_err());
    }
}

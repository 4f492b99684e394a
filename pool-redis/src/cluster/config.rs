//! A cluster's whole configuration, from code, serde or the environment.

use std::fmt;
use std::time::Duration;

use pool_core::{BuildError, PoolConfig};
use redis::ProtocolVersion;
use serde::Deserialize;

use super::manager::{parse_seed, ClusterManager};
use crate::env::EnvVars;
use crate::{ClusterPool, ConfigError, Protocol};

/// The seed nodes, the driver's options and the pool's settings for a Redis Cluster,
/// in one value that deserialises from a config file or is read from the environment
/// with [`from_env`](Self::from_env).
///
/// Durations are in human form (`"5s"`). Unknown fields are an error, so a misspelt
/// setting is not silently ignored.
///
/// ```
/// let config: pool_redis::ClusterConfig = serde_json::from_str(r#"{
///     "nodes": ["redis://10.0.0.1:7000", "10.0.0.2:7000"],
///     "password": "secret",
///     "client_name": "orders-api",
///     "pool": { "max_size": 16, "wait_timeout": "2s" }
/// }"#)?;
/// assert_eq!(config.pool.max_size, 16);
/// let manager = config.manager()?;
/// assert_eq!(
///     manager.to_string(),
///     "redis cluster redis://:***@10.0.0.1:7000,10.0.0.2:7000"
/// );
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The seed nodes: `redis://[user][:password@]host:port` URLs (`rediss://` with the
    /// `tls` feature) or plain `host:port`. At least one.
    pub nodes: Vec<String>,
    /// The ACL user, for every node (over the URLs').
    pub username: Option<String>,
    /// The password, for every node (over the URLs'). Never shown by `Debug` or by any
    /// error.
    pub password: Option<String>,
    /// The protocol (RESP2 if neither this nor the URLs say).
    pub protocol: Option<Protocol>,
    /// The name `CLIENT LIST` shows for these connections on every node.
    pub client_name: Option<String>,
    /// How long each node connect may take (1 s if unset).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// How long any reply may take, retries included (off by default).
    #[serde(with = "humantime_serde")]
    pub response_timeout: Option<Duration>,
    /// How often a command is retried before its error reaches the caller (3 if unset;
    /// see [`ClusterManager::retries`]).
    pub retries: Option<u32>,
    /// The shortest wait before a retry (10 ms if unset).
    #[serde(with = "humantime_serde")]
    pub min_retry_wait: Option<Duration>,
    /// The longest wait before a retry (100 ms if unset).
    #[serde(with = "humantime_serde")]
    pub max_retry_wait: Option<Duration>,
    /// The pool's settings.
    pub pool: PoolConfig,
}

impl ClusterConfig {
    /// An empty config: set `nodes` before use.
    pub fn new() -> Self {
        ClusterConfig::default()
    }

    /// A builder for a config in code:
    /// `ClusterConfig::builder().node("10.0.0.1:7000").max_size(16).build()`.
    pub fn builder() -> ClusterConfigBuilder {
        ClusterConfigBuilder::default()
    }

    /// A config for the seed nodes `nodes` with the default driver options and pool
    /// settings.
    pub fn from_nodes<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        ClusterConfig {
            nodes: nodes.into_iter().map(Into::into).collect(),
            ..ClusterConfig::default()
        }
    }

    /// Reads a config from environment variables named `{prefix}NAME`: `NODES` (the
    /// seed nodes, separated by commas or spaces), `USERNAME` (or `USER`), `PASSWORD`,
    /// `PROTOCOL` (`resp2`, `resp3`), `CLIENT_NAME`, `CONNECT_TIMEOUT` and
    /// `RESPONSE_TIMEOUT` (`5s`, or whole seconds), `RETRIES`, `MIN_RETRY_WAIT`,
    /// `MAX_RETRY_WAIT`, and any [`PoolConfig`] field as `{prefix}POOL_{FIELD}`
    /// (`REDIS_CLUSTER_POOL_MAX_SIZE=16`).
    ///
    /// An unset variable leaves the default. A value that cannot be read is an error
    /// naming the variable (never showing a password).
    ///
    /// ```
    /// # // The variables are set here for the example; a service has them set for it.
    /// # std::env::set_var("DOCS_CLUSTER_NODES", "10.0.0.1:7000, 10.0.0.2:7000");
    /// # std::env::set_var("DOCS_CLUSTER_POOL_MAX_SIZE", "16");
    /// let config = pool_redis::ClusterConfig::from_env("DOCS_CLUSTER_")?;
    /// assert_eq!(config.nodes, ["10.0.0.1:7000", "10.0.0.2:7000"]);
    /// assert_eq!(config.pool.max_size, 16);
    /// # Ok::<(), pool_redis::ConfigError>(())
    /// ```
    pub fn from_env(prefix: &str) -> Result<Self, ConfigError> {
        ClusterConfig::from_vars(prefix, &EnvVars::read_process(prefix))
    }

    /// [`from_env`](Self::from_env) on a given list of variables.
    fn from_vars(prefix: &str, vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let env = EnvVars::new(prefix, vars);
        let nodes = env
            .get("NODES")
            .map(|nodes| {
                nodes
                    .split([',', ' ', '\t', '\n'])
                    .filter(|node| !node.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClusterConfig {
            nodes,
            username: env.get("USERNAME").or_else(|| env.get("USER")),
            password: env.get("PASSWORD"),
            protocol: env.protocol("PROTOCOL")?,
            client_name: env.get("CLIENT_NAME"),
            connect_timeout: env.duration("CONNECT_TIMEOUT", "connect_timeout")?,
            response_timeout: env.duration("RESPONSE_TIMEOUT", "response_timeout")?,
            retries: env.parsed("RETRIES", "retries", "a number of retries")?,
            min_retry_wait: env.duration("MIN_RETRY_WAIT", "min_retry_wait")?,
            max_retry_wait: env.duration("MAX_RETRY_WAIT", "max_retry_wait")?,
            pool: env.pool()?.unwrap_or_default(),
        })
    }

    /// The seed nodes' connection settings: the URLs', with the separate fields over
    /// them.
    pub fn seeds(&self) -> Result<Vec<redis::ConnectionInfo>, ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::setting(
                "nodes",
                "nodes",
                "no seed node given: a cluster needs the address of at least one of its nodes",
            ));
        }
        self.nodes
            .iter()
            .map(|node| {
                let info = parse_seed(node)?;
                let mut redis = info.redis_settings().clone();
                if let Some(username) = &self.username {
                    redis = redis.set_username(username);
                }
                if let Some(password) = &self.password {
                    redis = redis.set_password(password);
                }
                match self.protocol {
                    Some(Protocol::Resp2) => redis = redis.set_protocol(ProtocolVersion::RESP2),
                    Some(Protocol::Resp3) => redis = redis.set_protocol(ProtocolVersion::RESP3),
                    None => {}
                }
                Ok(info.set_redis_settings(redis))
            })
            .collect()
    }

    /// A manager for this config.
    pub fn manager(&self) -> Result<ClusterManager, ConfigError> {
        let mut manager = ClusterManager::new(self.seeds()?)?
            .connect_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout);
        if let Some(name) = &self.client_name {
            manager = manager.client_name(name);
        }
        if let Some(retries) = self.retries {
            manager = manager.retries(retries);
        }
        if self.min_retry_wait.is_some() || self.max_retry_wait.is_some() {
            let min = self
                .min_retry_wait
                .unwrap_or(super::manager::DEFAULT_MIN_RETRY_WAIT);
            let max = self
                .max_retry_wait
                .unwrap_or(super::manager::DEFAULT_MAX_RETRY_WAIT);
            manager = manager.retry_wait(min, max);
        }
        Ok(manager)
    }

    /// A pool for this config, with its `pool` settings. A setting that cannot be used
    /// is a [`BuildError::InvalidConfig`] naming it.
    pub fn create_pool(&self) -> Result<ClusterPool, BuildError> {
        let manager = self.manager().map_err(|e| BuildError::InvalidConfig {
            field: e.field(),
            reason: e.to_string(),
        })?;
        ClusterPool::builder(manager)
            .config(self.pool.clone())
            .build()
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| crate::redact::redact_url(node))
            .collect();
        f.debug_struct("ClusterConfig")
            .field("nodes", &nodes)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("protocol", &self.protocol)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("retries", &self.retries)
            .field("min_retry_wait", &self.min_retry_wait)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("pool", &self.pool)
            .finish()
    }
}

/// Builds a [`ClusterConfig`] in code; start with [`ClusterConfig::builder`]. Each
/// setting is named after its `ClusterConfig` field.
///
/// ```
/// use std::time::Duration;
///
/// let config = pool_redis::ClusterConfig::builder()
///     .node("10.0.0.1:7000")
///     .node("10.0.0.2:7000")
///     .password("secret")
///     .client_name("orders-api")
///     .max_size(16)
///     .wait_timeout(Duration::from_secs(2))
///     .build();
/// assert_eq!(config.pool.max_size, 16);
/// assert_eq!(
///     config.manager()?.to_string(),
///     "redis cluster redis://:***@10.0.0.1:7000,10.0.0.2:7000"
/// );
/// # Ok::<(), pool_redis::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClusterConfigBuilder {
    config: ClusterConfig,
}

impl ClusterConfigBuilder {
    /// Adds a seed node (see [`ClusterConfig::nodes`]).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.config.nodes.push(node.into());
        self
    }

    /// Adds seed nodes.
    pub fn nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.config.nodes.extend(nodes.into_iter().map(Into::into));
        self
    }

    /// See [`ClusterConfig::username`].
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.config.username = Some(username.into());
        self
    }

    /// See [`ClusterConfig::password`].
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(password.into());
        self
    }

    /// See [`ClusterConfig::protocol`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = Some(protocol);
        self
    }

    /// See [`ClusterConfig::client_name`].
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.config.client_name = Some(name.into());
        self
    }

    /// See [`ClusterConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = Some(timeout);
        self
    }

    /// See [`ClusterConfig::response_timeout`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.config.response_timeout = Some(timeout);
        self
    }

    /// See [`ClusterConfig::retries`].
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = Some(retries);
        self
    }

    /// See [`ClusterConfig::min_retry_wait`] and [`ClusterConfig::max_retry_wait`].
    pub fn retry_wait(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_retry_wait = Some(min);
        self.config.max_retry_wait = Some(max);
        self
    }

    pool_core::pool_setters!(config.pool);

    /// The config.
    pub fn build(self) -> ClusterConfig {
        self.config
    }

    /// [`ClusterConfig::create_pool`] on the config.
    pub fn create_pool(self) -> Result<ClusterPool, BuildError> {
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
        let config = ClusterConfig::from_vars(
            "RC_",
            &vars(&[
                ("RC_NODES", "redis://a:7000, b:7001 c:7002"),
                ("RC_USERNAME", "app"),
                ("RC_PASSWORD", "s3cret"),
                ("RC_PROTOCOL", "resp3"),
                ("RC_CLIENT_NAME", "api"),
                ("RC_CONNECT_TIMEOUT", "2"),
                ("RC_RESPONSE_TIMEOUT", "250ms"),
                ("RC_RETRIES", "5"),
                ("RC_MIN_RETRY_WAIT", "20ms"),
                ("RC_MAX_RETRY_WAIT", "1s"),
                ("RC_POOL_MAX_SIZE", "16"),
            ]),
        )
        .unwrap();
        assert_eq!(config.nodes, ["redis://a:7000", "b:7001", "c:7002"]);
        assert_eq!(config.protocol, Some(Protocol::Resp3));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(config.response_timeout, Some(Duration::from_millis(250)));
        assert_eq!(config.retries, Some(5));
        assert_eq!(config.max_retry_wait, Some(Duration::from_secs(1)));
        assert_eq!(config.pool.max_size, 16);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let manager = config.manager().unwrap();
        assert_eq!(
            manager.to_string(),
            "redis cluster redis://app:***@a:7000,b:7001,c:7002"
        );
        assert_eq!(manager.get_client_name(), Some("api"));
        for seed in manager.seeds() {
            let settings = seed.redis_settings();
            assert_eq!(settings.password(), Some("s3cret"));
            assert_eq!(settings.username(), Some("app"));
            assert!(settings.protocol().supports_resp3());
        }
        let shown = format!("{manager:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = ClusterConfig::from_vars("RC_", &vars(&[("RC_RETRIES", "many")])).unwrap_err();
        assert!(err.to_string().contains("RC_RETRIES"), "{err}");
        let err =
            ClusterConfig::from_vars("RC_", &vars(&[("RC_MIN_RETRY_WAIT", "soon")])).unwrap_err();
        assert!(err.to_string().contains("RC_MIN_RETRY_WAIT"), "{err}");
        let err = ClusterConfig::from_vars("RC_", &vars(&[("RC_POOL_MAX_SIZ", "3")])).unwrap_err();
        assert!(err.to_string().contains("max_siz"), "{err}");
    }

    #[test]
    fn seeds_are_required_and_must_agree() {
        let err = ClusterConfig::new().create_pool().unwrap_err();
        assert_eq!(err.field(), "nodes");
        assert!(err.to_string().contains("no seed node"), "{err}");

        let err = ClusterConfig::from_nodes(["redis://:one@a:7000", "redis://:two@b:7000"])
            .manager()
            .unwrap_err();
        assert!(err.to_string().contains("different password"), "{err}");
        assert!(!err.to_string().contains("one@"), "{err}");

        let err = ClusterManager::from_urls(["unix:///run/redis.sock"]).unwrap_err();
        assert!(err.to_string().contains("Unix socket"), "{err}");

        let err = ClusterConfig::from_nodes(["redis://:s3cret@a:port"])
            .create_pool()
            .unwrap_err();
        assert_eq!(err.field(), "url");
        assert!(err.to_string().contains("invalid port number"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");

        let err = ClusterManager::from_urls(["http://a:7000"]).unwrap_err();
        assert!(err.to_string().contains("not a redis URL"), "{err}");
    }

    #[test]
    fn a_cluster_section_deserialises_and_rejects_unknown_fields() {
        let config: ClusterConfig = serde_json::from_str(
            r#"{ "nodes": ["a:7000"], "retries": 0, "min_retry_wait": "5ms", "pool": { "max_size": 3 } }"#,
        )
        .unwrap();
        assert_eq!(config.retries, Some(0));
        let pool = config.create_pool().unwrap();
        assert_eq!(pool.status().max_size, 3);
        assert!(serde_json::from_str::<ClusterConfig>(r#"{ "node": ["a:7000"] }"#).is_err());
    }
}

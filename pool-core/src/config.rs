//! The pool's configuration, deserialisable from a file or the environment.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BuildError;

/// The order in which idle connections are reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reuse {
    /// The connection returned last goes out first, so the rest stay idle and an
    /// oversized pool shrinks through `idle_timeout`. The default. The connection
    /// returned last waits in a lock-free cell, which the next checkout takes it from.
    #[default]
    MostRecent,
    /// The connection idle longest goes out first, spreading use over all of them.
    Fifo,
}

/// Every setting of a pool, with the defaults a service can start from.
///
/// Durations deserialise from human form (`"30s"`, `"10m"`, `"500ms"`); an optional
/// one is switched off with `null` (or by leaving it out where its default is `None`).
/// Unknown fields are an error, so a misspelt setting is not silently ignored.
///
/// ```
/// let config: pool_core::PoolConfig =
///     serde_json::from_str(r#"{ "max_size": 16, "wait_timeout": "2s", "idle_timeout": null }"#)
///         .unwrap();
/// assert_eq!(config.max_size, 16);
/// assert_eq!(config.wait_timeout, Some(std::time::Duration::from_secs(2)));
/// assert_eq!(config.idle_timeout, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name in traces and metrics (the `pool.name` label).
    pub name: String,
    /// The most connections that may exist at once, counting those being opened.
    pub max_size: usize,
    /// Connections kept open even when idle; upkeep opens them up front and refills.
    pub min_idle: usize,
    /// How long `get` waits for a connection to come free; `0` means do not wait.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Option<Duration>,
    /// How long opening one connection may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// How long a check or reset before checkout may take.
    #[serde(with = "humantime_serde")]
    pub recycle_timeout: Option<Duration>,
    /// Connections are closed once this old (each a little earlier, by a random
    /// jitter of up to a tenth, so connections opened together do not expire together).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// Idle connections beyond `min_idle` are closed after this long unused.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// A connection idle at least this long is checked before checkout; `0` checks on
    /// every checkout; `None` checks only dirty and suspect connections.
    #[serde(with = "humantime_serde")]
    pub check_interval: Option<Duration>,
    /// A connection held longer than this is reported once through `tracing`, with
    /// where it was taken.
    #[serde(with = "humantime_serde")]
    pub leak_threshold: Option<Duration>,
    /// How many connections may be opening at once, so a burst of callers does not
    /// open a connection each while others are about to come back.
    pub max_connecting: usize,
    /// The first wait after a failed connect before the next attempt; it doubles with
    /// each further failure, up to `connect_backoff_max`.
    #[serde(with = "humantime_serde")]
    pub connect_backoff: Duration,
    /// The longest wait between connect attempts while the database is down.
    #[serde(with = "humantime_serde")]
    pub connect_backoff_max: Duration,
    /// Which idle connection is reused first.
    pub reuse: Reuse,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            name: "default".to_owned(),
            max_size: 10,
            min_idle: 0,
            wait_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(10)),
            recycle_timeout: Some(Duration::from_secs(5)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            check_interval: Some(Duration::from_secs(1)),
            leak_threshold: None,
            max_connecting: 2,
            connect_backoff: Duration::from_millis(100),
            connect_backoff_max: Duration::from_secs(5),
            reuse: Reuse::MostRecent,
        }
    }
}

impl PoolConfig {
    /// Checks every field, naming the first one at fault.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.max_size == 0 {
            return Err(BuildError::invalid("max_size", "must be at least 1"));
        }
        if self.min_idle > self.max_size {
            return Err(BuildError::invalid(
                "min_idle",
                format!(
                    "({}) must not exceed max_size ({})",
                    self.min_idle, self.max_size
                ),
            ));
        }
        if self.max_connecting == 0 {
            return Err(BuildError::invalid("max_connecting", "must be at least 1"));
        }
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("recycle_timeout", self.recycle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("idle_timeout", self.idle_timeout),
            ("leak_threshold", self.leak_threshold),
            ("connect_backoff", Some(self.connect_backoff)),
            ("connect_backoff_max", Some(self.connect_backoff_max)),
        ];
        for (field, value) in positive {
            if value == Some(Duration::ZERO) {
                return Err(BuildError::invalid(
                    field,
                    "must be greater than zero (leave it unset to switch it off)",
                ));
            }
        }
        if self.connect_backoff_max < self.connect_backoff {
            return Err(BuildError::invalid(
                "connect_backoff_max",
                "must not be shorter than connect_backoff",
            ));
        }
        Ok(())
    }

    /// The settings given by environment variables named `{prefix}{FIELD}` among `vars`
    /// (with `prefix` `"APP_DB_POOL_"`: `APP_DB_POOL_MAX_SIZE=16`,
    /// `APP_DB_POOL_WAIT_TIMEOUT=2s`, `APP_DB_POOL_IDLE_TIMEOUT=null` to switch one
    /// off), the rest left at their defaults; `None` if no such variable is set. A
    /// value that cannot be read, or an unknown field, is an error naming its variable.
    ///
    /// ```
    /// use pool_core::PoolConfig;
    ///
    /// let vars = [("APP_POOL_MAX_SIZE", "16"), ("APP_POOL_WAIT_TIMEOUT", "2s"), ("HOME", "/")];
    /// let config = PoolConfig::from_vars("APP_POOL_", vars).unwrap().unwrap();
    /// assert_eq!((config.max_size, config.wait_timeout.unwrap().as_secs()), (16, 2));
    ///
    /// let err = PoolConfig::from_vars("APP_POOL_", [("APP_POOL_MIN_IDLE", "two")]).unwrap_err();
    /// assert_eq!(err.variable, "APP_POOL_MIN_IDLE");
    /// ```
    pub fn from_vars<'a>(
        prefix: &str,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<PoolConfig>, EnvVarError> {
        let fields: Vec<(&str, String, serde_json::Value)> = vars
            .into_iter()
            .filter_map(|(key, value)| {
                let field = key.strip_prefix(prefix)?.to_ascii_lowercase();
                Some((key, field, env_value(value)))
            })
            .collect();
        if fields.is_empty() {
            return Ok(None);
        }
        let read = |fields: &mut dyn Iterator<Item = &(&str, String, serde_json::Value)>| {
            let map = fields
                .map(|(_, field, value)| (field.clone(), value.clone()))
                .collect();
            serde_json::from_value::<PoolConfig>(serde_json::Value::Object(map))
        };
        read(&mut fields.iter()).map(Some).map_err(|all| {
            // Name the variable: the first that cannot be read on its own.
            let culprit = fields.iter().find_map(|entry| {
                read(&mut std::iter::once(entry))
                    .err()
                    .map(|e| (entry.0.to_owned(), e))
            });
            let (variable, error) = culprit.unwrap_or_else(|| (format!("{prefix}*"), all));
            EnvVarError {
                variable,
                problem: error.to_string(),
            }
        })
    }

    /// The fields that need a timer, and so a runtime, when they are set.
    pub(crate) fn first_timed_field(&self) -> Option<&'static str> {
        [
            ("wait_timeout", self.wait_timeout.filter(|d| !d.is_zero())),
            ("connect_timeout", self.connect_timeout),
            ("recycle_timeout", self.recycle_timeout),
        ]
        .into_iter()
        .find_map(|(field, value)| value.map(|_| field))
    }
}

/// An environment variable whose value cannot be used: see [`PoolConfig::from_vars`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVarError {
    /// The variable's name.
    pub variable: String,
    /// What is wrong with its value (never the value itself, which might be a secret,
    /// unless the reader quotes it).
    pub problem: String,
}

impl std::fmt::Display for EnvVarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.variable, self.problem)
    }
}

impl std::error::Error for EnvVarError {}

/// An environment value as the JSON value a [`PoolConfig`] field takes: a number, a
/// `null` (also for an empty value), or else a string (a duration such as `2s`, a name,
/// an enum value).
fn env_value(value: &str) -> serde_json::Value {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("null") || trimmed.is_empty() {
        serde_json::Value::Null
    } else if let Ok(n) = trimmed.parse::<u64>() {
        serde_json::Value::from(n)
    } else {
        serde_json::Value::String(trimmed.to_owned())
    }
}

//! Reading settings from environment variables named `{prefix}NAME`, for
//! [`Config::from_env`](crate::Config::from_env) and
//! [`ClusterConfig::from_env`](crate::ClusterConfig::from_env). A value that cannot be
//! read is an error naming the variable, never showing its value when it may be a
//! password.

use std::str::FromStr;
use std::time::Duration;

use pool_core::PoolConfig;
use serde::Deserialize;

use crate::config::Protocol;
use crate::error::ConfigError;

/// The variables whose names start with a prefix.
pub(crate) struct EnvVars<'a> {
    prefix: &'a str,
    vars: &'a [(String, String)],
}

impl<'a> EnvVars<'a> {
    pub(crate) fn new(prefix: &'a str, vars: &'a [(String, String)]) -> Self {
        EnvVars { prefix, vars }
    }

    /// The process's variables starting with `prefix` (those that are not Unicode are
    /// left out).
    pub(crate) fn read_process(prefix: &str) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(key, _)| key.starts_with(prefix))
            .collect()
    }

    /// `{prefix}{name}`'s value; the last one when it is given twice.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        let key = format!("{}{name}", self.prefix);
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    /// An error naming `{prefix}{name}` (the [`Config`](crate::Config) field `field`).
    pub(crate) fn bad(&self, name: &str, field: &'static str, problem: String) -> ConfigError {
        ConfigError::setting(&format!("{}{name}", self.prefix), field, problem)
    }

    /// `{prefix}{name}` read with `FromStr`; `what` names what it should be.
    pub(crate) fn parsed<T: FromStr>(
        &self,
        name: &str,
        field: &'static str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|value| {
                value
                    .trim()
                    .parse()
                    .map_err(|_| self.bad(name, field, format!("`{value}` is not {what}")))
            })
            .transpose()
    }

    /// `{prefix}{name}` as `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub(crate) fn flag(
        &self,
        name: &str,
        field: &'static str,
    ) -> Result<Option<bool>, ConfigError> {
        self.get(name)
            .map(|value| match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => Err(self.bad(name, field, format!("`{value}` is not true or false"))),
            })
            .transpose()
    }

    /// `{prefix}{name}` as a protocol: `resp2` or `resp3`.
    pub(crate) fn protocol(&self, name: &str) -> Result<Option<Protocol>, ConfigError> {
        self.get(name)
            .map(|value| match value.trim().to_ascii_lowercase().as_str() {
                "resp2" | "2" => Ok(Protocol::Resp2),
                "resp3" | "3" => Ok(Protocol::Resp3),
                _ => Err(self.bad(
                    name,
                    "protocol",
                    format!("`{value}` is not a protocol (resp2, resp3)"),
                )),
            })
            .transpose()
    }

    /// `{prefix}{name}` as a duration: whole seconds, or a human duration (`250ms`).
    pub(crate) fn duration(
        &self,
        name: &str,
        field: &'static str,
    ) -> Result<Option<Duration>, ConfigError> {
        self.get(name)
            .map(|value| {
                parse_duration(&value).ok_or_else(|| {
                    self.bad(
                        name,
                        field,
                        format!("`{value}` is neither whole seconds nor a duration like `5s`"),
                    )
                })
            })
            .transpose()
    }

    /// The pool's settings from `{prefix}POOL_{FIELD}` variables, if any is set
    /// (`..._MAX_SIZE=16`, `..._WAIT_TIMEOUT=2s`, `...=null` to switch one off).
    pub(crate) fn pool(&self) -> Result<Option<PoolConfig>, ConfigError> {
        let vars = self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        PoolConfig::from_vars(&format!("{}POOL_", self.prefix), vars)
            .map_err(|e| ConfigError::setting(&e.variable, "pool", e.problem))
    }
}

/// Whole seconds or a human duration.
fn parse_duration(value: &str) -> Option<Duration> {
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

//! The driver's errors: [`Error`] for connects and checks, [`ConfigError`] for a URL or
//! setting that cannot be used.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use redis::RedisError;

/// Why the manager could not open, check or reset a connection.
///
/// Its `Display` names the cause in a few words (`connection refused`, `authentication
/// failed`, ...) and where, never with a password; the error it comes from (the
/// operating system's, the server's own words) is its [`source`](StdError::source),
/// which `pool_core::PoolError`'s `Display` shows too.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server's host name could not be resolved.
    Resolve {
        /// Where to, as `redis://user@host:port/db` (never with a password).
        target: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The socket could not be opened: refused, unreachable, timed out, no such Unix
    /// socket.
    Connect {
        /// Where to.
        target: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`, a password given to
    /// a server that has none...).
    Auth {
        /// Where to.
        target: String,
        /// The redis crate's error, holding the server's words.
        source: RedisError,
    },
    /// The connection opened, but setting it up failed (`SELECT`, `HELLO`,
    /// `CLIENT SETNAME`...) or the connection failed during it.
    Handshake {
        /// Where to.
        target: String,
        /// What was being done.
        step: &'static str,
        /// The redis crate's error.
        source: RedisError,
    },
    /// The check or the session reset before checkout failed.
    Recycle {
        /// What was run: `"health check"` or `"session reset"`.
        step: &'static str,
        /// The redis crate's error.
        source: RedisError,
    },
    /// No seed node of a cluster could be used: each one failed, for the reason its
    /// own error gives (`connection refused`, `authentication failed`, ...).
    SeedsFailed {
        /// The cluster, as its seed nodes (never with a password).
        target: String,
        /// Each seed node's failure, in the order the seeds were given.
        failures: Vec<Error>,
    },
    /// The connection is closed or cannot be reused (its reason says why).
    Closed {
        /// Why.
        reason: &'static str,
    },
    /// `connect` ran outside a tokio runtime, which the connection's task needs.
    NoTokioRuntime,
}

impl Error {
    /// The redis crate's error, if there is one.
    pub fn as_redis(&self) -> Option<&RedisError> {
        match self {
            Error::Auth { source, .. }
            | Error::Handshake { source, .. }
            | Error::Recycle { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The operating system's error, if the socket could not be opened.
    pub fn as_io(&self) -> Option<&io::Error> {
        match self {
            Error::Resolve { source, .. } | Error::Connect { source, .. } => Some(source),
            Error::SeedsFailed { failures, .. } => failures.first().and_then(Error::as_io),
            _ => None,
        }
    }

    /// Whether the server refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth { .. })
    }

    /// Whether the connection was refused (nothing listens there); for a cluster,
    /// whether every seed node refused it.
    pub fn is_refused(&self) -> bool {
        match self {
            Error::Connect { source, .. } => source.kind() == io::ErrorKind::ConnectionRefused,
            Error::SeedsFailed { failures, .. } => {
                !failures.is_empty() && failures.iter().all(Error::is_refused)
            }
            _ => false,
        }
    }

    /// Where the failed connect was going, for the variants that say.
    fn target(&self) -> Option<&str> {
        match self {
            Error::Resolve { target, .. }
            | Error::Connect { target, .. }
            | Error::Auth { target, .. }
            | Error::Handshake { target, .. }
            | Error::SeedsFailed { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The cause in a few words: what `Display` shows after the target.
    fn cause(&self) -> String {
        match self {
            Error::Resolve { .. } => "cannot resolve the host name".to_owned(),
            Error::Connect { source, .. } => io_cause(source).to_owned(),
            Error::Auth { .. } => "authentication failed".to_owned(),
            Error::Handshake { step, .. } => format!("{step} failed"),
            Error::SeedsFailed { failures, .. } => {
                let unreachable = failures
                    .iter()
                    .all(|f| matches!(f, Error::Resolve { .. } | Error::Connect { .. }));
                let each: Vec<String> = failures
                    .iter()
                    .map(|f| match f.target() {
                        Some(seed) => format!("{seed}: {}", f.cause()),
                        None => f.to_string(),
                    })
                    .collect();
                format!(
                    "no seed node {} ({})",
                    if unreachable { "reachable" } else { "usable" },
                    each.join("; ")
                )
            }
            Error::Recycle { step, .. } => format!("redis {step} before checkout failed"),
            Error::Closed { reason } => format!("the redis connection is unusable: {reason}"),
            Error::NoTokioRuntime => "pool-redis must connect inside a tokio runtime (the \
                                      connection task is spawned with tokio::spawn)"
                .to_owned(),
        }
    }
}

/// A few words for why a socket could not be opened.
fn io_cause(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::NotFound => "no such socket",
        io::ErrorKind::PermissionDenied => "permission denied",
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => {
            "connection closed by the server"
        }
        _ => "connection failed",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target() {
            Some(target) => write!(f, "cannot connect to {target}: {}", self.cause()),
            None => f.write_str(&self.cause()),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Resolve { source, .. } | Error::Connect { source, .. } => Some(source),
            Error::Auth { source, .. }
            | Error::Handshake { source, .. }
            | Error::Recycle { source, .. } => Some(source),
            // The first seed's failure, whose own source holds the server's or the
            // operating system's words.
            Error::SeedsFailed { failures, .. } => failures.first().map(|f| f as _),
            Error::Closed { .. } | Error::NoTokioRuntime => None,
        }
    }
}

/// Whether `err` (from the handshake) says the credentials were refused.
pub(crate) fn is_auth_failure(err: &RedisError) -> bool {
    if err.kind() == redis::ErrorKind::AuthenticationFailed {
        return true;
    }
    if matches!(err.code(), Some("WRONGPASS" | "NOAUTH")) {
        return true;
    }
    // `AUTH` given to a server without a password: `ERR AUTH <password> called without
    // any password configured for the default user`.
    err.detail()
        .is_some_and(|detail| detail.starts_with("AUTH") || detail.contains("-AUTH"))
}

/// A URL or setting that cannot be used, named with the problem. A URL is shown with
/// its password replaced by `***`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    what: String,
    field: &'static str,
    problem: String,
}

impl ConfigError {
    /// A URL that cannot be used.
    pub(crate) fn url(input: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            what: format!("URL `{}`", crate::redact::redact_url(input)),
            field: "url",
            problem: problem.into(),
        }
    }

    /// A setting (a [`Config`](crate::Config) field or an environment variable,
    /// `shown` as named) that cannot be used.
    pub(crate) fn setting(shown: &str, field: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            what: format!("setting `{shown}`"),
            field,
            problem: problem.into(),
        }
    }

    /// The [`Config`](crate::Config) field at fault (`"url"` for a URL).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid redis {}: {}", self.what, self.problem)
    }
}

impl StdError for ConfigError {}

//! The driver's errors: [`Error`] for connects and checks, [`ConfigError`] for a
//! connection string that cannot be used.

use std::error::Error as StdError;
use std::fmt;

/// Why the manager could not open, check or reset a connection.
///
/// Every variant keeps tokio-postgres's own error as its [`source`](StdError::source),
/// so the server's words (`database "x" does not exist`,
/// `password authentication failed for user "app"`) and the operating system's
/// (`Connection refused`) reach whoever prints the chain; `pool_core::PoolError`'s
/// `Display` does. This type's own `Display` names what was being done and where, with
/// the password left out.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Opening a connection failed.
    Connect {
        /// Where to, as `postgres://user@host:port/dbname` (never with a password).
        target: String,
        /// tokio-postgres's error.
        source: tokio_postgres::Error,
    },
    /// The connection string's (or [`Config`](crate::Config)'s) `connect_timeout`
    /// passed before the server had let the connection in. As libpq, it bounds the
    /// whole connect (socket, TLS, authentication), each host of a multi-host target
    /// in turn; tokio-postgres itself bounds only the socket's connect with it.
    ConnectTimedOut {
        /// Where to, as `postgres://user@host:port/dbname` (never with a password).
        target: String,
        /// The bound that passed: `connect_timeout` times the number of hosts.
        after: std::time::Duration,
    },
    /// The check or the session reset before checkout failed.
    Recycle {
        /// What was run: `"health check"` or `"session reset"`.
        step: &'static str,
        /// tokio-postgres's error.
        source: tokio_postgres::Error,
    },
    /// The connection's task has ended: the connection is closed.
    Closed,
    /// `connect` ran outside a tokio runtime, which tokio-postgres's connection task
    /// needs.
    NoTokioRuntime,
}

impl Error {
    /// tokio-postgres's error, if there is one.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Connect { source, .. } | Error::Recycle { source, .. } => Some(source),
            Error::ConnectTimedOut { .. } | Error::Closed | Error::NoTokioRuntime => None,
        }
    }

    /// The server's error (SQLSTATE, message, detail), if the server sent one.
    pub fn as_db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.as_postgres().and_then(|e| e.as_db_error())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { target, .. } => write!(f, "cannot connect to {target}"),
            Error::ConnectTimedOut { target, after } => write!(
                f,
                "cannot connect to {target}: not let in within {after:?} (its connect_timeout)"
            ),
            Error::Recycle { step, .. } => write!(f, "postgres {step} before checkout failed"),
            Error::Closed => f.write_str("the postgres connection is closed"),
            Error::NoTokioRuntime => f.write_str(
                "pool-postgres must connect inside a tokio runtime (the connection task is \
                 spawned with tokio::spawn)",
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.as_postgres().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A connection string or setting that cannot be used, named with the problem. A
/// connection string is shown with its password replaced by `***`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    what: String,
    field: &'static str,
    problem: String,
}

impl ConfigError {
    /// A connection string that cannot be used.
    pub(crate) fn new(input: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            what: format!(
                "connection string `{}`",
                crate::redact::redact_connection_string(input)
            ),
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

    /// The [`Config`](crate::Config) field at fault (`"url"` for a connection string).
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
        write!(f, "invalid postgres {}: {}", self.what, self.problem)
    }
}

impl StdError for ConfigError {}

/// Whether `err` says the connection or the server is gone: the client reports itself
/// closed, the socket failed, or the server sent SQLSTATE class 08 (connection exception) or 57P01–57P03
/// (admin shutdown, crash shutdown, cannot connect now).
pub(crate) fn is_fatal(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    // A failed read or write on the socket.
    if err
        .source()
        .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
    {
        return true;
    }
    match err.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        None => false,
    }
}

//! The driver's errors: [`Error`] for connects and checks, [`ConfigError`] for a URL or
//! setting that cannot be used.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Why a connect failed, read from mysql_async's error: what a log line or a caller
/// deciding whether to retry needs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The server turned the credentials down (`Access denied for user ...`), or the
    /// user may not use the database or connect from this host.
    AccessDenied,
    /// The database named in the URL does not exist (`Unknown database ...`).
    UnknownDatabase,
    /// The server has no room for another connection (`Too many connections`).
    TooManyConnections,
    /// Nothing listens at the address: the connection was refused.
    Refused,
    /// The host could not be reached (no route, network down, timed out).
    Unreachable,
    /// The host name could not be resolved.
    UnknownHost,
    /// Anything else; the source says what.
    Other,
}

impl ConnectFailure {
    /// Reads the cause from mysql_async's error.
    pub(crate) fn of(err: &mysql_async::Error) -> Self {
        match err {
            mysql_async::Error::Server(server) => match server.code {
                // ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR,
                // ER_HOST_NOT_PRIVILEGED, ER_ACCESS_DENIED_NO_PASSWORD_ERROR
                1044 | 1045 | 1130 | 1698 => ConnectFailure::AccessDenied,
                // ER_BAD_DB_ERROR
                1049 => ConnectFailure::UnknownDatabase,
                // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS
                1040 | 1203 => ConnectFailure::TooManyConnections,
                _ => ConnectFailure::Other,
            },
            mysql_async::Error::Io(mysql_async::IoError::Io(io)) => Self::of_io(io),
            _ => ConnectFailure::Other,
        }
    }

    fn of_io(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::TimedOut
            | io::ErrorKind::AddrNotAvailable => ConnectFailure::Unreachable,
            _ if err.to_string().contains("lookup address") => ConnectFailure::UnknownHost,
            _ => ConnectFailure::Other,
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectFailure::AccessDenied => "access denied",
            ConnectFailure::UnknownDatabase => "unknown database",
            ConnectFailure::TooManyConnections => "the server has too many connections",
            ConnectFailure::Refused => "connection refused",
            ConnectFailure::Unreachable => "host unreachable",
            ConnectFailure::UnknownHost => "unknown host",
            ConnectFailure::Other => "connect failed",
        })
    }
}

/// Why the manager could not open, check or reset a connection.
///
/// Every variant with a mysql_async error keeps it ([`as_mysql`](Self::as_mysql)); its
/// [`source`](StdError::source) is the innermost cause (the server's error, with its
/// code and message, or the operating system's), so whoever prints the chain
/// (`pool_core::PoolError`'s `Display` does) reads, for instance,
/// `cannot connect to mysql://app@db:3306/x: access denied: ERROR 1045 (28000): Access
/// denied for user 'app'@'10.0.0.5' (using password: YES)`. Passwords are never shown.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Opening a connection failed.
    Connect {
        /// Where to, as `mysql://user@host:port/dbname` (a password shows as `***`).
        target: String,
        /// What went wrong, in short.
        failure: ConnectFailure,
        /// mysql_async's error.
        source: mysql_async::Error,
    },
    /// The check or the session reset before checkout failed.
    Recycle {
        /// What was run: `"health check"`, `"rollback"`, `"session reset"` or
        /// `"change user"`.
        step: &'static str,
        /// mysql_async's error.
        source: mysql_async::Error,
    },
    /// The connection is closed: its socket failed or it was closed on purpose.
    Closed,
    /// `connect` ran outside a tokio runtime, which mysql_async's sockets need.
    NoTokioRuntime,
}

impl Error {
    /// mysql_async's error, if there is one.
    pub fn as_mysql(&self) -> Option<&mysql_async::Error> {
        match self {
            Error::Connect { source, .. } | Error::Recycle { source, .. } => Some(source),
            Error::Closed | Error::NoTokioRuntime => None,
        }
    }

    /// The server's error (code, SQLSTATE, message), if the server sent one.
    pub fn as_server_error(&self) -> Option<&mysql_async::ServerError> {
        match self.as_mysql() {
            Some(mysql_async::Error::Server(server)) => Some(server),
            _ => None,
        }
    }

    /// Why a connect failed; `None` for other errors.
    pub fn connect_failure(&self) -> Option<ConnectFailure> {
        match self {
            Error::Connect { failure, .. } => Some(*failure),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect {
                target, failure, ..
            } => write!(f, "cannot connect to {target}: {failure}"),
            Error::Recycle { step, .. } => write!(f, "mysql {step} before checkout failed"),
            Error::Closed => f.write_str("the mysql connection is closed"),
            Error::NoTokioRuntime => f.write_str(
                "pool-mysql must connect inside a tokio runtime (mysql_async's sockets are \
                 tokio's)",
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.as_mysql().map(innermost)
    }
}

/// The most telling part of mysql_async's error: the server's error or the I/O error
/// itself rather than the wrapper that says "Server error: `...'" around it.
fn innermost(err: &mysql_async::Error) -> &(dyn StdError + 'static) {
    match err {
        mysql_async::Error::Server(server) => server,
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io,
        mysql_async::Error::Driver(driver) => driver,
        mysql_async::Error::Url(url) => url,
        other => other,
    }
}

/// Whether `err`, from a query or command, says the connection is gone: an I/O
/// error, a driver error about the protocol, or a server error that ends the session
/// (killed, server shutting down, timed out).
pub(crate) fn is_fatal(err: &mysql_async::Error) -> bool {
    use mysql_async::DriverError;
    match err {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(driver) => matches!(
            driver,
            DriverError::ConnectionClosed
                | DriverError::PacketOutOfOrder
                | DriverError::UnexpectedPacket { .. }
                | DriverError::PacketTooLarge
                | DriverError::BadCompressedPacketHeader
        ),
        // ER_SERVER_SHUTDOWN, ER_ABORTING_CONNECTION, ER_NEW_ABORTING_CONNECTION,
        // ER_CONNECTION_KILLED (MariaDB), ER_SESSION_WAS_KILLED and
        // ER_CLIENT_INTERACTION_TIMEOUT (MySQL)
        mysql_async::Error::Server(server) => {
            matches!(server.code, 1053 | 1152 | 1184 | 1927 | 3169 | 4031)
        }
        mysql_async::Error::Url(_) | mysql_async::Error::Other(_) => false,
    }
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
        write!(f, "invalid mysql {}: {}", self.what, self.problem)
    }
}

impl StdError for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_are_read_from_the_error() {
        let server = |code| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "28000".into(),
            })
        };
        assert_eq!(
            ConnectFailure::of(&server(1045)),
            ConnectFailure::AccessDenied
        );
        assert_eq!(
            ConnectFailure::of(&server(1049)),
            ConnectFailure::UnknownDatabase
        );
        assert_eq!(
            ConnectFailure::of(&server(1040)),
            ConnectFailure::TooManyConnections
        );
        let io = |kind| mysql_async::Error::Io(mysql_async::IoError::Io(io::Error::new(kind, "x")));
        assert_eq!(
            ConnectFailure::of(&io(io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
        assert_eq!(
            ConnectFailure::of(&io(io::ErrorKind::TimedOut)),
            ConnectFailure::Unreachable
        );
        assert!(is_fatal(&server(1927)));
        assert!(!is_fatal(&server(1062)));
        assert!(is_fatal(&io(io::ErrorKind::UnexpectedEof)));
    }
}

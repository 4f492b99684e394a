//! Database servers for tests: the URL of a PostgreSQL, MariaDB or Redis server a
//! test can use, started on demand when none is around.
//!
//! [`postgres`], [`mysql`] and [`redis`] find a server in this order:
//!
//! 1. the URL in the environment ([`Database::env_var`]: `POOL_TEST_POSTGRES_URL`,
//!    `POOL_TEST_MYSQL_URL`, `POOL_TEST_REDIS_URL`), taken as it is;
//! 2. a server already on its default local port (127.0.0.1:5432, :3306, :6379),
//!    checked with a short handshake first: the URLs are
//!    `postgres://postgres@127.0.0.1:5432/test` (trust auth, database `test`; when the
//!    `postgres` role is refused, the login name of the user running the tests is tried,
//!    as on a Homebrew install), `mysql://root@127.0.0.1:3306/test` and
//!    `redis://127.0.0.1:6379`. A server that answers there but cannot be used
//!    (a password asked for, no database `test`) is an error, not a reason to go on:
//!    set the environment URL instead;
//! 3. a throwaway server, as [`postgres_throwaway`], [`mysql_throwaway`] and
//!    [`redis_throwaway`] always start.
//!
//! A throwaway server is started from the installed binaries, in a new temporary
//! directory (under [`std::env::temp_dir`]) on a free port of 127.0.0.1, without a
//! password: `postgres://postgres@127.0.0.1:PORT/test` (user `postgres`, trust auth,
//! database `test`), `mysql://root@127.0.0.1:PORT/test` (root without password,
//! database `test`) and `redis://127.0.0.1:PORT`. PostgreSQL and MariaDB refuse to run
//! as root, so when the tests run as root those servers run as the `postgres` and
//! `mysql` system users (their packages create them). A missing binary is an error
//! naming the Debian package to install. Such a server can be stopped and started
//! again on the same port and data ([`Server::stop`], [`Server::start`]), for
//! restart cases. Dropping the [`Server`] stops it and removes its directory; should
//! the test process end without dropping it (a `static`, `process::exit`, a kill), the
//! server still stops: it watches a pipe from the test process and shuts down when
//! that closes. Its directory then stays behind in the temporary directory.
//!
//! Every function here blocks (a throwaway server starts in about a second). From an
//! async test on tokio's multi-thread runtime wrap the call in
//! `tokio::task::block_in_place(|| server.stop())`; elsewhere move the server into
//! `spawn_blocking` and back out. Each call of [`postgres`] and the others looks again
//! and, without a shared server, starts a new throwaway one: keep the [`Server`] for as
//! long as its URL is used.
//!
//! ```no_run
//! let mut server = pool_testkit::servers::postgres_throwaway()?;
//! println!("{}", server.url()); // postgres://postgres@127.0.0.1:PORT/test
//! server.stop()?; // the port is closed now
//! server.start()?; // the same data, the same port
//! # Ok::<(), pool_testkit::servers::ServerError>(())
//! ```

pub mod pgbouncer;
mod probe;
mod process;
mod redis_cluster;

use std::fmt;
use std::io;
use std::path::Path;

use process::Throwaway;
pub use redis_cluster::{redis_cluster, RedisCluster};

pub use pgbouncer::{pgbouncer, PgBouncer, RestartablePgBouncer};

/// The databases this module provides servers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Database {
    /// PostgreSQL.
    Postgres,
    /// MariaDB (the MySQL protocol).
    Mysql,
    /// Redis.
    Redis,
}

impl Database {
    /// Every database, in a fixed order.
    pub const ALL: [Database; 3] = [Database::Postgres, Database::Mysql, Database::Redis];

    /// The server's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Database::Postgres => "PostgreSQL",
            Database::Mysql => "MariaDB",
            Database::Redis => "Redis",
        }
    }

    /// The environment variable holding a test server's URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Database::Postgres => "POOL_TEST_POSTGRES_URL",
            Database::Mysql => "POOL_TEST_MYSQL_URL",
            Database::Redis => "POOL_TEST_REDIS_URL",
        }
    }

    /// The server's default TCP port.
    pub fn default_port(self) -> u16 {
        match self {
            Database::Postgres => 5432,
            Database::Mysql => 3306,
            Database::Redis => 6379,
        }
    }

    /// The Debian package that installs the server.
    pub fn package(self) -> &'static str {
        match self {
            Database::Postgres => "postgresql",
            Database::Mysql => "mariadb-server",
            Database::Redis => "redis-server",
        }
    }

    /// The URL of a server of ours on 127.0.0.1: no password, database `test`.
    fn local_url(self, port: u16, user: &str) -> String {
        match self {
            Database::Postgres => format!("postgres://{user}@127.0.0.1:{port}/test"),
            Database::Mysql => format!("mysql://{user}@127.0.0.1:{port}/test"),
            Database::Redis => format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a [`Server`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The URL in the database's environment variable.
    Env,
    /// A server that was already on the default local port.
    DefaultPort,
    /// A throwaway server this module started.
    Throwaway,
}

/// A database server for tests: its URL and, when it is a throwaway one, the process.
///
/// Dropping a throwaway server stops it and removes its directory; dropping any other
/// leaves the server alone. Its `Debug` output hides a password in the URL.
pub struct Server {
    database: Database,
    url: String,
    source: Source,
    port: Option<u16>,
    throwaway: Option<Throwaway>,
}

impl Server {
    /// The server's URL, to connect with. A throwaway server's URL has no password;
    /// one from the environment may have one, so don't print it (`{:?}` hides it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which database this is.
    pub fn database(&self) -> Database {
        self.database
    }

    /// Where the server came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Whether this is a throwaway server, which [`stop`](Self::stop) and
    /// [`start`](Self::start) control.
    pub fn is_throwaway(&self) -> bool {
        self.throwaway.is_some()
    }

    /// The TCP port on 127.0.0.1, for a throwaway server or one found on the default
    /// port; `None` for a URL from the environment.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether a throwaway server is running (started and not stopped); a server from
    /// elsewhere counts as running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.throwaway {
            Some(throwaway) => throwaway.is_running(),
            None => true,
        }
    }

    /// The process id of a running throwaway server (PostgreSQL's postmaster, `mariadbd`,
    /// `redis-server`).
    pub fn pid(&self) -> Option<u32> {
        self.throwaway.as_ref().and_then(Throwaway::pid)
    }

    /// A throwaway server's directory (data, logs, sockets), removed on drop.
    pub fn dir(&self) -> Option<&Path> {
        self.throwaway.as_ref().map(Throwaway::dir)
    }

    /// Stops a throwaway server and waits until its process has exited, so its port is
    /// closed when this returns: PostgreSQL with a fast shutdown (SIGINT: sessions are
    /// ended, open transactions rolled back), MariaDB and Redis with SIGTERM. A server
    /// that has not exited after 10 s is killed and that is reported as an error.
    /// Stopping a stopped server does nothing. Blocks.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.throwaway_mut()?.stop()
    }

    /// Starts a stopped throwaway server again, on the same data and port, and waits
    /// (up to 20 s) until it accepts connections. Starting a running server does
    /// nothing. Blocks.
    pub fn start(&mut self) -> Result<(), ServerError> {
        self.throwaway_mut()?.start()
    }

    fn throwaway_mut(&mut self) -> Result<&mut Throwaway, ServerError> {
        let (database, source) = (self.database, self.source);
        self.throwaway
            .as_mut()
            .ok_or(ServerError::NotThrowaway { database, source })
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("database", &self.database)
            .field("url", &redact(&self.url))
            .field("source", &self.source)
            .field("port", &self.port)
            .field("dir", &self.dir())
            .field("pid", &self.pid())
            .finish()
    }
}

/// A URL with the password in its user info, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // A `key=value` connection string, as PostgreSQL also takes.
        return url
            .split(' ')
            .map(|word| match word.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => word.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let rest = &url[scheme_end + 3..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return url.to_owned();
    };
    let start = scheme_end + 3 + colon + 1;
    format!("{}***{}", &url[..start], &url[scheme_end + 3 + at..])
}

/// Why a server could not be provided, started or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// A binary a throwaway server needs is not installed.
    MissingBinary {
        /// The database.
        database: Database,
        /// The program that was looked for.
        binary: &'static str,
        /// Where it was looked for.
        looked_in: String,
        /// The Debian package that installs it.
        package: &'static str,
    },
    /// The tests run as root, the server refuses to, and its system user is missing.
    MissingUser {
        /// The database.
        database: Database,
        /// The system user the server would run as.
        user: &'static str,
    },
    /// A server answers on the default local port but cannot be used as the tests
    /// expect (a password asked for, no database `test`, ...).
    Unusable {
        /// The database.
        database: Database,
        /// The address it answers on.
        addr: String,
        /// What it said.
        reason: String,
    },
    /// [`Server::stop`] or [`Server::start`] on a server that is not a throwaway one.
    NotThrowaway {
        /// The database.
        database: Database,
        /// Where the server came from.
        source: Source,
    },
    /// An I/O error while setting a throwaway server up or tearing it down.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// A command or a server failed (exited, timed out, answered with an error).
    Failed {
        /// What failed, and how.
        context: String,
        /// The last lines of its log, possibly empty.
        log_tail: String,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::MissingBinary {
                database,
                binary,
                looked_in,
                package,
            } => write!(
                f,
                "{database}: `{binary}` is not installed (looked in {looked_in}); install \
                 the Debian package `{package}` (apt-get install {package}), or set {} to \
                 the URL of a running server",
                database.env_var()
            ),
            ServerError::MissingUser { database, user } => write!(
                f,
                "{database} does not run as root, so a throwaway server runs as the system \
                 user `{user}`, which does not exist; install the Debian package `{}` \
                 (it creates that user) or run the tests as another user",
                database.package()
            ),
            ServerError::Unusable {
                database,
                addr,
                reason,
            } => write!(
                f,
                "a {database} server answers on {addr} but the tests cannot use it: \
                 {reason}; set {} to the URL of a server they can use",
                database.env_var()
            ),
            ServerError::NotThrowaway { database, source } => write!(
                f,
                "this {database} server is not a throwaway one (it comes from {source:?}): \
                 only throwaway servers can be stopped and started"
            ),
            ServerError::Io { context, source } => write!(f, "{context}: {source}"),
            ServerError::Failed { context, log_tail } => {
                f.write_str(context)?;
                if !log_tail.is_empty() {
                    write!(f, "\n--- last lines of its log ---\n{log_tail}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A PostgreSQL server for tests: `POOL_TEST_POSTGRES_URL`, else the one on
/// 127.0.0.1:5432, else a throwaway one (see the [module docs](self)).
pub fn postgres() -> Result<Server, ServerError> {
    shared(Database::Postgres, env_url(Database::Postgres).as_deref())
}

/// A new throwaway PostgreSQL server, never a shared one: for cases that stop or
/// restart the server.
pub fn postgres_throwaway() -> Result<Server, ServerError> {
    throwaway(Database::Postgres)
}

/// A MariaDB server for tests: `POOL_TEST_MYSQL_URL`, else the one on 127.0.0.1:3306,
/// else a throwaway one (see the [module docs](self)).
pub fn mysql() -> Result<Server, ServerError> {
    shared(Database::Mysql, env_url(Database::Mysql).as_deref())
}

/// A new throwaway MariaDB server, never a shared one.
pub fn mysql_throwaway() -> Result<Server, ServerError> {
    throwaway(Database::Mysql)
}

/// A Redis server for tests: `POOL_TEST_REDIS_URL`, else the one on 127.0.0.1:6379,
/// else a throwaway one (see the [module docs](self)).
pub fn redis() -> Result<Server, ServerError> {
    shared(Database::Redis, env_url(Database::Redis).as_deref())
}

/// A new throwaway Redis server, never a shared one.
pub fn redis_throwaway() -> Result<Server, ServerError> {
    throwaway(Database::Redis)
}

/// The URL in the database's environment variable, if it is set and not blank.
pub fn env_url(database: Database) -> Option<String> {
    std::env::var(database.env_var())
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A server for tests, with the environment's URL given: `env_url` when it is `Some`
/// and not blank, else the server on the default local port, else a throwaway one.
/// [`postgres`] and the others call this with [`env_url`].
pub fn shared(database: Database, env_url: Option<&str>) -> Result<Server, ServerError> {
    if let Some(url) = env_url.map(str::trim).filter(|url| !url.is_empty()) {
        return Ok(Server {
            database,
            url: url.to_owned(),
            source: Source::Env,
            port: None,
            throwaway: None,
        });
    }
    let port = database.default_port();
    if let Some(user) = probe::default_local(database, port)? {
        return Ok(Server {
            database,
            url: database.local_url(port, &user),
            source: Source::DefaultPort,
            port: Some(port),
            throwaway: None,
        });
    }
    throwaway(database)
}

/// A new throwaway server of `database`, started and accepting connections.
pub fn throwaway(database: Database) -> Result<Server, ServerError> {
    let throwaway = Throwaway::create(database)?;
    let port = throwaway.port();
    let user = match database {
        Database::Postgres => "postgres",
        Database::Mysql => "root",
        Database::Redis => "",
    };
    Ok(Server {
        database,
        url: database.local_url(port, user),
        source: Source::Throwaway,
        port: Some(port),
        throwaway: Some(throwaway),
    })
}

/// A throwaway server created on first use and kept for the whole run, that async
/// tests stop and start (the conformance suite's restart case). Its blocking work runs
/// on tokio's blocking threads; clones share the one server.
#[derive(Clone, Debug)]
pub struct Restartable {
    database: Database,
    server: std::sync::Arc<std::sync::Mutex<Option<Server>>>,
}

impl Restartable {
    /// A throwaway server of `database`, not started until first used.
    pub fn new(database: Database) -> Self {
        Restartable {
            database,
            server: Default::default(),
        }
    }

    /// The server's URL, starting it first if this is its first use.
    pub async fn url(&self) -> Result<String, String> {
        self.with(|server| Ok(server.url().to_owned())).await
    }

    /// Stops the server: every connection to it dies, new connects are refused.
    pub async fn stop(&self) -> Result<(), String> {
        self.with(|server| {
            server
                .stop()
                .map_err(|e| format!("stopping the throwaway server: {e}"))
        })
        .await
    }

    /// Starts the server again on the same port.
    pub async fn start(&self) -> Result<(), String> {
        self.with(|server| {
            server
                .start()
                .map_err(|e| format!("starting the throwaway server: {e}"))
        })
        .await
    }

    async fn with<T, F>(&self, action: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&mut Server) -> Result<T, String> + Send + 'static,
    {
        let (database, server) = (self.database, std::sync::Arc::clone(&self.server));
        tokio::task::spawn_blocking(move || {
            let mut slot = server
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_none() {
                let created = throwaway(database)
                    .map_err(|e| format!("a throwaway {database} server: {e}"))?;
                *slot = Some(created);
            }
            action(slot.as_mut().expect("created above"))
        })
        .await
        .map_err(|e| format!("the blocking task for the restartable server: {e}"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cr:et@db:5432/x?a=b@c"),
            "postgres://app:***@db:5432/x?a=b@c"
        );
        assert_eq!(
            redact("redis://:pw@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("host=x password=y user=z"),
            "host=x password=*** user=z"
        );
    }
}

//! The `pool_core::Manager` for mysql_async.

use std::fmt;

use mysql_async::prelude::Queryable;
use mysql_async::{ChangeUserOpts, Conn, Opts};
use pool_core::{ConnectionInfo, ReturnState};

use crate::connection::MysqlConnection;
use crate::error::{ConfigError, ConnectFailure, Error};

/// How much the manager does when the pool checks a connection before checkout.
///
/// The pool checks a connection only when a check is due: it sat idle for the pool's
/// `check_interval`, it came back dirty, or another connection was found broken since
/// its last check. A connection that came back dirty is always reset, whatever the
/// mode (see [`Manager`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecycleMode {
    /// No round trip: only whether the connection is known to be closed.
    Fast,
    /// A round trip (`COM_PING`) when a check is due. The default.
    #[default]
    Verified,
    /// A full session reset before every reuse, for sessions the pool cannot follow
    /// (statements run through the `Conn` directly).
    Clean,
}

/// Opens, checks and resets [`MysqlConnection`]s for a [`Pool`](crate::Pool).
///
/// mysql_async's own `Pool` is not used: `pool_core` does the pooling, and this
/// manager opens single `Conn`s with the [`Opts`] given (its `pool_opts` are ignored).
///
/// # Resetting a session
/// A connection that comes back dirty (see [`MysqlConnection`]) is reset before its
/// next checkout with `COM_RESET_CONNECTION` (mysql_async's `Conn::reset`): it rolls
/// back, resets session and user variables, drops temporary tables, releases
/// `GET_LOCK` and table locks and closes prepared statements, after which mysql_async
/// runs the `setup` statements of the `Opts` again. On a server without it (MySQL
/// before 5.7.3, MariaDB before 10.2.4) the reset is a `ROLLBACK` and then
/// `COM_CHANGE_USER` to the same user, which re-initialises the session the same way.
/// If a `USE` was seen, the configured database is selected again. (Before any command
/// mysql_async itself reads and drops a result the last user left unread, and rolls
/// back a `Transaction` dropped without commit.)
///
/// Any failure discards the connection: it is never handed out dirty.
///
/// Needs a tokio runtime: mysql_async's sockets are tokio's.
#[derive(Clone)]
pub struct Manager {
    opts: Opts,
    recycle_mode: RecycleMode,
    target: String,
}

impl Manager {
    /// A manager connecting with mysql_async's `opts` (from `Opts::from_url` or an
    /// `OptsBuilder`).
    pub fn new(opts: impl Into<Opts>) -> Self {
        let opts = opts.into();
        let target = crate::redact::describe(&opts);
        Manager {
            opts,
            recycle_mode: RecycleMode::default(),
            target,
        }
    }

    /// A manager for a `mysql://user:password@host:port/dbname?option=value` URL
    /// (mysql_async's options, such as `prefer_socket=false` or `stmt_cache_size=64`).
    ///
    /// ```
    /// let manager = pool_mysql::Manager::from_url("mysql://app:secret@db:3306/orders")?;
    /// assert_eq!(manager.to_string(), "mysql://app:***@db:3306/orders");
    ///
    /// let err = pool_mysql::Manager::from_url("mysql://app:secret@db:port/x").unwrap_err();
    /// assert!(err.to_string().contains("port"), "{err}");
    /// assert!(!err.to_string().contains("secret"), "{err}");
    /// # Ok::<(), pool_mysql::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        Ok(Manager::new(parse_url(url)?))
    }

    /// Sets how much a due check does (the default is [`RecycleMode::Verified`]).
    pub fn recycle_mode(mut self, mode: RecycleMode) -> Self {
        self.recycle_mode = mode;
        self
    }

    /// The mode set by [`recycle_mode`](Self::recycle_mode).
    pub fn get_recycle_mode(&self) -> RecycleMode {
        self.recycle_mode
    }

    /// mysql_async's options this manager connects with.
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// Resets `conn`'s session (see the type's docs).
    async fn reset(&self, conn: &mut MysqlConnection) -> Result<(), Error> {
        let step = |step| move |source| Error::Recycle { step, source };
        let raw: &mut Conn = conn.conn_mut();
        if !raw.reset().await.map_err(step("session reset"))? {
            reset_without_com_reset(raw).await?;
        }
        if conn.db_changed() {
            if let Some(db) = self.opts.db_name() {
                let sql = format!("USE `{}`", db.replace('`', "``"));
                conn.conn_mut()
                    .query_drop(sql)
                    .await
                    .map_err(step("use database"))?;
            }
        }
        conn.mark_clean();
        Ok(())
    }
}

/// The reset where `COM_RESET_CONNECTION` is missing: roll back, then
/// `COM_CHANGE_USER` to the same user, which re-initialises the session (and runs the
/// `setup` statements again).
async fn reset_without_com_reset(raw: &mut Conn) -> Result<(), Error> {
    let step = |step| move |source| Error::Recycle { step, source };
    raw.query_drop("ROLLBACK").await.map_err(step("rollback"))?;
    raw.change_user(ChangeUserOpts::default())
        .await
        .map_err(step("change user"))
}

/// mysql_async's options for a URL, with the problem named (never the password).
pub(crate) fn parse_url(url: &str) -> Result<Opts, ConfigError> {
    const EXPECTED: &str = "expected `mysql://user:password@host:port/database`";
    match pool_core::redact::url_scheme(url.trim()) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mysql") => {}
        Some(scheme) => {
            return Err(ConfigError::url(
                url,
                format!("unsupported scheme `{scheme}://`: {EXPECTED}"),
            ));
        }
        None => {
            return Err(ConfigError::url(
                url,
                format!("not a `mysql://` URL: {EXPECTED}"),
            ))
        }
    }
    let opts = Opts::from_url(url.trim()).map_err(|e| {
        let problem = match &e {
            mysql_async::UrlError::Parse(parse) => format!("{parse}"),
            other => other.to_string(),
        };
        ConfigError::url(url, problem)
    })?;
    if let Some(path) = database_path(url.trim()) {
        // mysql_async would connect to the first segment and ignore the rest.
        if path.contains('/') {
            return Err(ConfigError::url(
                url,
                format!("the database `{path}` holds a `/`: a URL names one database"),
            ));
        }
    }
    Ok(opts)
}

/// The path of a `scheme://authority/path?query` URL, without its leading `/` and
/// any trailing one.
fn database_path(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    // The user info may hold a `/` (in a password), the host never does.
    let authority_end = rest.rfind('@').map_or(0, |at| at + 1);
    let slash = rest[authority_end..].find('/')? + authority_end;
    Some(rest[slash + 1..].trim_end_matches('/'))
}

impl fmt::Display for Manager {
    /// Where it connects, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("target", &self.target)
            .field("recycle_mode", &self.recycle_mode)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl pool_core::Manager for Manager {
    type Connection = MysqlConnection;
    type Error = Error;

    async fn connect(&self) -> Result<MysqlConnection, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoTokioRuntime);
        }
        let mut conn = Conn::new(self.opts.clone())
            .await
            .map_err(|source| Error::Connect {
                target: self.target.clone(),
                failure: ConnectFailure::of(&source),
                source,
            })?;
        if conn.last_ok_packet().is_none() {
            // No reply has told the session's status yet (the options named every
            // setting mysql_async would otherwise read): one round trip does, so the
            // first return is not taken for dirty.
            conn.ping().await.map_err(|source| Error::Connect {
                target: self.target.clone(),
                failure: ConnectFailure::of(&source),
                source,
            })?;
        }
        tracing::debug!(target = %self.target, id = conn.id(), "mysql connection opened");
        Ok(MysqlConnection::new(conn))
    }

    async fn recycle(
        &self,
        conn: &mut MysqlConnection,
        info: &ConnectionInfo,
    ) -> Result<(), Error> {
        if conn.is_closed() {
            return Err(Error::Closed);
        }
        if info.needs_reset() || conn.is_dirty() || self.recycle_mode == RecycleMode::Clean {
            return self.reset(conn).await;
        }
        match self.recycle_mode {
            RecycleMode::Fast => Ok(()),
            _ => conn.ping().await.map_err(|source| Error::Recycle {
                step: "health check",
                source,
            }),
        }
    }

    fn has_broken(&self, conn: &mut MysqlConnection) -> bool {
        conn.is_closed()
    }

    fn target(&self) -> Option<String> {
        Some(self.target.clone())
    }

    fn return_state(&self, conn: &mut MysqlConnection) -> ReturnState {
        if self.recycle_mode == RecycleMode::Clean || conn.is_dirty() {
            ReturnState::Dirty
        } else {
            ReturnState::Clean
        }
    }
}

#[cfg(test)]
mod tests {
    use mysql_async::prelude::Queryable;
    use mysql_async::Conn;

    /// The fallback for servers without `COM_RESET_CONNECTION`, run on a server that has
    /// it (it cannot be told to lack it).
    #[tokio::test]
    async fn the_fallback_reset_clears_the_session_too() {
        let server = pool_testkit::servers::mysql().expect("a MySQL/MariaDB server");
        let mut conn = Conn::from_url(server.url()).await.unwrap();
        let id = conn.id();
        conn.query_drop("SET @pool_mysql_fallback = 1")
            .await
            .unwrap();
        conn.query_drop("CREATE TEMPORARY TABLE pool_mysql_fallback (x INT)")
            .await
            .unwrap();
        conn.query_drop("BEGIN").await.unwrap();
        super::reset_without_com_reset(&mut conn).await.unwrap();
        let state: Option<(i64, Option<i64>)> = conn
            .query_first("SELECT @@in_transaction, @pool_mysql_fallback")
            .await
            .unwrap();
        assert_eq!(state, Some((0, None)));
        assert!(conn
            .query_drop("SELECT x FROM pool_mysql_fallback")
            .await
            .is_err());
        assert_eq!(conn.id(), id, "the fallback opened a new connection");
        let _ = conn.disconnect().await;
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn text_that_is_no_url_says_what_is_expected_without_the_password() {
        for text in ["not a url", "app:s3cret@db/x", ""] {
            let message = Manager::from_url(text).unwrap_err().to_string();
            assert!(message.contains("expected `mysql://"), "{text}: {message}");
            assert!(!message.contains("s3cret"), "{text}: {message}");
        }
        let message = Manager::from_url("app:s3cret@db/x")
            .unwrap_err()
            .to_string();
        assert!(message.contains("***@db/x"), "{message}");
    }

    #[test]
    fn a_url_names_one_database() {
        let err = Manager::from_url("mysql://root:s3cret@db:3306/te/st").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`te/st` holds a `/`"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        for url in [
            "mysql://root@db:3306/test",
            "mysql://root@db/test/",
            "mysql://root:p%2Fw@db/test?prefer_socket=false",
            "mysql://root@db",
        ] {
            assert!(Manager::from_url(url).is_ok(), "{url}");
        }
    }
}

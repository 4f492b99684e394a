//! The pooled connection: a `mysql_async::Conn` and what the pool needs to know about
//! its session.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::{AsQuery, FromRow, Queryable, StatementLike};
use mysql_async::{Conn, Params};

use crate::error::is_fatal;

/// How long a dropped connection may take to say goodbye (`COM_QUIT`) before its socket
/// is simply closed.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A MySQL or MariaDB connection held by the pool: dereferences to
/// [`mysql_async::Conn`], so every method of `Conn` and of its `Queryable` trait is
/// there.
///
/// # What the pool learns on return
/// The pool resets a connection's session (`COM_RESET_CONNECTION`: roll back, reset
/// session and user variables, drop temporary tables, release `GET_LOCK` and
/// `LOCK TABLES` locks, close prepared statements) before handing it out again when it
/// comes back *dirty*. What makes it dirty:
///
/// - an open transaction, however it was opened: the server reports one in the status
///   flags of its last reply, which the connection keeps (this covers a
///   `mysql_async::Transaction` dropped without commit, and a `BEGIN` run through the
///   `Conn` directly);
/// - a last command that failed (the server's status is then unknown), or a reply with
///   more results still to read;
/// - [`mark_dirty`](Self::mark_dirty), for anything else the pool cannot see;
/// - a statement run through this type's own [`query_drop`](Self::query_drop),
///   [`query`](Self::query) or [`query_first`](Self::query_first) that changes session
///   state: one starting with `BEGIN`, `START`, `SET`, `USE`, `LOCK`, `PREPARE`,
///   `SAVEPOINT`, `XA`, `HANDLER` or `CALL`, a `CREATE TEMPORARY TABLE`, a call of
///   `GET_LOCK`, or a user variable assignment (`:=`, `INTO @v`). These methods shadow
///   `Queryable`'s, so `conn.query_drop("SET @x = 1")` on a pooled connection is seen.
///
/// Not seen: statements run through the `Conn` directly (`conn.conn_mut().query_drop`,
/// `query_iter`, `exec_*` with such SQL). For sessions the pool cannot follow, use
/// [`RecycleMode::Clean`](crate::RecycleMode::Clean), which resets before every reuse.
///
/// # Broken connections
/// A connection is discarded on return, never reset, when mysql_async has closed it
/// (a failed read or write), when a query of this type failed because the connection
/// or the server is gone (an I/O error, `Connection was killed`, the server shutting
/// down), or when a call (this type's own or `Queryable`'s) was cancelled before it
/// finished: the server may still be sending its reply, and the protocol cannot be
/// picked up mid-reply.
///
/// Dropping the connection sends `COM_QUIT` from a task on the current tokio runtime
/// (within a few seconds, else the socket is just closed); outside a runtime the socket
/// is closed at once.
pub struct MysqlConnection {
    /// `None` only while being dropped.
    conn: Option<Conn>,
    dirty: AtomicBool,
    db_changed: bool,
    broken: bool,
    in_flight: usize,
}

impl MysqlConnection {
    pub(crate) fn new(conn: Conn) -> Self {
        MysqlConnection {
            conn: Some(conn),
            dirty: AtomicBool::new(false),
            db_changed: false,
            broken: false,
            in_flight: 0,
        }
    }

    /// The connection.
    pub fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a MysqlConnection holds its Conn until dropped")
    }

    /// The connection, mutably (to run anything `Queryable` offers without this type's
    /// tracking).
    pub fn conn_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a MysqlConnection holds its Conn until dropped")
    }

    /// Tells the pool the session may hold state (a transaction, a variable, a
    /// temporary table, a lock...): it is reset before it is handed out again.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Whether the connection will be reset before it is handed out again (see the
    /// type's docs for what makes it so).
    pub fn is_dirty(&self) -> bool {
        if self.dirty.load(Ordering::Acquire) {
            return true;
        }
        match self.conn().last_ok_packet() {
            Some(ok) => ok.status_flags().intersects(
                StatusFlags::SERVER_STATUS_IN_TRANS | StatusFlags::SERVER_MORE_RESULTS_EXISTS,
            ),
            // The last command failed: the session's state is not known.
            None => true,
        }
    }

    /// Whether the connection is closed or cannot be used any more: mysql_async closed
    /// it, a query failed because the connection or the server is gone, or a call was
    /// cancelled mid-reply.
    pub fn is_closed(&self) -> bool {
        self.broken || self.in_flight > 0 || self.conn().is_disconnected()
    }

    /// The session was reset: nothing left behind.
    pub(crate) fn mark_clean(&mut self) {
        self.dirty.store(false, Ordering::Release);
        self.db_changed = false;
    }

    /// Whether a statement seen by this type changed the default database.
    pub(crate) fn db_changed(&self) -> bool {
        self.db_changed
    }

    /// Runs `call` on the connection, counting it in flight until it finishes (a drop
    /// before then leaves the count up, so the connection is discarded) and noting
    /// errors that mean the connection is gone.
    async fn tracked<'a, T, F, Fut>(&'a mut self, call: F) -> mysql_async::Result<T>
    where
        F: FnOnce(&'a mut Conn) -> Fut,
        Fut: std::future::Future<Output = mysql_async::Result<T>> + 'a,
    {
        self.in_flight += 1;
        let conn = self
            .conn
            .as_mut()
            .expect("a MysqlConnection holds its Conn until dropped");
        let result = call(conn).await;
        self.in_flight -= 1;
        if let Err(e) = &result {
            if is_fatal(e) {
                self.broken = true;
            }
        }
        result
    }

    fn note_sql(&mut self, sql: &[u8]) {
        let text = String::from_utf8_lossy(sql);
        let seen = session_changes(&text);
        if seen.dirty {
            self.mark_dirty();
        }
        if seen.changes_db {
            self.db_changed = true;
        }
    }

    /// `Queryable::query_drop`, noting a statement that changes session state (see the
    /// type's docs), a cancelled call and a lost connection.
    pub async fn query_drop<Q: AsQuery>(&mut self, query: Q) -> mysql_async::Result<()> {
        self.note_sql(&query.as_query());
        self.tracked(move |conn| conn.query_drop(query)).await
    }

    /// `Queryable::query`, noting a statement that changes session state (see the
    /// type's docs), a cancelled call and a lost connection.
    pub async fn query<T, Q>(&mut self, query: Q) -> mysql_async::Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
        Q: AsQuery,
    {
        self.note_sql(&query.as_query());
        self.tracked(move |conn| conn.query(query)).await
    }

    /// `Queryable::query_first`, noting a statement that changes session state (see the
    /// type's docs), a cancelled call and a lost connection.
    pub async fn query_first<T, Q>(&mut self, query: Q) -> mysql_async::Result<Option<T>>
    where
        T: FromRow + Send + 'static,
        Q: AsQuery,
    {
        self.note_sql(&query.as_query());
        self.tracked(move |conn| conn.query_first(query)).await
    }

    /// `Queryable::exec_drop`, noting a cancelled call and a lost connection.
    pub async fn exec_drop<S, P>(&mut self, stmt: S, params: P) -> mysql_async::Result<()>
    where
        S: StatementLike,
        P: Into<Params> + Send,
    {
        self.tracked(move |conn| conn.exec_drop(stmt, params)).await
    }

    /// `Queryable::exec`, noting a cancelled call and a lost connection.
    pub async fn exec<T, S, P>(&mut self, stmt: S, params: P) -> mysql_async::Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
        S: StatementLike,
        P: Into<Params> + Send,
    {
        self.tracked(move |conn| conn.exec(stmt, params)).await
    }

    /// `Queryable::exec_first`, noting a cancelled call and a lost connection.
    pub async fn exec_first<T, S, P>(
        &mut self,
        stmt: S,
        params: P,
    ) -> mysql_async::Result<Option<T>>
    where
        T: FromRow + Send + 'static,
        S: StatementLike,
        P: Into<Params> + Send,
    {
        self.tracked(move |conn| conn.exec_first(stmt, params))
            .await
    }

    /// `Queryable::ping` (`COM_PING`), noting a cancelled call and a lost connection.
    pub async fn ping(&mut self) -> mysql_async::Result<()> {
        self.tracked(|conn| conn.ping()).await
    }
}

impl Deref for MysqlConnection {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn()
    }
}

impl DerefMut for MysqlConnection {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn_mut()
    }
}

impl Drop for MysqlConnection {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if conn.is_disconnected() || self.broken || self.in_flight > 0 {
            // Nothing to say goodbye on: dropping `conn` closes its socket (or lets
            // mysql_async try its own goodbye, which fails fast).
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // `disconnect` marks the `Conn` disconnected first, so a timeout
                // dropping it here just closes the socket.
                let _ = tokio::time::timeout(CLOSE_GRACE, conn.disconnect()).await;
            });
        }
        // Outside a runtime `conn` is dropped here, which closes its socket.
    }
}

impl std::fmt::Debug for MysqlConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("MysqlConnection");
        if let Some(conn) = &self.conn {
            s.field("id", &conn.id())
                .field("closed", &self.is_closed())
                .field("dirty", &self.is_dirty());
        }
        s.finish_non_exhaustive()
    }
}

/// What a batch of SQL may leave behind in the session.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionChanges {
    /// A transaction, a variable, a temporary table, a lock, a prepared statement...
    pub(crate) dirty: bool,
    /// A `USE`: the default database changed.
    pub(crate) changes_db: bool,
}

/// Reads `sql` (one or more statements) for what it may leave in the session. Errs
/// towards yes: a needless reset costs a round trip, a missed one hands the next user
/// a dirty session.
pub(crate) fn session_changes(sql: &str) -> SessionChanges {
    const STARTS: &[&str] = &[
        "begin",
        "start",
        "set",
        "lock",
        "prepare",
        "savepoint",
        "xa",
        "handler",
        "call",
        "use",
    ];
    let lower = sql.to_ascii_lowercase();
    let mut changes = SessionChanges {
        dirty: lower.contains("get_lock")
            || lower.contains(":=")
            || lower.contains("into @")
            || lower.contains("into\n@"),
        changes_db: false,
    };
    for statement in lower.split(';') {
        let mut words = statement
            .split(|c: char| c.is_whitespace() || c == '(' || c == '`')
            .filter(|w| !w.is_empty());
        match words.next() {
            Some("use") => {
                changes.dirty = true;
                changes.changes_db = true;
            }
            Some(first) if STARTS.contains(&first) => changes.dirty = true,
            Some("create") if words.any(|w| w == "temporary") => changes.dirty = true,
            _ => {}
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::session_changes;

    #[test]
    fn session_changing_sql_is_recognised() {
        for sql in [
            "BEGIN",
            "begin; insert into t values (1)",
            "START TRANSACTION READ ONLY",
            "  SET @x = 1",
            "select 1; SET SESSION sql_mode = ''",
            "set names utf8mb4",
            "LOCK TABLES t WRITE",
            "PREPARE p FROM 'SELECT 1'",
            "CREATE TEMPORARY TABLE t (x int)",
            "create or replace temporary table t (x int)",
            "SELECT GET_LOCK('a', 1)",
            "DO get_lock('a', 0)",
            "SELECT @n := 1",
            "SELECT 1 INTO @n",
            "CALL p()",
            "XA START 'x'",
            "SAVEPOINT a",
        ] {
            assert!(session_changes(sql).dirty, "{sql}");
        }
        let using = session_changes("USE other");
        assert!(using.dirty && using.changes_db);
        for sql in [
            "SELECT 1",
            "",
            "UPDATE t SET x = 1",
            "INSERT INTO settings VALUES (1)",
            "CREATE TABLE t (x int)",
            "select 'begin'",
            "SELECT @@in_transaction",
        ] {
            assert_eq!(session_changes(sql), Default::default(), "{sql}");
        }
    }
}

//! The pooled connection: a `tokio_postgres::Client`, the task that drives its socket,
//! and what the pool needs to know about its session.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

use crate::error::is_fatal;
use crate::param_types::declared;
use crate::{SqlOrStatement, StatementMode};

/// How long the connection task may take to say goodbye to the server (send
/// `Terminate` and flush) after the connection is dropped, before it is cut off.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A PostgreSQL connection held by the pool: dereferences to
/// [`tokio_postgres::Client`], so every client method is there.
///
/// # The connection task
/// tokio-postgres drives the socket from a separate future; the manager spawns it with
/// `tokio::spawn` and this value owns it. Dropping the connection ends the task: the
/// client's drop makes it send `Terminate` and finish, and if that has not happened
/// within a few seconds (a server that stopped reading) the task drops the socket
/// itself. A task that ended on its own (the server closed the connection, the
/// network failed) makes the connection [`is_closed`](Self::is_closed), and the pool
/// discards it on return.
///
/// # What the pool learns on return
/// The pool resets a connection's session (roll back, reset settings, drop temp
/// tables, unlisten, release advisory locks; behind a transaction pooler, in
/// [`StatementMode::Unnamed`], only roll back) before handing it out again when it
/// comes back *dirty*. What makes it dirty:
///
/// - [`mark_dirty`](Self::mark_dirty), for anything the pool cannot see;
/// - a statement run through this type's own [`batch_execute`](Self::batch_execute) or
///   [`simple_query`](Self::simple_query) that opens a transaction or changes session
///   state (a statement starting with `BEGIN`, `START`, `SET`, `RESET`, `PREPARE`,
///   `DEALLOCATE`, `DISCARD`, `DECLARE`, `LISTEN`, `LOCK`, `SAVEPOINT`, `DO`,
///   `CREATE TEMP...`, or a call of `set_config` or an advisory lock function): these
///   methods shadow the client's, so `conn.batch_execute("BEGIN")` is seen;
/// - a call of this type's own `query`, `query_one`, `query_opt`, `execute`,
///   `batch_execute`, `simple_query` or `prepare_cached` that was dropped before it
///   finished (a cancelled future): the server may still be running it.
///
/// Not seen: statements run through the client directly (`conn.client().execute(..)`,
/// a `Transaction`'s methods, `query_raw`, `copy_in`...) or through a prepared
/// `Statement`. A `tokio_postgres::Transaction` that is dropped without commit rolls
/// itself back, so that path needs nothing. For sessions the pool cannot follow, use
/// [`RecycleMode::Clean`](crate::RecycleMode::Clean), which resets before every reuse.
///
/// A query that fails because the connection or the server is gone (the client is
/// closed, the socket failed, SQLSTATE class `08` or `57P01`–`57P03`) marks the
/// connection broken: the pool closes it on return and checks the other idle ones
/// before their next checkout.
///
/// # Unnamed statements
/// In [`StatementMode::Unnamed`] (for transaction poolers such as PgBouncer in
/// `pool_mode = transaction`), this type's `query`, `query_one`, `query_opt` and
/// `execute` send SQL text as one unnamed statement: parse, bind, execute and sync in
/// a single request (tokio-postgres's `query_typed`), so a pooler that hands each
/// request to another server connection never sees a statement outlive its request.
/// Without a prepare the server does not say which parameter types it expects, so each
/// parameter is declared as the first built-in type its Rust type accepts: `bool`,
/// `int2`, `int4`, `int8`, `float4`, `float8`, `numeric`, `text`, `bytea`,
/// `timestamptz`, `timestamp`, `date`, `time`, ..., `uuid`, `jsonb`, `json`, `inet`,
/// ..., then the arrays of those. The server converts from there where a column or a
/// function wants another type (`text` into a `varchar` column, an `int8` compared
/// with an `int4` column). A value that needs a type defined in the database (an
/// enum, a composite, an extension's type) cannot be declared this way: the query
/// fails before anything is sent, with tokio-postgres's `error serializing parameter
/// N`, whose source names the Rust type and `unknown`; pass its
/// type with the client's `query_typed` instead. Result columns of such types cannot
/// be read behind a transaction pooler either: tokio-postgres looks them up with a
/// named statement of its own.
///
/// What stays named in unnamed mode: a prepared [`Statement`] passed to these methods
/// (`prepare` makes named statements: behind a transaction pooler use one only inside
/// a transaction, which keeps one server connection), [`prepare_cached`](Self::prepare_cached)
/// (which then caches nothing), and the client's own methods reached through
/// `Deref` (`conn.client().query(..)`, a `Transaction`'s methods, `query_raw`).
/// `batch_execute` and `simple_query` use the simple query protocol, which has no
/// statements to lose, in either mode.
pub struct PgConnection {
    client: Client,
    /// Dropping it tells the connection task the client is gone (see `CLOSE_GRACE`).
    _closed: tokio::sync::oneshot::Sender<()>,
    task: AbortHandle,
    dirty: AtomicBool,
    broken: AtomicBool,
    in_flight: AtomicUsize,
    statements: Mutex<HashMap<String, Statement>>,
    statement_mode: StatementMode,
}

impl PgConnection {
    pub(crate) fn new(
        client: Client,
        closed: tokio::sync::oneshot::Sender<()>,
        task: AbortHandle,
        statement_mode: StatementMode,
    ) -> Self {
        PgConnection {
            client,
            _closed: closed,
            task,
            dirty: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            statements: Mutex::new(HashMap::new()),
            statement_mode,
        }
    }

    /// How this connection sends SQL text: the manager's
    /// [`statement_mode`](crate::Manager::statement_mode).
    pub fn statement_mode(&self) -> StatementMode {
        self.statement_mode
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably (for `transaction`).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Tells the pool the session may hold state (an open transaction, a setting, a
    /// temp table...): it is reset before it is handed out again.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Whether the connection will be reset before it is handed out again: marked
    /// dirty, or a query of this type was dropped before it finished.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire) || self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Whether the connection is closed: its task has ended, or a query failed in a
    /// way that means the connection or the server is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.task.is_finished() || self.broken.load(Ordering::Acquire)
    }

    /// The session was reset: nothing left behind any more. The statement cache is
    /// emptied too, in case what dirtied the session dropped prepared statements.
    pub(crate) fn mark_clean(&self) {
        self.dirty.store(false, Ordering::Release);
        self.in_flight.store(0, Ordering::Release);
        self.clear_statement_cache();
    }

    /// Prepares `query` once for this connection and returns the same statement on
    /// later calls: an opt-in cache of prepared statements, kept with the connection
    /// across checkouts and emptied when its session is reset.
    ///
    /// In [`StatementMode::Unnamed`] the cache is off: each call prepares the
    /// statement anew and keeps nothing, for behind a transaction pooler a statement
    /// lives on one server connection and the next request may go to another.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, tokio_postgres::Error> {
        if self.statement_mode == StatementMode::Unnamed {
            return self.tracked(self.client.prepare(query)).await;
        }
        if let Some(statement) = self.cache().get(query) {
            return Ok(statement.clone());
        }
        let statement = self.tracked(self.client.prepare(query)).await?;
        self.cache().insert(query.to_owned(), statement.clone());
        Ok(statement)
    }

    /// How many statements [`prepare_cached`](Self::prepare_cached) holds.
    pub fn statement_cache_len(&self) -> usize {
        self.cache().len()
    }

    /// Empties the [`prepare_cached`](Self::prepare_cached) cache (the server closes
    /// the statements once nothing else holds them).
    pub fn clear_statement_cache(&self) {
        self.cache().clear();
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        // The map is consistent after any panic: a panic cannot interrupt an insert
        // half-way in a way that matters here.
        self.statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `fut`, counting it in flight until it finishes (a drop before then leaves
    /// the count up, so the connection comes back dirty) and noting fatal errors.
    async fn tracked<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let result = fut.await;
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Err(e) = &result {
            if is_fatal(e) {
                self.broken.store(true, Ordering::Release);
            }
        }
        result
    }

    /// [`Client::batch_execute`], noting a statement that changes session state (see
    /// the type's docs) so the session is reset before reuse.
    pub async fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
        self.note_sql(query);
        self.tracked(self.client.batch_execute(query)).await
    }

    /// [`Client::simple_query`], noting a statement that changes session state (see
    /// the type's docs) so the session is reset before reuse.
    pub async fn simple_query(
        &self,
        query: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        self.note_sql(query);
        self.tracked(self.client.simple_query(query)).await
    }

    /// SQL text to send as an unnamed statement: in unnamed mode, when `statement` is
    /// text rather than a prepared statement.
    fn unnamed_sql<'s, T: ?Sized + SqlOrStatement>(&self, statement: &'s T) -> Option<&'s str> {
        match self.statement_mode {
            StatementMode::Named => None,
            StatementMode::Unnamed => statement.sql(),
        }
    }

    /// [`Client::query`] (or [`Client::query_typed`] in unnamed mode, see
    /// [above](Self#unnamed-statements)), noting a cancelled call and a lost
    /// connection.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>
    where
        T: ?Sized + SqlOrStatement,
    {
        match self.unnamed_sql(statement) {
            Some(sql) => {
                self.tracked(self.client.query_typed(sql, &declared(params)))
                    .await
            }
            None => self.tracked(self.client.query(statement, params)).await,
        }
    }

    /// [`Client::query_one`] (or [`Client::query_typed_one`] in unnamed mode), noting
    /// a cancelled call and a lost connection.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>
    where
        T: ?Sized + SqlOrStatement,
    {
        match self.unnamed_sql(statement) {
            Some(sql) => {
                self.tracked(self.client.query_typed_one(sql, &declared(params)))
                    .await
            }
            None => self.tracked(self.client.query_one(statement, params)).await,
        }
    }

    /// [`Client::query_opt`] (or [`Client::query_typed_opt`] in unnamed mode), noting
    /// a cancelled call and a lost connection.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>
    where
        T: ?Sized + SqlOrStatement,
    {
        match self.unnamed_sql(statement) {
            Some(sql) => {
                self.tracked(self.client.query_typed_opt(sql, &declared(params)))
                    .await
            }
            None => self.tracked(self.client.query_opt(statement, params)).await,
        }
    }

    /// [`Client::execute`] (or [`Client::execute_typed`] in unnamed mode), noting a
    /// cancelled call and a lost connection.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + SqlOrStatement,
    {
        match self.unnamed_sql(statement) {
            Some(sql) => {
                self.tracked(self.client.execute_typed(sql, &declared(params)))
                    .await
            }
            None => self.tracked(self.client.execute(statement, params)).await,
        }
    }

    fn note_sql(&self, sql: &str) {
        if changes_session(sql) {
            self.mark_dirty();
        }
    }
}

impl Deref for PgConnection {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConnection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("closed", &self.is_closed())
            .field("dirty", &self.is_dirty())
            .finish_non_exhaustive()
    }
}

/// Whether `sql` (one or more statements) may leave state in the session: a
/// transaction, a setting, a prepared statement, a cursor, a listen, a lock, a temp
/// table. Errs towards yes: a needless reset costs a round trip, a missed one hands
/// the next user a dirty session.
pub(crate) fn changes_session(sql: &str) -> bool {
    const STARTS: &[&str] = &[
        "begin",
        "start",
        "set",
        "prepare",
        "declare",
        "listen",
        "lock",
        "savepoint",
        "deallocate",
        "discard",
        "reset",
    ];
    let lower = sql.to_ascii_lowercase();
    if lower.contains("pg_advisory_lock")
        || lower.contains("pg_try_advisory_lock")
        || lower.contains("set_config")
    {
        return true;
    }
    lower.split(';').any(|statement| {
        let mut words = statement
            .split(|c: char| c.is_whitespace() || c == '(')
            .filter(|w| !w.is_empty());
        match words.next() {
            Some(first) if STARTS.contains(&first) => true,
            Some("create") => matches!(
                words.next(),
                Some("temp" | "temporary" | "local" | "global")
            ),
            // `DO` blocks and function calls may do anything: `SELECT set_config(..)`
            // is caught above; a `DO` block is assumed to.
            Some("do") => true,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::changes_session;

    #[test]
    fn session_changing_sql_is_recognised() {
        for sql in [
            "BEGIN",
            "begin; insert into t values (1)",
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "  SET search_path = x",
            "select 1; SET application_name = 'x'",
            "PREPARE p AS SELECT 1",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "LISTEN ch",
            "CREATE TEMP TABLE t (x int)",
            "create temporary table t (x int)",
            "SELECT pg_advisory_lock(1)",
            "select set_config('a.b', 'c', false)",
            "DO $$ BEGIN PERFORM 1; END $$",
            "DEALLOCATE ALL",
            "discard all",
            "RESET search_path",
        ] {
            assert!(changes_session(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "",
            "UPDATE t SET x = 1",
            "INSERT INTO settings VALUES (1)",
            "CREATE TABLE t (x int)",
            "select 'begin'",
        ] {
            assert!(!changes_session(sql), "{sql}");
        }
    }
}

//! The pooled connection: one `redis::aio::MultiplexedConnection` on a socket of its
//! own, the task that drives it, and what the pool needs to know about its session.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, RedisError, RedisResult, ToRedisArgs, Value};
use tokio::task::AbortHandle;

use crate::session::Session;
use crate::usage::Usage;

/// A Redis connection held by the pool: one server connection (one `CLIENT ID`) of its
/// own, never shared with another checkout.
///
/// It implements [`redis::aio::ConnectionLike`], so every [`redis::AsyncCommands`]
/// method works on it (`conn.get("k")`, `conn.set("k", 1)`) and `cmd.query_async(&mut
/// *conn)` and `pipe.query_async(&mut *conn)` take it; and it dereferences to the
/// [`MultiplexedConnection`] it wraps.
///
/// # What the pool learns on return
/// Commands sent through this type (not through the inner connection) are watched for
/// session state they leave behind, and a connection that comes back with any is
/// reset before the next checkout (see [`Manager`](crate::Manager)):
///
/// - an open `MULTI`, or `WATCH`ed keys;
/// - a `SELECT`ed database other than the configured one;
/// - `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` or `MONITOR` (on RESP3; on RESP2 the
///   connection is discarded instead, as its messages would be read as replies);
/// - `CLIENT TRACKING` on, `CLIENT SETNAME`, `CLIENT NO-EVICT`/`NO-TOUCH`, `AUTH`,
///   `HELLO`, `READONLY`, `SWAPDB`, a `RESET` of the user's own;
/// - a command whose future was dropped before its reply came (a cancelled call, a
///   `tokio::time::timeout` around it): the server may still run it. A cancelled
///   blocking command (`BLPOP`, `XREAD BLOCK`, `WAIT`...) makes the connection
///   discarded instead, as it stays blocked on the server;
/// - [`mark_dirty`](Self::mark_dirty), for anything else.
///
/// `CLIENT REPLY OFF`/`SKIP`, `QUIT` and a `HELLO` switching the protocol make it
/// discarded. A command that fails with an I/O error (the socket failed, the server
/// closed the connection) marks it broken, and so does the socket closing while it sits
/// idle: the pool closes it on return and checks its idle peers.
///
/// Not seen: commands sent through the inner [`MultiplexedConnection`] (`&mut **conn`,
/// a clone of it). A clone of the inner connection does not keep the socket open: it
/// closes when the pooled connection is closed (over TLS, when the last clone is
/// dropped).
pub struct RedisConnection {
    inner: MultiplexedConnection,
    /// The task driving the socket, when this crate spawned it (plain TCP and Unix
    /// sockets); over TLS the redis crate drives it.
    task: Option<AbortHandle>,
    client_id: u64,
    usage: Usage,
}

impl RedisConnection {
    pub(crate) fn new(
        inner: MultiplexedConnection,
        task: Option<AbortHandle>,
        client_id: u64,
        db: i64,
        resp3: bool,
    ) -> Self {
        RedisConnection {
            inner,
            task,
            client_id,
            usage: Usage::new(db, resp3),
        }
    }

    /// The connection's `CLIENT ID` on the server, read when it was opened.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The inner connection (commands sent through it are not watched).
    pub fn inner(&mut self) -> &mut MultiplexedConnection {
        &mut self.inner
    }

    /// Tells the pool the session may hold state: it is reset before it is handed out
    /// again.
    pub fn mark_dirty(&mut self) {
        self.usage.mark_dirty();
    }

    /// Whether the connection will be reset before it is handed out again.
    pub fn is_dirty(&self) -> bool {
        self.usage.is_dirty()
    }

    /// Whether the connection is closed or cannot be reused: its socket closed, a
    /// command failed with an I/O error, or it was left in a state no reset undoes
    /// (see the type's docs).
    pub fn is_closed(&self) -> bool {
        self.closed_reason().is_some()
    }

    /// Why the connection cannot be reused, if it cannot (for messages).
    pub(crate) fn closed_reason(&self) -> Option<&'static str> {
        if self.task.as_ref().is_some_and(AbortHandle::is_finished) {
            Some("its socket closed")
        } else {
            self.usage.unusable_reason()
        }
    }

    /// The session was reset: nothing left behind any more.
    pub(crate) fn mark_clean(&mut self) {
        self.usage.mark_clean();
    }

    /// Notes a failed call: an I/O error means the connection is gone.
    pub(crate) fn note_error(&mut self, err: &RedisError) {
        self.usage.note_error(err);
    }

    /// The session as far as it is known (for tests and messages).
    pub(crate) fn session(&self) -> &Session {
        self.usage.session()
    }

    /// Subscribes to channels (RESP3 only; see [`MultiplexedConnection::subscribe`]),
    /// noting the subscription so the session is reset before reuse.
    pub async fn subscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        self.usage.note_subscribed();
        let result = self.inner.subscribe(channels).await;
        self.usage.checked(result)
    }

    /// Subscribes to patterns (RESP3 only), noting it as [`subscribe`](Self::subscribe)
    /// does.
    pub async fn psubscribe(&mut self, patterns: impl ToRedisArgs) -> RedisResult<()> {
        self.usage.note_subscribed();
        let result = self.inner.psubscribe(patterns).await;
        self.usage.checked(result)
    }

    /// Unsubscribes from channels (RESP3 only). The connection is still reset before
    /// reuse: what else it is subscribed to is not followed.
    pub async fn unsubscribe(&mut self, channels: impl ToRedisArgs) -> RedisResult<()> {
        let result = self.inner.unsubscribe(channels).await;
        self.usage.checked(result)
    }

    /// Unsubscribes from patterns (RESP3 only), as [`unsubscribe`](Self::unsubscribe).
    pub async fn punsubscribe(&mut self, patterns: impl ToRedisArgs) -> RedisResult<()> {
        let result = self.inner.punsubscribe(patterns).await;
        self.usage.checked(result)
    }

    /// [`MultiplexedConnection::send_packed_command`], watched as every command sent
    /// through this type is.
    pub async fn send_packed_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.req_packed_command(cmd).await
    }
}

crate::usage::tracked_connection!(RedisConnection, MultiplexedConnection);

impl Drop for RedisConnection {
    /// Closes the socket now, whatever clones of the inner connection remain.
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("client_id", &self.client_id)
            .field("closed", &self.is_closed())
            .field("dirty", &self.is_dirty())
            .finish_non_exhaustive()
    }
}

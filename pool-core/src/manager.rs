//! The contract between the pool and a database driver.

use crate::ConnectionInfo;

/// What a driver tells the pool about a connection it gets back.
///
/// [`Manager::return_state`] answers with one of these on every return; the pool
/// acts on it before the connection can be handed out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnState {
    /// Usable as it is: no check before the next checkout unless one is due anyway.
    Clean,
    /// Usable, but its session may hold state a user left behind (an open
    /// transaction, a session variable, a cancelled query): it is reset through
    /// [`Manager::recycle`] with [`ConnectionInfo::needs_reset`] set before it is
    /// handed out again.
    Dirty,
    /// Unusable: closed instead of being kept.
    Broken,
}

/// Creates, checks and resets connections for a [`Pool`](crate::Pool).
///
/// The pool calls these methods; a driver implements them. None of them is called
/// while the pool holds a lock, so a slow or panicking implementation slows or fails
/// only the call that ran it: a panic is caught where the pool can catch it, and the
/// connection's slot is always released.
///
/// When each method runs:
/// - [`connect`](Manager::connect): when a `get` finds no idle connection and the pool
///   has room, and when upkeep tops the pool up to `min_idle`. Bounded by
///   `connect_timeout`.
/// - [`recycle`](Manager::recycle): at checkout, only when a check is due (idle longer
///   than `check_interval`, returned dirty, or made before a broken connection was
///   found). Bounded by `recycle_timeout`. An error discards the connection.
/// - [`has_broken`](Manager::has_broken): on every return, and before an idle
///   connection is handed out; synchronously, so keep it cheap (a flag or a closed
///   socket the driver already knows about, no I/O).
/// - [`return_state`](Manager::return_state): on every return, synchronously.
#[async_trait::async_trait]
pub trait Manager: Send + Sync + 'static {
    /// The connection type the pool holds.
    type Connection: Send + 'static;
    /// The driver's error; the pool hands it to the caller unchanged as
    /// [`PoolError::Backend`](crate::PoolError::Backend).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    async fn connect(&self) -> Result<Self::Connection, Self::Error>;

    /// Checks that `conn` is usable and, when [`ConnectionInfo::needs_reset`] says so,
    /// resets its session (roll back, clear session state). An error means the
    /// connection is discarded.
    async fn recycle(
        &self,
        conn: &mut Self::Connection,
        info: &ConnectionInfo,
    ) -> Result<(), Self::Error>;

    /// A cheap, synchronous test run on every return and before an idle connection is
    /// handed out: `true` discards the connection (and makes its idle peers due for a
    /// check, as whatever broke it may have broken them too).
    fn has_broken(&self, _conn: &mut Self::Connection) -> bool {
        false
    }

    /// Where this manager connects, for messages: a URL or `host:port`, with any
    /// password masked. A connect timeout names it, since the driver's own error
    /// cannot say where it was going. The default says nothing.
    fn target(&self) -> Option<String> {
        None
    }

    /// What state `conn` comes back in, run on every return after
    /// [`has_broken`](Manager::has_broken) said it is not broken. The default says
    /// [`ReturnState::Clean`]; a driver that can see an open transaction or a query
    /// abandoned mid-flight answers [`ReturnState::Dirty`] so the pool resets it
    /// before its next checkout.
    fn return_state(&self, _conn: &mut Self::Connection) -> ReturnState {
        ReturnState::Clean
    }
}

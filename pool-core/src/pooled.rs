//! A checked-out connection.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::CloseReason;
use crate::pool::Shared;
use crate::state::Conn;
use crate::{hooks, ConnectionInfo, Manager, PoolError};

/// A connection checked out of a [`Pool`](crate::Pool). Dereferences to the
/// connection; goes back to the pool when dropped.
///
/// On return the pool asks the manager whether the connection is broken or dirty, and
/// closes or resets it accordingly. A connection dropped while its holder panics is
/// treated as dirty: its session is reset before anyone else gets it.
pub struct Pooled<M: Manager> {
    pub(crate) conn: Option<Conn<M::Connection>>,
    shared: Arc<Shared<M>>,
    /// When a user took it; `None` while the pool itself holds it (upkeep opening or
    /// resetting one), so its use time is not recorded.
    taken_at: Option<Instant>,
    leak_key: Option<usize>,
    /// Being checked before checkout: if dropped now (cancelled mid-check), its session
    /// state is unknown, so it is closed rather than returned.
    pub(crate) checking: bool,
    broken: bool,
}

impl<M: Manager> Pooled<M> {
    /// A connection checked out by a user at `taken_at`.
    pub(crate) fn checked_out(
        shared: Arc<Shared<M>>,
        conn: Conn<M::Connection>,
        taken_at: Instant,
        leak_key: Option<usize>,
    ) -> Self {
        Pooled {
            conn: Some(conn),
            shared,
            taken_at: Some(taken_at),
            leak_key,
            checking: false,
            broken: false,
        }
    }

    /// A connection held by the pool itself (upkeep), returned like any other.
    pub(crate) fn held_by_pool(shared: Arc<Shared<M>>, conn: Conn<M::Connection>) -> Self {
        Pooled {
            conn: Some(conn),
            shared,
            taken_at: None,
            leak_key: None,
            checking: false,
            broken: false,
        }
    }

    /// Takes the connection out of the pool for good. Its room in the pool is freed at
    /// once, so the pool may open another in its place.
    pub fn detach(mut self) -> M::Connection {
        let conn = self.leave();
        self.shared.forget_conn();
        conn.into_raw()
    }

    /// Marks the connection broken: the pool closes it when it is returned, and
    /// checks the idle connections made before now before handing them out.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// What the pool knows about this connection.
    pub fn info(&self) -> &ConnectionInfo {
        &self.live().info
    }

    fn live(&self) -> &Conn<M::Connection> {
        self.conn
            .as_ref()
            .expect("a Pooled holds its connection until dropped")
    }

    /// Removes the connection from this guard, ending the checkout's bookkeeping.
    fn leave(&mut self) -> Conn<M::Connection> {
        if let Some(key) = self.leak_key.take() {
            self.shared.leak_done(key);
        }
        if let Some(taken_at) = self.taken_at {
            // Reads the clock only with the `metrics` feature.
            self.shared.metrics.use_time(taken_at);
        }
        self.conn
            .take()
            .expect("a Pooled holds its connection until dropped")
    }

    /// Closes the connection instead of returning it.
    pub(crate) fn discard(mut self, reason: CloseReason) {
        let conn = self.leave();
        self.shared.close_conn(conn, reason);
    }

    /// Runs the `after_connect` hooks on a new connection; a rejection closes it.
    pub(crate) async fn run_after_connect(&mut self) -> Result<(), PoolError<M::Error>> {
        let shared = Arc::clone(&self.shared);
        if shared.hooks.after_connect.is_empty() {
            return Ok(());
        }
        self.checking = true;
        let conn = self
            .conn
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
            .data();
        match hooks::run_async(&shared.hooks.after_connect, &mut conn.raw, &conn.info).await {
            Ok(()) => {
                self.checking = false;
                Ok(())
            }
            Err(e) => {
                let conn = self.leave();
                shared.close_conn(conn, CloseReason::HookRejected);
                Err(PoolError::Hook(e))
            }
        }
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let conn = self.leave();
        if self.checking {
            self.shared.close_conn(conn, CloseReason::Cancelled);
        } else {
            let forced = self.broken.then_some(CloseReason::Broken);
            self.shared.return_conn(conn, forced);
        }
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &self.live().raw
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self
            .conn
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
            .raw
    }
}

impl<M: Manager> std::fmt::Debug for Pooled<M>
where
    M::Connection: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("connection", &self.conn.as_ref().map(|c| &c.raw))
            .field("info", &self.conn.as_ref().map(|c| &c.info))
            .finish()
    }
}

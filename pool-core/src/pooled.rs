//! A checked-out connection.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::CloseReason;
use crate::pool::Shared;
use crate::state::{CheckoutMarks, Conn};
use crate::{hooks, ConnectionInfo, Manager, PoolError};

/// A connection checked out of a [`Pool`](crate::Pool). Dereferences to the
/// connection; goes back to the pool when dropped.
///
/// On return the pool asks the manager whether the connection is broken or dirty, and
/// closes or resets it accordingly. A connection dropped while its holder panics is
/// treated as dirty: its session is reset before anyone else gets it.
pub struct Pooled<M: Manager> {
    /// `Some` until dropped; its `checkout` marks hold this checkout's bookkeeping.
    pub(crate) conn: Option<Conn<M::Connection>>,
    /// Taken out (once) by `drop`: a return may leave it in the hand-back cell with
    /// the connection, in place of dropping it (see `handback.rs`).
    shared: ManuallyDrop<Arc<Shared<M>>>,
}

impl<M: Manager> Pooled<M> {
    /// A connection checked out by a user at `taken_at`.
    pub(crate) fn checked_out(
        shared: Arc<Shared<M>>,
        mut conn: Conn<M::Connection>,
        taken_at: Instant,
        leak_key: Option<usize>,
    ) -> Self {
        conn.checkout = CheckoutMarks {
            taken_at: Some(taken_at),
            leak_key,
            checking: false,
            broken: false,
        };
        Pooled {
            conn: Some(conn),
            shared: ManuallyDrop::new(shared),
        }
    }

    /// A connection held by the pool itself (upkeep), returned like any other.
    pub(crate) fn held_by_pool(shared: Arc<Shared<M>>, mut conn: Conn<M::Connection>) -> Self {
        conn.checkout = CheckoutMarks::default();
        Pooled {
            conn: Some(conn),
            shared: ManuallyDrop::new(shared),
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
        self.live_mut().checkout.broken = true;
    }

    /// Marks the connection as being checked (see [`CheckoutMarks::checking`]).
    pub(crate) fn set_checking(&mut self, checking: bool) {
        self.live_mut().checkout.checking = checking;
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

    pub(crate) fn live_mut(&mut self) -> &mut Conn<M::Connection> {
        self.conn
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
    }

    /// Removes the connection from this guard, ending the checkout's bookkeeping (its
    /// `checking` and `broken` marks stay for the caller to read).
    fn leave(&mut self) -> Conn<M::Connection> {
        let conn = self
            .conn
            .take()
            .expect("a Pooled holds its connection until dropped");
        end_checkout(&self.shared, conn)
    }

    /// Closes the connection instead of returning it.
    pub(crate) fn discard(mut self, reason: CloseReason) {
        let conn = self.leave();
        self.shared.close_conn(conn, reason);
    }

    /// Runs the `after_connect` hooks on a new connection; a rejection closes it.
    pub(crate) async fn run_after_connect(&mut self) -> Result<(), PoolError<M::Error>> {
        let shared = Arc::clone(&*self.shared);
        if shared.hooks.after_connect.is_empty() {
            return Ok(());
        }
        self.set_checking(true);
        let conn = self.live_mut().data();
        match hooks::run_async(&shared.hooks.after_connect, &mut conn.raw, &conn.info).await {
            Ok(()) => {
                conn.checkout.checking = false;
                // Closed while the hooks ran: its return closes it, as after a check.
                if shared.is_closed() {
                    return Err(PoolError::Closed);
                }
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

/// Ends a checkout's bookkeeping (its `checking` and `broken` marks stay for the
/// caller to read).
fn end_checkout<M: Manager>(
    shared: &Shared<M>,
    mut conn: Conn<M::Connection>,
) -> Conn<M::Connection> {
    if let Some(key) = conn.checkout.leak_key.take() {
        shared.leak_done(key);
    }
    if let Some(taken_at) = conn.checkout.taken_at.take() {
        // Reads the clock only with the `metrics` feature, and runs the recorder's code.
        shared.metrics.use_time(taken_at);
    }
    conn
}

impl<M: Manager> Drop for Pooled<M> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: taken here only, once, and `self.shared` is not used after. Taken
        // first, so that the reference is dropped even if what follows panics (a
        // metrics recorder's code runs in `end_checkout`).
        let shared = unsafe { ManuallyDrop::take(&mut self.shared) };
        let Some(conn) = self.conn.take() else { return };
        let conn = end_checkout(&shared, conn);
        if conn.checkout.checking {
            shared.close_conn(conn, CloseReason::Cancelled);
        } else {
            let forced = conn.checkout.broken.then_some(CloseReason::Broken);
            shared.return_conn(conn, forced);
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
        &mut self.live_mut().raw
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

//! A caller who opens a connection also keeps a place in line, and takes whichever
//! comes first: its own new connection, or one returned meanwhile.
//!
//! In a burst on a pool that has some connections, most callers are served by the
//! connections coming back long before a new one could open (a connect can take
//! 100 ms; a query a millisecond). Without this, the few callers who started the
//! connects (`max_connecting` of them) wait out the whole connect while everyone
//! behind them is served. With it, a caller handed a returned connection goes on with
//! it, and its connect finishes in the background into the pool (to the next caller in
//! line, else idle), so nothing opened is wasted and no more connections are opened
//! than before.
//!
//! Guarantees:
//! - **The caller's own error**: if its connect fails before anything else arrives,
//!   the caller gets that failure, as without the race.
//! - **Nothing leaks**: the reservation is owned by the connect future from its
//!   creation (`OwnedSlot`), so dropping it at any point (the caller cancelled, the
//!   runtime shut down under the background task) frees the room; the place in line
//!   gives back anything granted to it when dropped.
//! - **No second connect**: room to open granted to a caller whose connect is still
//!   under way is passed on at once.
//! - **Close waits for it**: a caller told the pool closed gets `Closed` at once; its
//!   connect still finishes, and the connection is closed as it arrives.
//!
//! Only with tokio (the background task is spawned on the current runtime); elsewhere
//! the caller waits for its connect as before.

use std::sync::Arc;

use crate::pool::{Opened, Shared, SlotGuard};
use crate::state::Grant;
use crate::{Manager, Pooled};

/// What the race ended in.
pub(crate) enum Raced<M: Manager> {
    /// The caller's own connect finished first.
    Opened(Opened<M::Connection, M::Error>),
    /// A grant from the line came first (the connect, if any, goes on without it).
    #[cfg_attr(not(all(feature = "tokio", not(pool_model))), allow(dead_code))]
    Took(Grant<M::Connection>),
}

impl<M: Manager> Shared<M> {
    /// Opens a connection in `slot` while also waiting in line; see the module docs.
    pub(crate) async fn open_or_take(self: &Arc<Self>, slot: SlotGuard<'_, M>) -> Raced<M> {
        #[cfg(all(feature = "tokio", not(pool_model)))]
        if matches!(self.runtime, Some(crate::Runtime::Tokio1)) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                return background::race(self, slot, runtime).await;
            }
        }
        Raced::Opened(self.open(slot).await)
    }

    /// Adds a connection opened for nobody in particular to the pool, after its
    /// `after_connect` hooks: to the first caller in line, else idle.
    pub(crate) async fn admit(self: &Arc<Self>, conn: crate::state::Conn<M::Connection>) {
        let mut fresh = Pooled::held_by_pool(Arc::clone(self), conn);
        if fresh.run_after_connect().await.is_ok() {
            // Dropping it returns it like any other.
            drop(fresh);
        }
    }
}

#[cfg(all(feature = "tokio", not(pool_model)))]
mod background {
    use std::future::{poll_fn, Future};
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Poll;

    use super::Raced;
    use crate::get::WaitTurn;
    use crate::pool::{Opened, Shared, SlotGuard};
    use crate::state::Grant;
    use crate::Manager;

    /// A connect that may outlive the caller who started it.
    type Connect<M> = Pin<
        Box<dyn Future<Output = Opened<<M as Manager>::Connection, <M as Manager>::Error>> + Send>,
    >;

    /// A reservation owned rather than borrowed, so that a future holding it can be
    /// moved to a task of its own. Frees the room if dropped before the connect takes
    /// it over.
    struct OwnedSlot<M: Manager> {
        shared: Arc<Shared<M>>,
        armed: bool,
    }

    impl<M: Manager> Drop for OwnedSlot<M> {
        fn drop(&mut self) {
            if self.armed {
                drop(SlotGuard::adopt(&self.shared));
            }
        }
    }

    /// Opens a connection in `slot`. The slot is an argument, so it is in the future
    /// from its creation: a future dropped before its first poll still frees the room.
    async fn connect_owned<M: Manager>(mut slot: OwnedSlot<M>) -> Opened<M::Connection, M::Error> {
        let shared = Arc::clone(&slot.shared);
        slot.armed = false;
        shared.open(SlotGuard::adopt(&shared)).await
    }

    /// Connects in `slot` and waits in line at once; see the module docs.
    pub(super) async fn race<M: Manager>(
        shared: &Arc<Shared<M>>,
        slot: SlotGuard<'_, M>,
        runtime: tokio::runtime::Handle,
    ) -> Raced<M> {
        slot.hand_over();
        let owned = OwnedSlot {
            shared: Arc::clone(shared),
            armed: true,
        };
        let mut connect: Connect<M> = Box::pin(connect_owned(owned));
        let mut turn: Option<WaitTurn<'_, M>> = None;
        loop {
            let raced = poll_fn(|cx| {
                if let Poll::Ready(opened) = connect.as_mut().poll(cx) {
                    return Poll::Ready(Raced::<M>::Opened(opened));
                }
                let place = turn.get_or_insert_with(|| shared.join_line(cx.waker()));
                Pin::new(place).poll(cx).map(Raced::Took)
            })
            .await;
            match raced {
                // Leaving the line gives back anything granted meanwhile.
                Raced::Opened(opened) => return Raced::Opened(opened),
                Raced::Took(Grant::Slot) => {
                    // Room for a second connect: not needed while this one runs.
                    turn = None;
                    drop(SlotGuard::adopt(shared));
                }
                // A connection, or the pool closed: the connect finishes without the
                // caller, into the pool (or closed, if the pool was, which `close`
                // waits for).
                Raced::Took(grant) => {
                    let admitting = Arc::clone(shared);
                    runtime.spawn(async move {
                        if let Opened::Conn(conn) = connect.await {
                            admitting.admit(conn).await;
                        }
                    });
                    return Raced::Took(grant);
                }
            }
        }
    }
}

//! The pool's one timer for the deadlines of callers waiting in line.
//!
//! A caller that waits with a deadline would otherwise arm a timer of its own: a heap
//! allocation and a registration in the runtime's timer wheel per wait, nearly all of
//! them served long before the deadline (and about 200 bytes per waiter). Instead a
//! caller joining with a deadline hands it to the line, which keeps watched deadlines
//! in line order ([`WaitQueue`](crate::waiters::WaitQueue)), and one task per pool
//! sleeps until the earliest, expires every caller whose deadline has passed, and
//! sleeps again. A caller whose deadline would break the order (a shorter
//! `get_timeout` behind longer waits, a retry after a failed connect) keeps its own
//! timer, as does every caller where the runtime is not tokio.
//!
//! Guarantees:
//! - **Never early**: a watched caller is expired only once the precise clock has
//!   passed its deadline, and no later than the watchdog's next wake-up after it.
//! - **No lost wake-up**: a parked watchdog (no watched deadline in line) is woken by
//!   the first caller that brings one; the state says `Running` from then until it
//!   has looked, so a caller arriving meanwhile need not wake it again.
//! - **No orphans**: if the task is dropped while the pool lives (its runtime shut
//!   down), every watched caller is woken and keeps its own deadline from then on, and
//!   the next caller to wait spawns a new watchdog. The task holds the pool only
//!   weakly and ends once the pool is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::pool::Shared;
use crate::state::{Grant, WakeList, Watchdog};
use crate::{clock, Manager};

/// Spawns the pool's watchdog on the current tokio runtime, which the state already
/// counts as running. Called without the pool's lock: a runtime that is shutting down
/// drops the task inside `spawn`, and its guard then takes the lock to hand the
/// deadlines back. Outside a runtime the guard does so at once.
pub(crate) fn spawn<M: Manager>(shared: &Arc<Shared<M>>) {
    let pool = Arc::downgrade(shared);
    let unwatch = UnwatchOnDrop { pool: pool.clone() };
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(run(unwatch, pool));
    }
}

/// The task. The guard is an argument so that it lives in the future from its
/// creation: a task dropped before its first poll still unwatches.
async fn run<M: Manager>(_unwatch: UnwatchOnDrop<M>, pool: Weak<Shared<M>>) {
    loop {
        let next = match pool.upgrade() {
            Some(shared) => shared.expire_waiters(),
            None => return,
        };
        match next {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => Parked { pool: &pool }.await,
        }
    }
}

impl<M: Manager> Shared<M> {
    /// Expires the watched callers whose deadline has passed; returns the earliest
    /// watched deadline left, and records whether the watchdog sleeps until it or
    /// parks.
    fn expire_waiters(&self) -> Option<Instant> {
        let now = clock::now();
        let mut wake = WakeList::default();
        let next = {
            let mut st = self.lock();
            let next = st
                .waiters
                .expire_due(now, || Grant::Expired, |waker| wake.push(waker));
            self.unbar_if_nobody_waits(&st);
            st.watchdog = match next {
                Some(at) => Watchdog::Sleeping(at),
                None => Watchdog::Parked(None),
            };
            next
        };
        wake.wake();
        next
    }
}

/// Resolves once a caller with a watched deadline has joined the line (the state is
/// `Running` again), or the pool is gone.
struct Parked<'a, M: Manager> {
    pool: &'a Weak<Shared<M>>,
}

impl<M: Manager> Future for Parked<'_, M> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(shared) = self.pool.upgrade() else {
            return Poll::Ready(());
        };
        let mut st = shared.lock();
        match &mut st.watchdog {
            Watchdog::Parked(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

/// Ends the watch when the task is dropped while the pool lives: watched callers are
/// woken to keep their own deadlines.
struct UnwatchOnDrop<M: Manager> {
    pool: Weak<Shared<M>>,
}

impl<M: Manager> Drop for UnwatchOnDrop<M> {
    fn drop(&mut self) {
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        let mut wake = WakeList::default();
        {
            let mut st = shared.lock();
            st.watchdog = Watchdog::Absent;
            st.waiters.unwatch_all(|waker| wake.push(waker));
        }
        wake.wake();
    }
}

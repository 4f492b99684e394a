//! Background upkeep: closes expired and long-idle connections, reports leaks, and
//! keeps `min_idle` connections open. A future the user drives on any executor.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::metrics::CloseReason;
use crate::pool::{lock_registry, Checked, Opened, Shared, SlotGuard};
use crate::state::{Idle, Open, ToClose, WakeList};
use crate::{clock, CheckReason, Manager, Pool, Pooled};

/// The longest upkeep sleeps between passes, so connections returned meanwhile are
/// looked at without a wake-up on the hot path.
const MAX_PAUSE: Duration = Duration::from_secs(1);

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl<M: Manager> Pool<M> {
    /// The pool's background upkeep, for the caller to run on its executor: it closes
    /// idle connections past `max_lifetime` or `idle_timeout` (keeping `min_idle`),
    /// opens connections up to `min_idle` (respecting the connect back-off), and
    /// reports leaks past `leak_threshold`.
    ///
    /// It holds only a weak reference, so it ends by itself when the pool is closed or
    /// dropped. Its timer is the pool's runtime; without one it makes one pass and
    /// ends. Checkout and return enforce lifetimes on their own, so a pool without
    /// upkeep is still correct; it just keeps expired idle connections open longer and
    /// does not keep `min_idle` warm.
    pub fn upkeep(&self) -> impl Future<Output = ()> + Send + 'static {
        let weak = Arc::downgrade(&self.shared);
        async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let pass = {
                    let shared = Arc::clone(&shared);
                    CatchUnwind(Box::pin(async move { shared.upkeep_pass().await }))
                };
                let pause = match pass.await {
                    Ok(Some(pause)) => pause,
                    Ok(None) => return,
                    Err(()) => {
                        // A manager or hook panicked (the guards it unwound through
                        // gave back what they held); upkeep must outlive it.
                        tracing::error!(pool.name = %shared.config.name, "pool upkeep pass panicked; retrying after a pause");
                        MAX_PAUSE
                    }
                };
                let Some(runtime) = shared.runtime else {
                    tracing::warn!(pool.name = %shared.config.name, "pool upkeep has no runtime to sleep on; it ran once and stopped");
                    return;
                };
                drop(shared);
                let signal = UpkeepSignal { weak: weak.clone() };
                let _ = deadpool_runtime::timeout(runtime, pause, signal).await;
            }
        }
    }

    /// Spawns [`upkeep`](Self::upkeep) on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    #[cfg(feature = "tokio")]
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.upkeep())
    }
}

/// Polls a boxed future, turning a panic into `Err(())`.
struct CatchUnwind<'a, T>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

impl<T> Future for CatchUnwind<'_, T> {
    type Output = Result<T, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Wakes upkeep early: a connection was closed, the pool fell below `min_idle`, or it
/// was closed.
struct UpkeepSignal<M: Manager> {
    weak: Weak<Shared<M>>,
}

impl<M: Manager> Future for UpkeepSignal<M> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.weak.upgrade() {
            None => Poll::Ready(()),
            Some(shared) => {
                if shared.lock().poll_upkeep_notified(cx.waker()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// The dirty idle connections a reset pass took out of the idle list and has not
/// reached yet. If the pass is dropped half-way (upkeep cancelled, a panic unwinding),
/// they go back to the idle list still dirty (or close, if the pool closed meanwhile),
/// so the room they are counted in is never lost.
struct PendingResets<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    pending: VecDeque<Idle<M::Connection>>,
}

impl<M: Manager> Drop for PendingResets<'_, M> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut wake = WakeList::default();
        let mut closing = ToClose::new();
        {
            let mut st = self.shared.lock();
            for idle in self.pending.drain(..) {
                st.give_back(idle, false, &mut wake, &mut closing);
            }
        }
        wake.wake();
        self.shared.close_chosen(closing);
    }
}

impl<M: Manager> Shared<M> {
    /// Resets idle connections that came back dirty, so an open transaction left
    /// behind does not hold its locks until the connection's next checkout. Each is
    /// out of the idle list (counted as in use) while it is reset.
    async fn reset_dirty_idle(self: &Arc<Self>) {
        let dirty: VecDeque<_> = {
            let mut st = self.lock();
            if !st.idle.iter().any(|idle| idle.dirty) {
                return;
            }
            let (dirty, clean) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|idle| idle.dirty);
            st.idle = clean;
            dirty
        };
        let mut pending = PendingResets {
            shared: self,
            pending: dirty,
        };
        while let Some(idle) = pending.pending.pop_front() {
            let mut held = Pooled::held_by_pool(Arc::clone(self), idle.conn);
            match self.check(&mut held, CheckReason::Dirty).await {
                // Dropping it returns it clean: to a waiter, or to the idle list.
                Checked::Usable => drop(held),
                Checked::Failed(reason) => held.discard(reason),
                Checked::TimedOut => held.discard(CloseReason::CheckTimedOut),
            }
        }
    }

    /// One upkeep pass. Returns how long to sleep before the next, or `None` once the
    /// pool is closed.
    pub(crate) async fn upkeep_pass(self: &Arc<Self>) -> Option<Duration> {
        let mut next: Option<Instant> = None;
        let mut closing = ToClose::new();
        let now = {
            let mut st = self.lock();
            if st.closed {
                return None;
            }
            // The parked connection joins the list, so its lifetime and idle time are
            // looked at too.
            self.unpark_into_idle(&mut st);
            // Read under the lock: every connection in the idle list went idle before
            // this moment, which makes it a bound `idle_timeout` can count from.
            let now = clock::now();
            let mut index = 0;
            while index < st.idle.len() {
                let conn = &mut st.idle[index].conn;
                conn.seen_idle_at.get_or_insert(now);
                match conn.info.expires_at {
                    Some(at) if at <= now => {
                        let idle = st.idle.remove(index).expect("index is in bounds");
                        st.close_later(&mut closing, idle.conn, CloseReason::Lifetime);
                    }
                    Some(at) => {
                        next = earliest(next, at);
                        index += 1;
                    }
                    None => index += 1,
                }
            }
            if let Some(idle_timeout) = self.config.idle_timeout {
                // A connection counts as idle from the first pass that saw it (the
                // return's coarse stamp may be early), so it closes at most one pass
                // late. The list is oldest first only mostly: one given back unused (by
                // `retain`, or by a waiter cancelled after its grant) rejoins at the
                // back with its earlier mark, so every one is looked at, not only the
                // front, lest it wait behind a newer one.
                let mut index = 0;
                while index < st.idle.len() && st.idle.len() > st.min_idle {
                    let seen = st.idle[index].conn.seen_idle_at.unwrap_or(now);
                    // An idle timeout too long for an `Instant` never ends.
                    match seen.checked_add(idle_timeout) {
                        Some(closes_at) if closes_at <= now => {
                            let idle = st.idle.remove(index).expect("index is in bounds");
                            st.close_later(&mut closing, idle.conn, CloseReason::Idle);
                        }
                        closes_at => {
                            next = closes_at.map_or(next, |at| earliest(next, at));
                            index += 1;
                        }
                    }
                }
            }
            now
        };
        self.close_chosen(closing);
        self.reset_dirty_idle().await;

        if let (Some(threshold), Some(leaks)) = (self.config.leak_threshold, &self.leaks) {
            if let Some(due) = lock_registry(leaks).report(&self.config.name, threshold, now) {
                next = earliest(next, due);
            }
        }

        loop {
            let now = clock::now();
            let open = {
                let mut st = self.lock();
                if st.closed {
                    return None;
                }
                let parked = usize::from(self.hand_back.holds_idle());
                if st.idle.len() + parked + st.connecting >= st.min_idle {
                    false
                } else {
                    match st.open_permission(now) {
                        Open::Now => {
                            st.reserve();
                            true
                        }
                        Open::BackingOff { retry_at } => {
                            next = earliest(next, retry_at);
                            false
                        }
                        Open::Later => false,
                    }
                }
            };
            if !open {
                break;
            }
            match self.open(SlotGuard::adopt(self)).await {
                Opened::Conn(conn) => self.admit(conn).await,
                Opened::Failed(_) => {
                    if let Some(backoff) = &self.lock().backoff {
                        next = earliest(next, backoff.retry_at);
                    }
                    break;
                }
            }
        }

        let now = clock::now();
        // Connections returned meanwhile do not wake upkeep, so it looks again within
        // a quarter of the shortest period it enforces (and a second) of finishing
        // this pass: an idle connection counts as idle from the first pass that sees
        // it, so it is closed at most that late, plus however long a pass's resets and
        // `min_idle` connects take.
        let cap = [self.config.idle_timeout, self.config.leak_threshold]
            .into_iter()
            .flatten()
            .map(|period| period / 4)
            .fold(MAX_PAUSE, Duration::min);
        let pause = next
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or(cap)
            .min(cap);
        Some(pause)
    }
}

//! The pool: checkout, return, open, close.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::errors::error_chain_string;
use crate::get::{Get, Wait};
use crate::handback::{bar, HandBack, HandedBack};
use crate::hooks::{self, Hooks};
use crate::leak::LeakRegistry;
use crate::metrics::{CloseReason, Metrics};
use crate::state::{Conn, ConnData, Grant, Idle, State, ToClose, WakeList};
use crate::sync::{AtomicU64, CachePadded, Mutex, MutexGuard, Ordering};
use crate::{
    clock, BuildError, CheckReason, CloseError, ConnectionInfo, Manager, PoolConfig, PoolError,
    Pooled, ReturnState, Runtime, Status, TimeoutContext, TimeoutKind,
};

/// A pool of connections made by a [`Manager`].
///
/// Cheap to clone: clones share one pool. See the [crate docs](crate) for the
/// guarantees it keeps.
pub struct Pool<M: Manager> {
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        self.shared
            .handles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Manager> Drop for Pool<M> {
    /// The last handle bars the hand-back cell for good: a connection parked there
    /// carries a reference to the pool (see `handback.rs`), which would keep the pool,
    /// and its connections, alive for ever. Checkouts still out return through the
    /// lock, and the pool goes when the last of them does.
    fn drop(&mut self) {
        if self
            .shared
            .handles
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            let mut st = self.shared.lock();
            self.shared.bar_into_idle(&mut st, bar::ORPHANED);
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.config.name)
            .field("status", &self.status())
            .finish()
    }
}

/// Laid out for the cores that share it:
/// - The lock word and the idle list, which every locked checkout and return write,
///   share one cache line (see [`State`]): a checkout on one core after a return on
///   another moves that one line between them for the bookkeeping, where the lock and
///   the list apart took two or three.
/// - That line and the hand-back cell are each [`CachePadded`], away from each other
///   and from the `Arc`'s reference count, which a checkout and a return write too
///   when they take the lock (`Pooled` holds a reference to the pool; one that goes
///   through the hand-back cell leaves it there, see `handback.rs`).
///
/// Side by side on 2 cores, releasing at once: the lock and the list together took a
/// checkout and return from 1.09× to 0.94× the time of a `Semaphore` and a locked `Vec`
/// (16 tasks); the padding took it from 112 to 104 ns (4 connections, 256 tasks).
#[repr(C)]
pub(crate) struct Shared<M: Manager> {
    state: CachePadded<Mutex<State<M::Connection>>>,
    pub(crate) manager: M,
    pub(crate) config: PoolConfig,
    pub(crate) runtime: Option<Runtime>,
    pub(crate) hooks: Hooks<M::Connection>,
    next_id: AtomicU64,
    pub(crate) leaks: Option<Mutex<LeakRegistry>>,
    pub(crate) metrics: Metrics,
    /// One idle connection parked without the lock (see `handback.rs`); most
    /// checkouts and returns use it instead of the lock.
    pub(crate) hand_back: CachePadded<HandBack<ConnData<M::Connection>, Self>>,
    /// The `Pool` handles alive; the last one bars the hand-back cell for good. A
    /// count like the `Arc`'s, and like it `std`'s in the model build too.
    handles: std::sync::atomic::AtomicUsize,
    /// `State::broken_at`, readable without the lock by a checkout from the hand-back
    /// cell: nanoseconds after `epoch`, 0 for none.
    broken_at_hint: AtomicU64,
    epoch: Instant,
}

impl<M: Manager> Pool<M> {
    /// Starts configuring a pool around `manager`.
    pub fn builder(manager: M) -> crate::Builder<M> {
        crate::Builder::new(manager)
    }

    pub(crate) fn from_parts(
        manager: M,
        config: PoolConfig,
        runtime: Option<Runtime>,
        hooks: Hooks<M::Connection>,
    ) -> Self {
        let limits = crate::state::Limits {
            max_connecting: config.max_connecting,
            backoff_initial: config.connect_backoff,
            backoff_max: config.connect_backoff_max,
            reuse: config.reuse,
        };
        let state = State::new(config.max_size, config.min_idle, limits);
        let metrics = Metrics::new(&config.name, config.max_size, config.min_idle);
        let leaks = config.leak_threshold.map(|_| Mutex::default());
        // FIFO reuse takes the oldest idle connection, never the one just returned; the
        // `metrics` gauges are updated by every return, under the lock.
        let hand_back_off = config.reuse == crate::Reuse::Fifo || cfg!(feature = "metrics");
        Pool {
            shared: Arc::new(Shared {
                hand_back: CachePadded::new(HandBack::new(hand_back_off)),
                handles: std::sync::atomic::AtomicUsize::new(1),
                broken_at_hint: AtomicU64::new(0),
                epoch: clock::now(),
                manager,
                runtime,
                hooks,
                state: CachePadded::new(Mutex::new(state)),
                next_id: AtomicU64::new(1),
                leaks,
                metrics,
                config,
            }),
        }
    }

    /// Takes a connection, waiting up to `wait_timeout` for one to come free.
    ///
    /// Cancel-safe at every await point: dropping the future gives back whatever it
    /// held (its place in line, a connection handed to it, a connect in progress).
    #[track_caller]
    pub fn get(&self) -> Get<'_, M> {
        let wait = Wait::from_timeout(self.shared.config.wait_timeout);
        Get::new(&self.shared, wait, Location::caller())
    }

    /// Like [`get`](Self::get), with its own wait bound instead of `wait_timeout`
    /// (`None` waits as long as it takes).
    #[track_caller]
    pub fn get_timeout(&self, wait: Option<Duration>) -> Get<'_, M> {
        Get::new(&self.shared, Wait::from_timeout(wait), Location::caller())
    }

    /// Takes an idle connection, or opens one if there is room, but never waits for
    /// one to be returned: fails with [`TimeoutKind::Wait`] at once instead.
    #[track_caller]
    pub fn try_get(&self) -> Get<'_, M> {
        Get::new(&self.shared, Wait::No, Location::caller())
    }

    /// The pool's counts now.
    pub fn status(&self) -> Status {
        self.shared.status(&self.shared.lock())
    }

    /// The manager the pool was built with.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// The configuration the pool was built with (`max_size` as built; see
    /// [`status`](Self::status) after a [`resize`](Self::resize)).
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Changes `max_size`. Growing lets waiters open connections at once; shrinking
    /// closes idle connections beyond the new size now and in-use ones as they return.
    pub fn resize(&self, max_size: usize) -> Result<(), BuildError> {
        if max_size == 0 {
            return Err(BuildError::invalid("max_size", "must be at least 1"));
        }
        let now = clock::now();
        let mut excess = ToClose::new();
        let mut wake = WakeList::default();
        {
            let mut st = self.shared.lock();
            if max_size < st.min_idle {
                return Err(BuildError::invalid(
                    "max_size",
                    format!("({max_size}) must not be below min_idle ({})", st.min_idle),
                ));
            }
            st.max_size = max_size;
            let shared = &self.shared;
            if st.above_max_size() {
                // Returns must look at the size under the lock until it is back within
                // bounds; the parked connection is the newest idle one.
                shared.bar_into_idle(&mut st, bar::OVER_SIZE);
            } else {
                shared.hand_back.unbar(bar::OVER_SIZE);
            }
            // Oldest first: they would be reused last. Still counted until closed.
            let excess_count = st.excess().min(st.idle.len());
            for _ in 0..excess_count {
                let idle = st.idle.pop_front().expect("excess_count <= idle.len()");
                st.close_later(&mut excess, idle.conn, CloseReason::Resized);
            }
            st.dispatch(now, &mut wake);
        }
        wake.wake();
        self.shared.metrics.resized(max_size);
        self.shared.close_chosen(excess);
        Ok(())
    }

    /// Keeps the idle connections for which `keep` returns `true` and closes the rest;
    /// returns how many were closed. Connections in use are not visited. `keep` runs
    /// without the pool's lock; if it panics, the connections not yet visited stay and
    /// the one it panicked on is closed.
    /// While the pool is above its `max_size` after a [`resize`](Self::resize), kept
    /// connections beyond it are closed too (not counted in what this returns), as
    /// their return would have closed them.
    pub fn retain(
        &self,
        mut keep: impl FnMut(&mut M::Connection, &ConnectionInfo) -> bool,
    ) -> usize {
        let taken: Vec<Idle<M::Connection>> = {
            let mut st = self.shared.lock();
            self.shared.unpark_into_idle(&mut st);
            st.idle.drain(..).collect()
        };
        let mut visit = Retaining {
            shared: &self.shared,
            pending: taken.into_iter(),
            visiting: None,
            kept: Vec::new(),
            removed: Vec::new(),
        };
        for next in visit.pending.by_ref() {
            // Held by the guard while `keep` runs, so a panic there frees its room.
            let idle = visit.visiting.insert(next);
            let ConnData { raw, info, .. } = &mut *idle.conn;
            let kept = keep(raw, info);
            let idle = visit.visiting.take().expect("put there above");
            if kept {
                visit.kept.push(idle);
            } else {
                visit.removed.push(idle.conn);
            }
        }
        visit.removed.len()
    }

    /// Closes the pool: new gets fail with [`PoolError::Closed`], waiters are told so,
    /// idle connections close now, and connections in use close when returned. Waits
    /// up to `deadline` for those; the error says how many were still out.
    ///
    /// Without a runtime there is no timer, so it does not wait: it reports what is
    /// still out at once.
    pub async fn close(&self, deadline: Duration) -> Result<(), CloseError> {
        let mut wake = WakeList::default();
        let mut closing = ToClose::new();
        {
            let mut st = self.shared.lock();
            st.closed = true;
            self.shared.bar_into_idle(&mut st, bar::CLOSED);
            while let Some(popped) = st.waiters.pop_front() {
                wake.push(st.waiters.grant(popped, Grant::Closed));
            }
            for idle in std::mem::take(&mut st.idle) {
                st.close_later(&mut closing, idle.conn, CloseReason::PoolClosed);
            }
            st.notify_upkeep(&mut wake);
        }
        wake.wake();
        self.shared.close_chosen(closing);
        let all_closed = AllClosed {
            shared: &self.shared,
        };
        let done = match self.shared.runtime {
            Some(rt) => deadpool_runtime::timeout(rt, deadline, all_closed)
                .await
                .is_some(),
            // The model checker (src/sync.rs) has no timer, but it sees every order of
            // events: waiting without a deadline turns a lost wake-up into a deadlock
            // it reports.
            #[cfg(pool_model)]
            None => {
                all_closed.await;
                true
            }
            #[cfg(not(pool_model))]
            None => self.shared.lock().size == 0,
        };
        if done {
            Ok(())
        } else {
            Err(CloseError {
                in_use: self.shared.lock().size,
                after: deadline,
            })
        }
    }
}

/// Hands the idle connections `retain` took back to the pool, even if `keep` panicked:
/// the one it panicked on is closed (`keep` had it mutably, in a state unknown).
struct Retaining<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    pending: std::vec::IntoIter<Idle<M::Connection>>,
    visiting: Option<Idle<M::Connection>>,
    kept: Vec<Idle<M::Connection>>,
    removed: Vec<Conn<M::Connection>>,
}

impl<M: Manager> Drop for Retaining<'_, M> {
    fn drop(&mut self) {
        let mut wake = WakeList::default();
        let mut closing = ToClose::new();
        {
            let mut st = self.shared.lock();
            // The one `keep` panicked on is closed as those it turned down: a
            // panicking closure says nothing about the server, so its peers are not
            // made suspect.
            let visited = self.visiting.take().map(|idle| idle.conn);
            for conn in self.removed.drain(..).chain(visited) {
                st.close_later(&mut closing, conn, CloseReason::Retain);
            }
            for idle in self.kept.drain(..).chain(self.pending.by_ref()) {
                st.give_back(idle, false, &mut wake, &mut closing);
            }
        }
        wake.wake();
        self.shared.close_chosen(closing);
    }
}

/// Resolves once every connection of a closed pool is gone.
struct AllClosed<'a, M: Manager> {
    shared: &'a Shared<M>,
}

impl<M: Manager> Future for AllClosed<'_, M> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.lock().poll_all_closed(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// One counted connection being opened: `size` and `connecting` include it until it
/// becomes a connection or is dropped.
pub(crate) struct SlotGuard<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    armed: bool,
}

impl<'a, M: Manager> SlotGuard<'a, M> {
    /// Adopts a reservation already counted in the state.
    pub(crate) fn adopt(shared: &'a Arc<Shared<M>>) -> Self {
        SlotGuard {
            shared,
            armed: true,
        }
    }

    /// The reservation is now owned elsewhere (by a connect that may outlive this
    /// borrow); this guard no longer frees it.
    #[cfg(all(feature = "tokio", not(pool_model)))]
    pub(crate) fn hand_over(mut self) {
        self.armed = false;
    }

    /// The connect failed: back off and give the room to the next caller.
    fn failed(mut self, error: String) {
        self.armed = false;
        let now = clock::now();
        let mut wake = WakeList::default();
        {
            let mut st = self.shared.lock();
            st.connect_failed(now, error);
            st.unreserve(now, &mut wake);
        }
        wake.wake();
    }

    /// The connect succeeded. `None` if the pool closed meanwhile (the connection is
    /// closed and its room freed).
    fn connected(mut self, raw: M::Connection, started: Instant) -> Option<Conn<M::Connection>> {
        let now = clock::now();
        let shared = self.shared;
        shared
            .metrics
            .create_time(now.saturating_duration_since(started));
        let conn = shared.new_conn(raw, now);
        // Disarmed only now: until the connection exists, a panic frees the room.
        self.armed = false;
        let mut wake = WakeList::default();
        let closed = {
            let mut st = shared.lock();
            st.connected();
            // One connect fewer in flight: a caller held back by `max_connecting` (or
            // by the back-off's single probe) may open one now.
            st.dispatch(now, &mut wake);
            st.closed
        };
        wake.wake();
        if closed {
            shared.close_conn(conn, CloseReason::PoolClosed);
            return None;
        }
        Some(conn)
    }
}

impl<M: Manager> Drop for SlotGuard<'_, M> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let now = clock::now();
        let mut wake = WakeList::default();
        self.shared.lock().unreserve(now, &mut wake);
        wake.wake();
    }
}

/// What a check before checkout ended in.
pub(crate) enum Checked {
    Usable,
    /// Close the connection, for this reason.
    Failed(CloseReason),
    TimedOut,
}

/// What a connect attempt ended in.
pub(crate) enum Opened<C, E> {
    Conn(Conn<C>),
    Failed(PoolError<E>),
}

impl<M: Manager> Shared<M> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<M::Connection>> {
        self.state.lock()
    }

    fn new_conn(&self, raw: M::Connection, now: Instant) -> Conn<M::Connection> {
        // A lifetime too long for an `Instant` never ends.
        let expires_at = self.config.max_lifetime.and_then(|lifetime| {
            let spread = u64::try_from((lifetime / 10).as_nanos()).unwrap_or(u64::MAX);
            let jitter = Duration::from_nanos(fastrand::u64(..=spread));
            now.checked_add(lifetime - jitter)
        });
        Conn::new(
            raw,
            ConnectionInfo {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                created_at: now,
                expires_at,
                last_checked: now,
                checkouts: 0,
                check_reason: None,
            },
        )
    }

    /// Runs `fut` within `limit`; `None` if the limit passed first.
    pub(crate) async fn within<F: Future>(
        &self,
        limit: Option<Duration>,
        fut: F,
    ) -> Option<F::Output> {
        match (limit, self.runtime) {
            (Some(limit), Some(rt)) => deadpool_runtime::timeout(rt, limit, fut).await,
            _ => Some(fut.await),
        }
    }

    /// Whether the pool was closed: asked again by a caller who awaited a check or a
    /// hook, which `close` may have come during.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Bars the hand-back cell for `reason` and puts the connection it held, if any, at
    /// the back of the idle list (the newest idle one, where its return would have put
    /// it); for the holder of the lock, `st`. The reference to the pool the connection
    /// carried is dropped: the caller holds one of its own.
    fn bar_into_idle(&self, st: &mut State<M::Connection>, reason: usize) {
        if let Some((parked, _reference)) = self.hand_back.bar_and_drain(reason) {
            st.idle.push_back(Idle::from_parked(parked));
        }
    }

    /// Takes the connection parked in the hand-back cell, if any, into the back of the
    /// idle list, where its return would have put it, leaving the cell open; for the
    /// holder of the lock, `st`, who holds a reference of its own. A barred cell is
    /// empty already.
    pub(crate) fn unpark_into_idle(&self, st: &mut State<M::Connection>) {
        if let Some((parked, _reference)) = self.hand_back.take() {
            st.idle.push_back(Idle::from_parked(parked));
        }
    }

    /// Bars the hand-back cell because a caller may wait: from here on returns come
    /// through the lock to the line. The connection parked there goes to the first in
    /// line, else to the idle list. For the holder of the lock, `st`, under which alone
    /// the bar is raised; [`unbar_if_nobody_waits`](Self::unbar_if_nobody_waits) lifts
    /// it.
    // Always inlined: `decide`, on every caller that may wait, is its hot caller, and
    // measured out of line it cost that path 24 instructions more.
    #[inline(always)]
    pub(crate) fn bar_for_waiters(&self, st: &mut State<M::Connection>, wake: &mut WakeList) {
        if let Some((parked, _reference)) = self.hand_back.bar_and_drain(bar::WAITERS) {
            st.put_back(Idle::from_parked(parked), false, wake);
        }
    }

    /// The counts `st` (the pool's state, locked) gives, with an idle connection parked
    /// in the hand-back cell counted idle: it is not in the list, and, counted in
    /// `size`, the state counts it in use. (Read under the lock, so `in_use` includes
    /// it.) A barred cell is empty.
    pub(crate) fn status(&self, st: &State<M::Connection>) -> Status {
        let mut status = st.status();
        if self.hand_back.holds_idle() && status.in_use > 0 {
            status.idle += 1;
            status.in_use -= 1;
        }
        status
    }

    pub(crate) fn timeout_error(&self, kind: TimeoutKind, after: Duration) -> PoolError<M::Error> {
        let (mut status, last_connect_error) = {
            let st = self.lock();
            (self.status(&st), st.last_connect_error.clone())
        };
        if kind == TimeoutKind::Wait && !after.is_zero() {
            // The caller that timed out has just left the line; it was waiting too.
            status.waiting += 1;
        }
        self.metrics.timeout();
        let target = match kind {
            TimeoutKind::Connect => self.manager.target(),
            TimeoutKind::Wait | TimeoutKind::Recycle => None,
        };
        tracing::warn!(
            pool.name = %self.config.name,
            kind = ?kind,
            after = ?after,
            %status,
            last_connect_error = last_connect_error.as_deref().unwrap_or(""),
            "pool timeout"
        );
        PoolError::Timeout(
            kind,
            Box::new(TimeoutContext {
                after,
                target,
                status,
                last_connect_error,
            }),
        )
    }

    /// Why `idle` must be checked before checkout, if it must.
    pub(crate) fn check_reason(
        &self,
        idle: &Idle<M::Connection>,
        broken_at: Option<Instant>,
        now: Instant,
    ) -> Option<CheckReason> {
        if idle.dirty {
            return Some(CheckReason::Dirty);
        }
        if broken_at.is_some_and(|at| idle.conn.info.last_checked <= at) {
            return Some(CheckReason::PeerBroken);
        }
        // Compared as moments: cheaper than taking the difference on the fast path.
        // `idle_since` is a coarse reading, and so is `now` on the fast path, so a check
        // may fall due a few milliseconds early or late: the cost is one check, and
        // `idle_timeout` does not count from here.
        let due = self.config.check_interval.is_some_and(|interval| {
            interval.is_zero()
                || idle
                    .idle_since
                    .checked_add(interval)
                    // An interval too long for an `Instant` never comes due.
                    .is_some_and(|at| at <= now)
        });
        due.then_some(CheckReason::Idle)
    }

    /// Turns an idle (or handed-off) connection into a checkout, checking it first if
    /// due. `Ok(None)`: it was unusable and is closed; try another.
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        idle: Idle<M::Connection>,
        broken_at: Option<Instant>,
        now: Instant,
        caller: &'static Location<'static>,
        started: Instant,
    ) -> Result<Option<Pooled<M>>, PoolError<M::Error>> {
        if idle.conn.info.expires_at.is_some_and(|at| at <= now) {
            self.close_conn(idle.conn, CloseReason::Lifetime);
            return Ok(None);
        }
        let Some(idle) = self.close_if_reported_broken(idle) else {
            return Ok(None);
        };
        let reason = self.check_reason(&idle, broken_at, now);
        let mut pooled = self.into_pooled(idle.conn, now, caller, started, None);
        if let Some(reason) = reason {
            match self.check(&mut pooled, reason).await {
                Checked::Usable => {}
                Checked::Failed(reason) => {
                    pooled.discard(reason);
                    return Ok(None);
                }
                Checked::TimedOut => {
                    pooled.discard(CloseReason::CheckTimedOut);
                    let after = self.config.recycle_timeout.unwrap_or_default();
                    return Err(self.timeout_error(TimeoutKind::Recycle, after));
                }
            }
        }
        if !self.hooks.before_checkout.is_empty() {
            pooled.set_checking(true);
            let conn = pooled.live_mut().data();
            if let Err(e) =
                hooks::run_async(&self.hooks.before_checkout, &mut conn.raw, &conn.info).await
            {
                tracing::debug!(pool.name = %self.config.name, error = %e, "before_checkout hook rejected a connection");
                pooled.discard(CloseReason::HookRejected);
                return Ok(None);
            }
            pooled.set_checking(false);
        }
        if (reason.is_some() || !self.hooks.before_checkout.is_empty()) && self.is_closed() {
            // Closed while it was being checked: its return closes it, as a connect
            // that ends after `close` does.
            drop(pooled);
            return Err(PoolError::Closed);
        }
        Ok(Some(pooled))
    }

    /// Runs [`Manager::recycle`] on `pooled` within `recycle_timeout`. While it runs,
    /// `pooled` is marked as being checked, so a cancellation closes the connection
    /// instead of returning it in an unknown state.
    pub(crate) async fn check(&self, pooled: &mut Pooled<M>, reason: CheckReason) -> Checked {
        pooled.set_checking(true);
        let conn = pooled.live_mut().data();
        conn.info.check_reason = Some(reason);
        let span = tracing::debug_span!(
            "pool.recycle",
            pool.name = %self.config.name,
            connection.id = conn.info.id,
            reason = ?reason
        );
        let checked = self
            .within(
                self.config.recycle_timeout,
                self.manager.recycle(&mut conn.raw, &conn.info),
            )
            .instrument(span)
            .await;
        conn.info.check_reason = None;
        match checked {
            Some(Ok(())) => {
                conn.info.last_checked = clock::now();
                conn.checkout.checking = false;
                Checked::Usable
            }
            Some(Err(e)) => {
                tracing::debug!(
                    pool.name = %self.config.name,
                    connection.id = conn.info.id,
                    reason = ?reason,
                    error = %error_chain_string(&e),
                    "connection failed its check"
                );
                Checked::Failed(if reason == CheckReason::Dirty {
                    CloseReason::ResetFailed
                } else {
                    CloseReason::Broken
                })
            }
            None => Checked::TimedOut,
        }
    }

    /// A checkout of `conn`, holding `reference` to the pool if the connection
    /// brought one from the hand-back cell, else a new one.
    #[inline]
    pub(crate) fn into_pooled(
        self: &Arc<Self>,
        mut conn: Conn<M::Connection>,
        now: Instant,
        caller: &'static Location<'static>,
        started: Instant,
        reference: Option<Arc<Self>>,
    ) -> Pooled<M> {
        conn.info.checkouts += 1;
        self.metrics.wait_time(started, now);
        // The leak threshold counts from a precise reading, so no report comes early
        // (`now` may be a coarse one).
        let leak_key = self
            .leaks
            .as_ref()
            .map(|leaks| lock_registry(leaks).insert(conn.info.id, clock::now(), caller));
        let reference = reference.unwrap_or_else(|| Arc::clone(self));
        Pooled::checked_out(reference, conn, now, leak_key)
    }

    /// Opens one connection for a reserved slot, within `connect_timeout`.
    pub(crate) async fn open(&self, slot: SlotGuard<'_, M>) -> Opened<M::Connection, M::Error> {
        let started = clock::now();
        let span = tracing::debug_span!("pool.connect", pool.name = %self.config.name);
        let result = self
            .within(self.config.connect_timeout, self.manager.connect())
            .instrument(span)
            .await;
        match result {
            Some(Ok(raw)) => match slot.connected(raw, started) {
                Some(conn) => {
                    tracing::debug!(pool.name = %self.config.name, connection.id = conn.info.id, "connection opened");
                    Opened::Conn(conn)
                }
                None => Opened::Failed(PoolError::Closed),
            },
            Some(Err(e)) => {
                let text = error_chain_string(&e);
                tracing::warn!(pool.name = %self.config.name, error = %text, "connect failed");
                slot.failed(text);
                Opened::Failed(PoolError::Backend(e))
            }
            None => {
                let after = self.config.connect_timeout.unwrap_or_default();
                let text = match self.manager.target() {
                    Some(target) => format!("connect to {target} timed out after {after:?}"),
                    None => format!("connect timed out after {after:?}"),
                };
                tracing::warn!(pool.name = %self.config.name, "{text}");
                slot.failed(text);
                Opened::Failed(self.timeout_error(TimeoutKind::Connect, after))
            }
        }
    }

    /// Takes a returned connection back: keeps it (or hands it to the first waiter) if
    /// it is usable, else closes it. Takes the returner's reference to the pool, which
    /// a connection parked in the hand-back cell keeps (see `handback.rs`).
    pub(crate) fn return_conn(
        self: Arc<Self>,
        mut conn: Conn<M::Connection>,
        forced: Option<CloseReason>,
    ) {
        let mut verdict = forced;
        let mut dirty = std::thread::panicking();
        if verdict.is_none() {
            match self.judge_return(&mut conn) {
                Ok(ReturnState::Clean) => {}
                Ok(ReturnState::Dirty) => dirty = true,
                Ok(ReturnState::Broken) => verdict = Some(CloseReason::Broken),
                Err(reason) => verdict = Some(reason),
            }
        }
        // Coarse, a fifth of the precise reading's cost on every return: it may lag by
        // several milliseconds, so it only dates the idle spell for `check_interval`
        // and the lifetime below (noticed late at worst). `idle_timeout` counts from
        // upkeep's precise `seen_idle_at`, cleared here for the new spell.
        let now = clock::recent();
        if verdict.is_none() && conn.info.expires_at.is_some_and(|at| at <= now) {
            verdict = Some(CloseReason::Lifetime);
        }
        conn.seen_idle_at = None;
        if verdict.is_none() && !dirty {
            // Parked without the lock unless barred (nobody waits, not closed, not over
            // size): then it, or one it displaced, goes the locked way.
            conn.parked_since = now;
            // Parked, the connection has this reference to the pool, and the pool may
            // be gone the next moment: nothing here touches it after `park`. Anything
            // handed back comes with a reference to go on with.
            match HandBack::park(self, |shared| &shared.hand_back, conn.into_box()) {
                HandedBack::Parked => {}
                HandedBack::Refused(own, shared) => {
                    shared.return_locked(Idle::from_parked(own), None, true);
                }
                HandedBack::Displaced(displaced, shared) => {
                    shared.return_locked(Idle::from_parked(displaced), None, false);
                }
            }
            return;
        }
        let idle = Idle {
            conn,
            idle_since: now,
            dirty,
        };
        self.return_locked(idle, verdict, true);
    }

    /// Lifts the bar waiting callers put on the hand-back cell once the last of them
    /// has left the line (handed a connection, given up, expired), so that returns
    /// park there again; for a holder of the lock, under which alone callers join the
    /// line and raise the bar. Not called where `dispatch` empties the line with room
    /// to open or a back-off verdict: those callers come back through `decide` or
    /// `join_line`, which raise the bar again, so lifting it there would spare only
    /// the returns in between.
    pub(crate) fn unbar_if_nobody_waits(&self, st: &State<M::Connection>) {
        if st.waiters.is_empty() {
            self.hand_back.unbar(bar::WAITERS);
        }
    }

    /// A return under the pool's lock: to the first waiter, else the idle list, unless
    /// `verdict` (or the pool's state) says close it.
    /// `just_returned`: `idle` is the connection being returned now, not one it
    /// displaced from the hand-back cell (see [`Grant::Conn`]).
    fn return_locked(
        &self,
        idle: Idle<M::Connection>,
        verdict: Option<CloseReason>,
        just_returned: bool,
    ) {
        let dirty = idle.dirty;
        let mut wake = WakeList::default();
        let mut closing = ToClose::new();
        {
            let mut st = self.lock();
            if !st.closed && !st.above_max_size() {
                self.hand_back.unbar(bar::OVER_SIZE);
            }
            let kept = match verdict {
                // A closed pool closes it for that reason instead (in `give_back`).
                Some(reason) if !st.closed => {
                    st.close_later(&mut closing, idle.conn, reason);
                    false
                }
                _ => st.give_back(idle, just_returned, &mut wake, &mut closing),
            };
            if kept {
                self.unbar_if_nobody_waits(&st);
                if dirty && !st.idle.is_empty() {
                    // Left idle dirty, it may hold a transaction's locks until its
                    // next checkout: have upkeep reset it now.
                    st.notify_upkeep(&mut wake);
                }
                self.metrics
                    .counts(st.idle.len(), st.in_use(), st.waiters.len());
            }
        }
        wake.wake();
        if !closing.is_empty() {
            self.close_chosen(closing);
        }
    }

    /// An idle connection about to be handed out, unless the driver already knows it
    /// is broken (its socket closed while idle, say): then it is closed instead, which
    /// has the idle peers checked too, as a restart kills them all.
    pub(crate) fn close_if_reported_broken(
        &self,
        mut idle: Idle<M::Connection>,
    ) -> Option<Idle<M::Connection>> {
        if self.reports_broken(&mut idle.conn) {
            self.close_conn(idle.conn, CloseReason::Broken);
            return None;
        }
        Some(idle)
    }

    /// [`Manager::has_broken`], with a panic counting as "broken".
    pub(crate) fn reports_broken(&self, conn: &mut Conn<M::Connection>) -> bool {
        catch_unwind(AssertUnwindSafe(|| self.manager.has_broken(&mut conn.raw))).unwrap_or(true)
    }

    /// Asks the manager and the `after_return` hooks whether a returned connection may
    /// be kept. Their panics count as "no": a panic in `Drop` must not escape.
    fn judge_return(&self, conn: &mut Conn<M::Connection>) -> Result<ReturnState, CloseReason> {
        let judged = catch_unwind(AssertUnwindSafe(|| {
            let conn = conn.data();
            if self.manager.has_broken(&mut conn.raw) {
                return Err(CloseReason::Broken);
            }
            for hook in &self.hooks.after_return {
                if let Err(e) = hook(&mut conn.raw, &conn.info) {
                    tracing::debug!(pool.name = %self.config.name, error = %e, "after_return hook rejected a connection");
                    return Err(CloseReason::HookRejected);
                }
            }
            Ok(self.manager.return_state(&mut conn.raw))
        }));
        judged.unwrap_or_else(|_| {
            tracing::error!(pool.name = %self.config.name, "has_broken, return_state or an after_return hook panicked; closing the connection");
            Err(CloseReason::Broken)
        })
    }

    /// Closes a counted connection, chosen without the lock; see
    /// [`close_counted`](Self::close_counted).
    pub(crate) fn close_conn(&self, conn: Conn<M::Connection>, reason: CloseReason) {
        self.close_counted(std::iter::once((conn, reason)), 0);
    }

    /// Closes the connections chosen under the lock; see
    /// [`close_counted`](Self::close_counted).
    pub(crate) fn close_chosen(&self, chosen: ToClose<M::Connection>) {
        let conns = chosen.into_conns();
        let count = conns.len();
        self.close_counted(conns, count);
    }

    /// Closes connections that are still counted in `size`, the first `chosen` of them
    /// in `State::closing` too: drops them first, outside the lock, and only then
    /// frees their room, so a new connection never exists beside the one it replaces
    /// and `max_size` holds for the server too.
    fn close_counted(
        &self,
        conns: impl IntoIterator<Item = (Conn<M::Connection>, CloseReason)>,
        chosen: usize,
    ) {
        let mut closed = 0;
        let mut suspect = false;
        for (conn, reason) in conns {
            closed += 1;
            suspect |= reason.suspects_peers();
            self.log_close(conn, reason);
        }
        if closed == 0 {
            return;
        }
        let now = clock::now();
        let mut wake = WakeList::default();
        {
            let mut st = self.lock();
            if suspect {
                st.broken_at = Some(now);
                let since_epoch = now.saturating_duration_since(self.epoch).as_nanos();
                let nanos = u64::try_from(since_epoch).unwrap_or(u64::MAX).max(1);
                self.broken_at_hint.store(nanos, Ordering::Release);
            }
            st.chosen_closed(chosen);
            st.release(closed, now, &mut wake);
        }
        wake.wake();
    }

    /// When a connection was last found broken, read without the lock (see
    /// `broken_at_hint`).
    pub(crate) fn broken_at_hint(&self) -> Option<Instant> {
        let nanos = self.broken_at_hint.load(Ordering::Acquire);
        (nanos != 0).then(|| self.epoch + Duration::from_nanos(nanos))
    }

    /// Frees the room of a connection leaving the pool without being closed.
    pub(crate) fn forget_conn(&self) {
        let mut wake = WakeList::default();
        self.lock().release(1, clock::now(), &mut wake);
        wake.wake();
    }

    /// Reports and drops a connection (its room is freed by the caller).
    fn log_close(&self, conn: Conn<M::Connection>, reason: CloseReason) {
        tracing::debug!(
            pool.name = %self.config.name,
            connection.id = conn.info.id,
            reason = reason.as_str(),
            "connection closed"
        );
        self.metrics.closed(reason);
        drop(conn);
    }

    pub(crate) fn leak_done(&self, key: usize) {
        if let Some(leaks) = &self.leaks {
            lock_registry(leaks).remove(key);
        }
    }
}

pub(crate) fn lock_registry(leaks: &Mutex<LeakRegistry>) -> MutexGuard<'_, LeakRegistry> {
    leaks.lock()
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::Shared;
    use crate::get::tests::NoIo;

    /// See `Shared`: the lock and the hand-back cell each start a 128-byte block, and
    /// neither shares one with the other or with the `Arc`'s count before the struct.
    #[test]
    fn the_lock_and_the_hand_back_cell_sit_on_lines_of_their_own() {
        assert!(std::mem::align_of::<Shared<NoIo>>() >= 128);
        let lock = std::mem::offset_of!(Shared<NoIo>, state);
        let cell = std::mem::offset_of!(Shared<NoIo>, hand_back);
        assert_eq!(
            (lock % 128, cell % 128),
            (0, 0),
            "lock at {lock}, cell at {cell}"
        );
        assert_ne!(lock / 128, cell / 128, "lock at {lock}, cell at {cell}");
    }
}

/// The reference to the pool a connection carries through the hand-back cell (see
/// `handback.rs`): nothing leaks it, and nothing makes one up.
#[cfg(all(test, feature = "tokio", not(pool_model), not(feature = "metrics")))]
mod reference_tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::Pool;

    /// Connections that count themselves alive.
    struct Counted(Arc<AtomicUsize>);

    struct Alive(Arc<AtomicUsize>);

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl crate::Manager for Counted {
        type Connection = Alive;
        type Error = Infallible;
        async fn connect(&self) -> Result<Alive, Infallible> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Alive(Arc::clone(&self.0)))
        }
        async fn recycle(
            &self,
            _: &mut Alive,
            _: &crate::ConnectionInfo,
        ) -> Result<(), Infallible> {
            Ok(())
        }
    }

    /// A pool without a runtime (nothing here waits), whose checkouts can be taken
    /// with `try_get` on any thread.
    fn pool() -> (Pool<Counted>, Arc<AtomicUsize>) {
        let alive = Arc::new(AtomicUsize::new(0));
        let pool = Pool::builder(Counted(Arc::clone(&alive)))
            .max_size(2)
            .wait_timeout(None)
            .connect_timeout(None)
            .recycle_timeout(None)
            .runtime(None)
            .build()
            .expect("valid config");
        (pool, alive)
    }

    fn try_get(pool: &Pool<Counted>) -> crate::Pooled<Counted> {
        let mut get = std::pin::pin!(pool.try_get());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(get.as_mut(), &mut cx) {
            std::task::Poll::Ready(conn) => conn.expect("a connection"),
            std::task::Poll::Pending => panic!("try_get waited"),
        }
    }

    #[tokio::test]
    async fn a_checkout_from_the_cell_holds_the_reference_its_return_left_there() {
        let (pool, _alive) = pool();
        drop(pool.get().await.expect("a connection"));
        assert!(pool.shared.hand_back.holds_idle(), "parked");
        assert_eq!(
            Arc::strong_count(&pool.shared),
            2,
            "the pool's and the cell's"
        );
        let conn = pool.get().await.expect("the parked one");
        assert!(!pool.shared.hand_back.holds_idle());
        assert_eq!(
            Arc::strong_count(&pool.shared),
            2,
            "the pool's and the checkout's"
        );
        drop(conn);
        assert_eq!(
            Arc::strong_count(&pool.shared),
            2,
            "the pool's and the cell's"
        );
    }

    #[tokio::test]
    async fn the_last_handle_frees_a_pool_whose_connection_is_parked() {
        let (pool, alive) = pool();
        let clone = pool.clone();
        drop(pool.get().await.expect("a connection"));
        drop(clone);
        assert!(
            pool.shared.hand_back.holds_idle(),
            "a clone's drop leaves the cell open"
        );
        let pool_state = Arc::downgrade(&pool.shared);
        drop(pool);
        assert!(
            pool_state.upgrade().is_none(),
            "the parked connection kept the pool alive"
        );
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "the connection was not dropped"
        );
    }

    /// Runs, 2,000 times, what `elsewhere` makes of a fresh pool on another thread
    /// while this one drops the pool's handle: whichever comes first, the pool and its
    /// connections go with the last of them.
    fn race_the_last_handle<F: FnOnce() + Send + 'static>(elsewhere: impl Fn(&Pool<Counted>) -> F) {
        for _ in 0..2_000 {
            let (pool, alive) = pool();
            let other = std::thread::spawn(elsewhere(&pool));
            let pool_state = Arc::downgrade(&pool.shared);
            drop(pool);
            other.join().expect("the other thread did not panic");
            assert!(
                pool_state.upgrade().is_none(),
                "the pool outlived everything"
            );
            assert_eq!(alive.load(Ordering::SeqCst), 0);
        }
    }

    /// A return, parking or refused, racing the last handle.
    #[test]
    fn a_return_racing_the_last_handle_lets_the_pool_go() {
        race_the_last_handle(|pool| {
            let returned = try_get(pool);
            drop(try_get(pool));
            move || drop(returned)
        });
    }

    /// The same with a checkout that came from the cell (holding the reference its
    /// return left there) and a second handle dropped beside it.
    #[test]
    fn a_checkout_from_the_cell_racing_the_last_handle_lets_the_pool_go() {
        race_the_last_handle(|pool| {
            drop(try_get(pool));
            let from_the_cell = try_get(pool);
            let clone = pool.clone();
            move || {
                drop(from_the_cell);
                drop(clone);
            }
        });
    }

    #[tokio::test]
    async fn a_checkout_that_outlives_its_pool_frees_it_on_return() {
        let (pool, alive) = pool();
        let conn = pool.get().await.expect("a connection");
        let pool_state = Arc::downgrade(&pool.shared);
        drop(pool);
        assert!(pool_state.upgrade().is_some(), "the checkout holds it");
        drop(conn);
        assert!(
            pool_state.upgrade().is_none(),
            "the return parked it in the cell"
        );
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }
}

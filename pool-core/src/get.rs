//! Taking a connection: the [`Get`] future behind `Pool::get`, `get_timeout` and
//! `try_get`.
//!
//! The first poll tries the fast path synchronously: take the connection returned last
//! from the hand-back cell (`handback.rs`) without a lock or, failing that, the next
//! idle connection under a lock held for nothing else and, if it needs no check, return
//! it. A caller
//! that must wait for a connection to come back waits in place ([`GetState::Waiting`]):
//! its place in line, plus a timer armed only when it has a deadline; a connection
//! handed to it that needs no check becomes a checkout synchronously, as on the fast
//! path. Only a caller that must open a connection, check one, or retry goes on to the
//! slow path, an async state machine that is boxed so the common paths do not carry
//! (and move) its size.
//!
//! Every intermediate state owns what it holds through a guard ([`TakenIdle`],
//! [`SlotGuard`], [`WaitTurn`], [`Pooled`]), so dropping the future at any point gives
//! back exactly what it held.

use std::future::{poll_fn, Future};
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::handback::bar;
use crate::metrics::CloseReason;
use crate::opening::Raced;
use crate::pool::{Opened, Shared, SlotGuard};
use crate::state::{Grant, Idle, Open, State, WakeList, Watchdog};
use crate::sync::MutexGuard;
use crate::waiters::{Place, Polled, WaitKey};
use crate::{clock, Manager, PoolError, Pooled, TimeoutKind};

/// How long a `get` may wait for a connection to come back.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    Forever,
    No,
    For(Duration),
}

impl Wait {
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Self {
        match timeout {
            None => Wait::Forever,
            Some(d) if d.is_zero() => Wait::No,
            Some(d) => Wait::For(d),
        }
    }

    /// When a `get` that started at `started` (a [`clock::now`] reading, so the wait
    /// never ends early) must give up waiting.
    fn deadline(self, started: Instant) -> Option<Instant> {
        match self {
            Wait::Forever => None,
            Wait::No => Some(started),
            // A limit too long for an `Instant` (`Duration::MAX` for "as long as it
            // takes") never ends.
            Wait::For(limit) => started.checked_add(limit),
        }
    }

    /// The bound a wait timeout reports.
    fn bound(self) -> Duration {
        match self {
            Wait::For(limit) => limit,
            Wait::Forever | Wait::No => Duration::ZERO,
        }
    }
}

type GetResult<M> = Result<Pooled<M>, PoolError<<M as Manager>::Error>>;

/// The pool's state, locked.
type Locked<'a, M> = MutexGuard<'a, State<<M as Manager>::Connection>>;

/// What the fast path finds: an idle connection, with the reference to the pool it
/// carried if it comes from the hand-back cell, or else the state, locked.
type NextIdle<'a, M> = Result<(TakenIdle<'a, M>, Option<Arc<Shared<M>>>), Locked<'a, M>>;

/// The future of [`Pool::get`](crate::Pool::get) and its siblings.
///
/// Cancel-safe: dropping it at any point gives back what it held (its place in line,
/// a connection handed to it, the room for a connection it was opening, a connection
/// it was checking).
///
/// It does not spend tokio's cooperative budget: a `get` that finds an idle connection
/// is ready on its first poll, as `bb8`'s and `qp`'s are, instead of yielding to the
/// scheduler once the budget runs out as `tokio::sync::Semaphore`-based pools do. The
/// budget is spent where the work is, on the connection's I/O; a task that only loops
/// over `get` and drop with no other await never yields, which is the caller's to
/// avoid.
#[must_use = "futures do nothing unless awaited"]
pub struct Get<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    state: GetState<'a, M>,
}

/// A timer that resolves when a wait's limit passes.
type Timer<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

enum GetState<'a, M: Manager> {
    Start {
        wait: Wait,
        caller: &'static Location<'static>,
    },
    /// In line, with nothing else under way.
    Waiting {
        turn: WaitTurn<'a, M>,
        wait: Wait,
        caller: &'static Location<'static>,
        started: Instant,
        /// When to stop waiting: the wait's deadline or, while connects back off, the
        /// next attempt, whichever is first.
        wake_at: Option<Instant>,
        /// Armed on the first poll that finds no grant, if `wake_at` is set.
        timer: Option<Timer<'a>>,
    },
    Slow(Pin<Box<dyn Future<Output = GetResult<M>> + Send + 'a>>),
    Done,
}

impl<'a, M: Manager> Get<'a, M> {
    pub(crate) fn new(
        shared: &'a Arc<Shared<M>>,
        wait: Wait,
        caller: &'static Location<'static>,
    ) -> Self {
        Get {
            shared,
            state: GetState::Start { wait, caller },
        }
    }
}

impl<M: Manager> Future for Get<'_, M> {
    type Output = GetResult<M>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Joined the line in this very poll, with this poll's waker: a grant would wake
        // it, so there is nothing to look at yet.
        let mut just_joined = false;
        if let GetState::Start { wait, caller } = this.state {
            let shared = this.shared;
            if matches!(wait, Wait::For(_)) && shared.runtime.is_none() {
                this.state = GetState::Done;
                return Poll::Ready(Err(PoolError::NoRuntime));
            }
            let locked = match shared.take_next_idle() {
                Ok((taken, reference)) => {
                    // The coarse clock serves the fast path's question (expired? due a
                    // check?), where an answer a few milliseconds late is harmless.
                    let now = clock::recent();
                    match shared.checkout_now(taken, now, caller, now, reference) {
                        Ok(pooled) => {
                            // The start state owns nothing: forgotten rather than dropped,
                            // which spares the fast path a call to the state's drop glue.
                            std::mem::forget(std::mem::replace(&mut this.state, GetState::Done));
                            return Poll::Ready(Ok(pooled));
                        }
                        Err(Some(taken)) => {
                            this.state =
                                shared.slow(wait, caller, clock::now(), Step::Idle(taken), None);
                            return this.poll_slow(cx);
                        }
                        // Closed as broken: look again.
                        Err(None) => None,
                    }
                }
                Err(locked) => Some(locked),
            };
            // Past the fast path the caller may wait. Its deadline counts from its start,
            // so with one the start is read precisely (counted from a coarse reading, the
            // deadline could come early). Without one the coarse reading serves: it only
            // dates the wait for metrics (where it is precise anyway) and is compared
            // with idle stamps that are coarse too; `decide` reads the precise clock for
            // the one question it would answer late, whether a back-off is over.
            let now = match wait {
                Wait::For(_) => clock::now(),
                Wait::Forever | Wait::No => clock::recent(),
            };
            // `Wait::No` has a deadline too, but never joins the line.
            let deadline = wait.deadline(now);
            let next = match shared.decide(locked, now, wait, cx.waker(), deadline, None) {
                Step::Idle(taken) => match shared.checkout_now(taken, now, caller, now, None) {
                    Ok(pooled) => {
                        std::mem::forget(std::mem::replace(&mut this.state, GetState::Done));
                        return Poll::Ready(Ok(pooled));
                    }
                    Err(unready) => shared.slow(wait, caller, now, Step::after(unready, now), None),
                },
                Step::Wait(turn, retry_at) => {
                    just_joined = true;
                    GetState::Waiting {
                        turn,
                        wait,
                        caller,
                        started: now,
                        wake_at: earliest(deadline, retry_at),
                        timer: None,
                    }
                }
                step => shared.slow(wait, caller, now, step, None),
            };
            // The start state owns nothing (see above).
            std::mem::forget(std::mem::replace(&mut this.state, next));
        }
        if let GetState::Waiting {
            turn,
            wait,
            caller,
            started,
            wake_at,
            timer,
        } = &mut this.state
        {
            let (wait, caller, started) = (*wait, *caller, *started);
            // Should it have to wait again, it rejoins where it stood.
            let place = Some(turn.place);
            let shared = this.shared;
            let polled = if just_joined {
                Poll::Pending
            } else {
                Pin::new(&mut *turn).poll(cx)
            };
            let next = match polled {
                Poll::Ready(Grant::Conn(idle, just_returned)) => {
                    // A connection handed straight over by its return, which read the
                    // coarse clock a moment ago: that reading serves as "now". One that
                    // sat idle before (handed over by `dispatch`, `retain` or a waiter that
                    // gave up) may have become due meanwhile.
                    let now = if just_returned {
                        idle.idle_since
                    } else {
                        clock::recent()
                    };
                    let taken = TakenIdle {
                        shared,
                        idle: Some(idle),
                        broken_at: shared.broken_at_hint(),
                    };
                    match shared.checkout_now(taken, now, caller, started, None) {
                        Ok(pooled) => {
                            this.leave_line_granted();
                            return Poll::Ready(Ok(pooled));
                        }
                        Err(unready) => {
                            shared.slow(wait, caller, started, Step::after(unready, now), place)
                        }
                    }
                }
                Poll::Ready(Grant::Expired) => {
                    this.state = GetState::Done;
                    return Poll::Ready(Err(shared.timeout_error(TimeoutKind::Wait, wait.bound())));
                }
                Poll::Ready(grant) => {
                    shared.slow(wait, caller, started, Step::Granted(grant), place)
                }
                Poll::Pending => {
                    // The watchdog keeps this caller's deadline: no timer of its own.
                    if turn.watched {
                        return Poll::Pending;
                    }
                    let Some(wake_at) = *wake_at else {
                        return Poll::Pending;
                    };
                    let timer = timer.get_or_insert_with(|| shared.timer_until(wake_at));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = clock::now();
                    if wait.deadline(started).is_some_and(|end| end <= now) {
                        // Leaving the line gives back anything granted meanwhile.
                        this.state = GetState::Done;
                        return Poll::Ready(Err(
                            shared.timeout_error(TimeoutKind::Wait, wait.bound())
                        ));
                    }
                    // The back-off ended while in line: look again, as a connect
                    // attempt may be due. Leaving the line gives back any grant.
                    shared.slow(wait, caller, started, Step::look_again(now), place)
                }
            };
            this.state = next;
        }
        this.poll_slow(cx)
    }
}

impl<M: Manager> Get<'_, M> {
    /// Leaves the waiting state once its grant is taken. Its turn owns nothing then,
    /// so only a timer is dropped and the rest forgotten: the state's drop glue cost
    /// as much as the wait queue's own bookkeeping for the grant.
    #[inline]
    fn leave_line_granted(&mut self) {
        if let GetState::Waiting { turn, timer, .. } =
            std::mem::replace(&mut self.state, GetState::Done)
        {
            debug_assert!(turn.key.is_none(), "the grant was taken");
            std::mem::forget(turn);
            drop(timer);
        }
    }

    /// Polls the slow path, which the start and waiting states have just been left for.
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<GetResult<M>> {
        match &mut self.state {
            GetState::Slow(slow) => {
                let output = ready!(slow.as_mut().poll(cx));
                self.state = GetState::Done;
                Poll::Ready(output)
            }
            GetState::Done => panic!("`Get` polled after completion"),
            GetState::Start { .. } | GetState::Waiting { .. } => {
                unreachable!("the start and waiting states were just left")
            }
        }
    }
}

/// An idle connection taken out of the pool (still counted in `size`); closed if
/// dropped before it becomes a checkout.
pub(crate) struct TakenIdle<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    idle: Option<Idle<M::Connection>>,
    broken_at: Option<Instant>,
}

impl<M: Manager> TakenIdle<'_, M> {
    fn into_idle(mut self) -> Idle<M::Connection> {
        self.idle.take().expect("taken once")
    }
}

impl<M: Manager> Drop for TakenIdle<'_, M> {
    fn drop(&mut self) {
        if let Some(idle) = self.idle.take() {
            self.shared.close_conn(idle.conn, CloseReason::Cancelled);
        }
    }
}

/// A caller's place in line. Gives back its place, or whatever it was granted, when
/// dropped before it took the grant.
pub(crate) struct WaitTurn<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    key: Option<WaitKey<Grant<M::Connection>>>,
    /// Where it first stood in line.
    place: Place,
    /// The pool's watchdog keeps this caller's deadline (as of its last look).
    watched: bool,
}

impl<M: Manager> Future for WaitTurn<'_, M> {
    type Output = Grant<M::Connection>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        assert!(this.key.is_some(), "WaitTurn polled after completion");
        // Woken by its grant, as a caller mostly is: taken without the lock, which the
        // return that granted it has only just released, on another core as often as
        // not.
        // SAFETY: the key came from the queue in `shared`'s state, which the borrow of
        // `shared` keeps alive.
        #[allow(unsafe_code)]
        if let Some(grant) = unsafe { WaitKey::try_take(&mut this.key) } {
            return Poll::Ready(match grant {
                // `close` raises this bar with `closed`, under the lock, for good: a
                // caller that sees it finds the pool closed under the lock below.
                Grant::Conn(idle, ..) if this.shared.hand_back.is_barred_for(bar::CLOSED) => {
                    this.closed_since_granted(this.shared.lock(), idle)
                }
                grant => grant,
            });
        }
        let mut st = this.shared.lock();
        match st.waiters.poll(&mut this.key, cx.waker()) {
            Polled::Ready(Grant::Conn(idle, ..)) if st.closed => {
                Poll::Ready(this.closed_since_granted(st, idle))
            }
            Polled::Ready(grant) => Poll::Ready(grant),
            Polled::Pending { watched } => {
                this.watched = watched;
                Poll::Pending
            }
        }
    }
}

impl<M: Manager> WaitTurn<'_, M> {
    /// A connection granted before `close` and taken after: closed, as its return would
    /// be.
    fn closed_since_granted(
        &self,
        mut st: Locked<'_, M>,
        idle: Idle<M::Connection>,
    ) -> Grant<M::Connection> {
        debug_assert!(st.closed, "only `close` raises the bar for `CLOSED`");
        let mut closing = crate::state::ToClose::new();
        let mut wake = WakeList::default();
        st.give_back(idle, false, &mut wake, &mut closing);
        drop(st);
        wake.wake();
        self.shared.close_chosen(closing);
        Grant::Closed
    }
}

impl<M: Manager> Drop for WaitTurn<'_, M> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let now = clock::now();
        let mut wake = crate::state::WakeList::default();
        let mut closing = crate::state::ToClose::new();
        {
            let mut st = self.shared.lock();
            match st.waiters.cancel(key) {
                // Handed over before `close` (which could not reach it: parked idle it
                // would outlive the close) or a resize below the pool's size: closed,
                // as its return would have been.
                Some(Grant::Conn(idle, ..)) => {
                    st.give_back(idle, false, &mut wake, &mut closing);
                }
                Some(Grant::Slot) => st.unreserve(now, &mut wake),
                Some(
                    Grant::Closed
                    | Grant::Unavailable { .. }
                    | Grant::Retry { .. }
                    | Grant::Expired,
                )
                | None => {}
            }
            self.shared.unbar_if_nobody_waits(&st);
        }
        wake.wake();
        self.shared.close_chosen(closing);
    }
}

/// What a caller does next, each holding its guard.
pub(crate) enum Step<'a, M: Manager> {
    /// Check out this idle connection (checking it first if due).
    Idle(TakenIdle<'a, M>),
    /// Open a connection in this room.
    Open(SlotGuard<'a, M>),
    /// Wait in line; `Some(retry_at)` while connects back off, to look again when the
    /// next attempt is due.
    Wait(WaitTurn<'a, M>, Option<Instant>),
    /// Go on as this grant says (a connection, room, a failure, a retry).
    Granted(Grant<M::Connection>),
    /// Nothing now, and the caller does not wait.
    Exhausted,
}

impl<'a, M: Manager> Step<'a, M> {
    /// Look at the pool again, as after a wait for a back-off that has just ended.
    fn look_again(now: Instant) -> Self {
        Step::Granted(Grant::Retry { retry_at: now })
    }

    /// Where the slow path picks up after [`checkout_now`](Shared::checkout_now)
    /// could not hand a connection out: checking the one it gives back, or, if it
    /// closed it as broken, looking again.
    fn after(unready: Option<TakenIdle<'a, M>>, now: Instant) -> Self {
        unready.map_or_else(|| Step::look_again(now), Step::Idle)
    }
}

impl<M: Manager> Shared<M> {
    /// Looks at the pool once, under one lock, and decides the caller's next step
    /// (`now` may be a coarse reading). A caller who must wait joins the line with
    /// `waker`, and with `watch`, its deadline, handed to the pool's watchdog if it can
    /// keep it (else the caller keeps its own timer).
    pub(crate) fn decide<'a>(
        self: &'a Arc<Self>,
        locked: Option<Locked<'a, M>>,
        now: Instant,
        wait: Wait,
        waker: &Waker,
        watch: Option<Instant>,
        place: Option<Place>,
    ) -> Step<'a, M> {
        enum Raw<C> {
            Idle(Idle<C>, Option<Instant>),
            Open,
            Wait(WaitKey<Grant<C>>, Place, Option<Instant>, bool),
            Granted(Grant<C>),
            Exhausted,
        }
        let mut watchdog_waker = None;
        let mut spawn_watchdog = false;
        let mut wake = WakeList::default();
        let raw = {
            let mut st = locked.unwrap_or_else(|| self.lock());
            if !st.closed && st.idle.is_empty() {
                // This caller may wait.
                self.bar_for_waiters(&mut st, &mut wake);
            }
            let raw = if st.closed {
                Raw::Granted(Grant::Closed)
            } else if let Some(idle) = st.take_idle() {
                Raw::Idle(idle, st.broken_at)
            } else {
                // `now` may be a coarse reading, which could see a back-off end late
                // and tell a caller the pool is down when a probe is due: during one
                // the clock is read precisely.
                let now = if st.backoff.is_some() {
                    clock::now()
                } else {
                    now
                };
                match st.open_permission(now) {
                    Open::Now => {
                        st.reserve();
                        Raw::Open
                    }
                    Open::BackingOff { retry_at } if st.in_use() == 0 && st.connecting == 0 => {
                        Raw::Granted(st.backoff_grant(retry_at))
                    }
                    _ if matches!(wait, Wait::No) => Raw::Exhausted,
                    Open::BackingOff { retry_at } => {
                        let (key, place) = st.waiters.join(Some(waker.clone()), None, place);
                        Raw::Wait(key, place, Some(retry_at), false)
                    }
                    Open::Later => {
                        let watch = watch
                            .filter(|&deadline| self.watch(&mut st, deadline, &mut spawn_watchdog));
                        if watch.is_some() {
                            if let Watchdog::Parked(parked) = &mut st.watchdog {
                                watchdog_waker = parked.take();
                                st.watchdog = Watchdog::Running;
                            }
                        }
                        let (key, place) = st.waiters.join(Some(waker.clone()), watch, place);
                        Raw::Wait(key, place, None, watch.is_some())
                    }
                }
            };
            self.unbar_if_nobody_waits(&st);
            raw
        };
        // Before the wakers run: should one of them panic, the watchdog the state
        // counts as running exists all the same.
        if spawn_watchdog {
            self.spawn_watchdog();
        }
        wake.wake();
        if let Some(waker) = watchdog_waker {
            waker.wake();
        }
        match raw {
            Raw::Idle(idle, broken_at) => Step::Idle(TakenIdle {
                shared: self,
                idle: Some(idle),
                broken_at,
            }),
            Raw::Open => Step::Open(SlotGuard::adopt(self)),
            Raw::Wait(key, place, retry_at, watched) => Step::Wait(
                WaitTurn {
                    shared: self,
                    key: Some(key),
                    place,
                    watched,
                },
                retry_at,
            ),
            Raw::Granted(grant) => Step::Granted(grant),
            Raw::Exhausted => Step::Exhausted,
        }
    }

    /// Whether the watchdog can keep a deadline for a caller about to join the line.
    /// If there is none yet but one can be spawned, it is counted as running and
    /// `spawn` is set: the caller spawns it once the lock is released, because a task
    /// the runtime drops at once (it is shutting down) hands its deadlines back under
    /// this same lock.
    fn watch(
        self: &Arc<Self>,
        st: &mut State<M::Connection>,
        deadline: Instant,
        spawn: &mut bool,
    ) -> bool {
        if !st.waiters.in_watch_order(deadline) {
            return false;
        }
        match st.watchdog {
            // It would wake too late for this one.
            Watchdog::Sleeping(until) => until <= deadline,
            Watchdog::Running | Watchdog::Parked(_) => true,
            Watchdog::Absent => {
                *spawn = self.can_spawn_watchdog();
                if *spawn {
                    st.watchdog = Watchdog::Running;
                }
                *spawn
            }
        }
    }

    /// Whether the runtime is tokio and this is inside it.
    fn can_spawn_watchdog(&self) -> bool {
        #[cfg(all(feature = "tokio", not(pool_model)))]
        if matches!(self.runtime, Some(crate::Runtime::Tokio1)) {
            return tokio::runtime::Handle::try_current().is_ok();
        }
        false
    }

    /// Spawns the watchdog that [`watch`](Self::watch) counted as running.
    fn spawn_watchdog(self: &Arc<Self>) {
        #[cfg(all(feature = "tokio", not(pool_model)))]
        crate::watchdog::spawn(self);
    }

    /// Joins the back of the line, with no deadline for the watchdog.
    #[cfg(all(feature = "tokio", not(pool_model)))]
    pub(crate) fn join_line<'a>(self: &'a Arc<Self>, waker: &Waker) -> WaitTurn<'a, M> {
        let mut wake = WakeList::default();
        let (key, place) = {
            let mut st = self.lock();
            let (key, place) = st.waiters.push_back(Some(waker.clone()), None);
            if st.closed {
                // Closed since this caller decided to open a connection: `close` told
                // everyone then in line, so the line is this caller alone. Told now,
                // it need not wait for its connect to end.
                debug_assert_eq!(st.waiters.len(), 1, "this caller alone");
                let popped = st.waiters.pop_front().expect("this caller is in line");
                wake.push(st.waiters.grant(popped, Grant::Closed));
            } else {
                // As in `decide`; the connection parked there may go to this caller.
                self.bar_for_waiters(&mut st, &mut wake);
                // A connection may have gone idle since this caller decided to open one
                // (returned while nobody waited, into the list with FIFO reuse): the
                // first in line, perhaps this caller, takes it rather than waiting out
                // a connect.
                if let Some(idle) = st.take_idle() {
                    st.put_back(idle, false, &mut wake);
                }
            }
            (key, place)
        };
        wake.wake();
        WaitTurn {
            shared: self,
            key: Some(key),
            place,
            watched: false,
        }
    }

    /// The fast path: the next idle connection, taken under a lock held for nothing
    /// else, so callers on other threads wait on it as briefly as possible. Whether it
    /// can be handed out as it is ([`checkout_now`](Self::checkout_now)) is asked after
    /// the lock is released. With no idle connection the caller goes on to
    /// [`decide`](Self::decide) with the lock still held (one lock for both). A
    /// connection from the hand-back cell comes with the reference to the pool it
    /// carried there, for its checkout to hold (see `handback.rs`).
    #[inline]
    fn take_next_idle<'a>(self: &'a Arc<Self>) -> NextIdle<'a, M> {
        // The connection returned last, if it is parked and nothing bars the cell.
        if let Some((parked, reference)) = self.hand_back.take() {
            let taken = TakenIdle {
                shared: self,
                idle: Some(Idle::from_parked(parked)),
                broken_at: self.broken_at_hint(),
            };
            return Ok((taken, Some(reference)));
        }
        let mut st = self.lock();
        if st.closed {
            return Err(st);
        }
        match st.take_idle() {
            Some(idle) => {
                let broken_at = st.broken_at;
                drop(st);
                Ok((
                    TakenIdle {
                        shared: self,
                        idle: Some(idle),
                        broken_at,
                    },
                    None,
                ))
            }
            None => Err(st),
        }
    }

    /// Whether an idle connection can be handed out without anything done to it: not
    /// expired and not due a check. (The driver's own `has_broken` and the
    /// `before_checkout` hooks are asked separately.)
    fn ready_as_is(
        &self,
        idle: &Idle<M::Connection>,
        broken_at: Option<Instant>,
        now: Instant,
    ) -> bool {
        idle.conn.info.expires_at.is_none_or(|at| at > now)
            && self.check_reason(idle, broken_at, now).is_none()
    }

    /// An idle connection that is not expired, not known broken, needs no check and
    /// has no `before_checkout` hook to run becomes a checkout at once. One that needs
    /// more comes back (`Err(Some)`) for the slow path; one the driver reports broken
    /// is closed here (`Err(None)`), so `has_broken` is asked once per checkout. The
    /// checkout holds `reference` to the pool if there is one (see
    /// [`take_next_idle`](Self::take_next_idle)), else a new one.
    #[inline]
    fn checkout_now<'a>(
        self: &'a Arc<Self>,
        mut taken: TakenIdle<'a, M>,
        now: Instant,
        caller: &'static Location<'static>,
        started: Instant,
        reference: Option<Arc<Self>>,
    ) -> Result<Pooled<M>, Option<TakenIdle<'a, M>>> {
        let broken_at = taken.broken_at;
        let idle = taken.idle.as_mut().expect("taken once");
        if !self.hooks.before_checkout.is_empty() || !self.ready_as_is(idle, broken_at, now) {
            return Err(Some(taken));
        }
        let idle = self
            .close_if_reported_broken(taken.into_idle())
            .ok_or(None)?;
        Ok(self.into_pooled(idle.conn, now, caller, started, reference))
    }

    /// A timer that fires at `at`: tokio's own sleep where the runtime is tokio (it
    /// costs no wrapper future), else the runtime's timeout around a future that never
    /// ends. Without a runtime it never fires.
    fn timer_until<'a>(self: &'a Arc<Self>, at: Instant) -> Timer<'a> {
        #[cfg(feature = "tokio")]
        if matches!(self.runtime, Some(crate::Runtime::Tokio1)) {
            return Box::pin(tokio::time::sleep_until(at.into()));
        }
        let limit = at.saturating_duration_since(clock::now());
        Box::pin(async move {
            let _ = self.within(Some(limit), std::future::pending::<()>()).await;
        })
    }

    /// Goes on to the slow path from `step`.
    fn slow<'a>(
        self: &'a Arc<Self>,
        wait: Wait,
        caller: &'static Location<'static>,
        started: Instant,
        step: Step<'a, M>,
        place: Option<Place>,
    ) -> GetState<'a, M> {
        GetState::Slow(Box::pin(self.acquire(wait, caller, started, step, place)))
    }

    /// The slow path, starting from the step the first poll decided.
    async fn acquire<'a>(
        self: &'a Arc<Self>,
        wait: Wait,
        caller: &'static Location<'static>,
        started: Instant,
        first: Step<'a, M>,
        mut place: Option<Place>,
    ) -> GetResult<M> {
        // Read afresh, and precisely: the fast path may have decided on a coarse
        // reading, and what follows (checks, connects, back-offs) costs far more.
        let mut now = clock::now();
        let deadline = wait.deadline(started);
        let mut step = first;
        loop {
            let grant = match step {
                // Its `broken_at`, read under the lock, is no more recent than the hint
                // the grant's taker reads below.
                Step::Idle(taken) => Grant::Conn(taken.into_idle(), false),
                Step::Open(slot) => match self.open_or_take(slot).await {
                    Raced::Opened(opened) => return self.opened_for(opened, caller, started).await,
                    Raced::Took(grant) => {
                        now = clock::now();
                        grant
                    }
                },
                Step::Granted(grant) => grant,
                Step::Exhausted => {
                    return Err(self.timeout_error(TimeoutKind::Wait, Duration::ZERO))
                }
                Step::Wait(turn, retry_at) => {
                    place.get_or_insert(turn.place);
                    let wake_at = earliest(deadline, retry_at);
                    let limit = wake_at.map(|at| at.saturating_duration_since(now));
                    let span =
                        tracing::debug_span!("pool.acquire.wait", pool.name = %self.config.name);
                    let waited = self.within(limit, turn).instrument(span).await;
                    now = clock::now();
                    match waited {
                        Some(grant) => grant,
                        None if deadline.is_some_and(|end| end <= now) => {
                            return Err(self.timeout_error(TimeoutKind::Wait, wait.bound()));
                        }
                        // The back-off ended while in line: look again, as a
                        // connect attempt may be due.
                        None => Grant::Retry { retry_at: now },
                    }
                }
            };
            // A caller whose turn brought a connection that came to nothing (it failed
            // its check, or was found broken) rejoins the line where it first stood.
            // One whose back-off ended joins at the back: those come back together, in
            // their first order already, and placing each would cost a walk of the line.
            let mut served_in_vain = false;
            match grant {
                Grant::Conn(idle, _) => {
                    let broken_at = self.broken_at_hint();
                    if let Some(pooled) =
                        self.checkout(idle, broken_at, now, caller, started).await?
                    {
                        return Ok(pooled);
                    }
                    served_in_vain = true;
                    now = clock::now();
                }
                Grant::Slot => {
                    step = Step::Open(SlotGuard::adopt(self));
                    continue;
                }
                Grant::Closed => return Err(PoolError::Closed),
                Grant::Expired => return Err(self.timeout_error(TimeoutKind::Wait, wait.bound())),
                Grant::Retry { retry_at } if retry_at > now => {
                    let limit = deadline;
                    if self.runtime.is_none() || limit.is_some_and(|end| end <= now) {
                        // No time to wait out the back-off: report the failure.
                        let last_error = self.lock().last_error_text();
                        return Err(PoolError::Unavailable {
                            last_error,
                            retry_in: retry_at.saturating_duration_since(now),
                        });
                    }
                    let until = limit.map_or(retry_at, |end| end.min(retry_at));
                    let pause = until.saturating_duration_since(now);
                    let _ = self.within(Some(pause), std::future::pending::<()>()).await;
                    now = clock::now();
                    if limit.is_some_and(|end| end <= now) {
                        return Err(self.timeout_error(TimeoutKind::Wait, wait.bound()));
                    }
                }
                Grant::Retry { .. } => {}
                Grant::Unavailable {
                    last_error,
                    retry_at,
                } => {
                    return Err(PoolError::Unavailable {
                        last_error,
                        retry_in: retry_at.saturating_duration_since(now),
                    })
                }
            }
            // Back in line after a failed attempt its deadline may be out of the
            // line's order: it keeps its own timer.
            let rejoin_at = place.filter(|_| served_in_vain);
            step = poll_fn(|cx| {
                Poll::Ready(self.decide(None, now, wait, cx.waker(), None, rejoin_at))
            })
            .await;
        }
    }

    /// Hands the caller the connection its connect opened, after `after_connect`.
    async fn opened_for(
        self: &Arc<Self>,
        opened: Opened<M::Connection, M::Error>,
        caller: &'static Location<'static>,
        started: Instant,
    ) -> GetResult<M> {
        match opened {
            Opened::Conn(conn) => {
                let opened_at = conn.info.created_at;
                let mut pooled = self.into_pooled(conn, opened_at, caller, started, None);
                pooled.run_after_connect().await.map(|()| pooled)
            }
            Opened::Failed(err) => Err(err),
        }
    }
}

/// The earlier of two optional moments.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
#[cfg(all(test, target_pointer_width = "64"))]
pub(crate) mod tests {
    use std::convert::Infallible;

    /// A manager with no I/O, for tests of the pool's own sizes and layout.
    pub(crate) struct NoIo;

    #[async_trait::async_trait]
    impl crate::Manager for NoIo {
        type Connection = u64;
        type Error = Infallible;
        async fn connect(&self) -> Result<u64, Infallible> {
            Ok(0)
        }
        async fn recycle(&self, _: &mut u64, _: &crate::ConnectionInfo) -> Result<(), Infallible> {
            Ok(())
        }
    }

    /// What a waiting caller costs the pool: its `get` future plus its slot and its
    /// entries in line (the bound is 200 bytes; slots come 32 to a chunk, so
    /// with 1,000 callers waiting or more the last chunk's unused slots add 1/32 at
    /// most; the ring grows by a quarter at most and holds at most two entries per
    /// waiting caller, plus 17).
    #[test]
    fn a_waiting_caller_costs_under_200_bytes() {
        let future = std::mem::size_of::<super::Get<'static, NoIo>>();
        let slot = crate::waiters::slot_size::<crate::state::Grant<u64>>();
        assert!(future <= 104, "the get future grew to {future} bytes");
        assert!(slot <= 56, "a slot in line grew to {slot} bytes");
        let entry = crate::waiters::entry_size();
        assert!(entry <= 8, "an entry in line grew to {entry} bytes");
        assert!(future + slot * 33 / 32 + 2 * entry * 5 / 4 < 200);
    }

    /// A checkout is copied through every caller's future and `Result`: the guard is
    /// two pointers, as its bookkeeping lives in the connection's box. (The result is
    /// as large as `PoolError`, whose `Unavailable` holds a `String` and a `Duration`.)
    #[test]
    fn a_checkout_is_two_pointers() {
        let pooled = std::mem::size_of::<crate::Pooled<NoIo>>();
        assert_eq!(pooled, 16, "the checkout guard grew to {pooled} bytes");
        let result = std::mem::size_of::<super::GetResult<NoIo>>();
        assert!(result <= 48, "the get's result grew to {result} bytes");
    }
}

/// A caller that decided to open a connection joins the line once its connect is under
/// way, and the pool can change in between: a connection can go idle, or the pool can
/// close.
#[cfg(all(test, feature = "tokio", not(pool_model)))]
mod join_line_tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::task::Poll;
    use std::time::Duration;

    use crate::{Pool, PoolError, Reuse};

    /// What a second connect does when first polled, as another task would between the
    /// caller's decision to open and its joining the line.
    type Act = Box<dyn FnOnce() + Send>;

    /// A manager whose second connect, when first polled, runs the act stashed in it
    /// and then takes a minute.
    #[derive(Default)]
    struct ActsWhileConnecting {
        act: Arc<Mutex<Option<Act>>>,
        connects: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl crate::Manager for ActsWhileConnecting {
        type Connection = u32;
        type Error = Infallible;
        async fn connect(&self) -> Result<u32, Infallible> {
            let n = {
                let mut connects = self.connects.lock().unwrap();
                *connects += 1;
                *connects
            };
            if n > 1 {
                let act = self.act.lock().unwrap().take().expect("an act stashed");
                act();
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(n)
        }
        async fn recycle(&self, _: &mut u32, _: &crate::ConnectionInfo) -> Result<(), Infallible> {
            Ok(())
        }
    }

    /// A pool of two on that manager, and where to stash the act.
    fn pool(reuse: Reuse) -> (Pool<ActsWhileConnecting>, Arc<Mutex<Option<Act>>>) {
        let manager = ActsWhileConnecting::default();
        let act = Arc::clone(&manager.act);
        let pool = Pool::builder(manager)
            .max_size(2)
            .reuse(reuse)
            .build()
            .expect("valid config");
        (pool, act)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_gone_idle_before_the_opener_joins_the_line_serves_it() {
        let (pool, act) = pool(Reuse::Fifo);
        let first = pool.get().await.expect("the first connection");
        *act.lock().unwrap() = Some(Box::new(move || drop(first)));
        let second = tokio::time::timeout(Duration::from_secs(1), pool.get())
            .await
            .expect("served by the connection returned meanwhile, not the minute's connect")
            .expect("a connection");
        assert_eq!(*second, 1, "the first connection, returned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_connecting_when_the_pool_closes_is_told_at_once() {
        let (pool, act) = pool(Reuse::MostRecent);
        let _held = pool.get().await.expect("the first connection");
        let closer = pool.clone();
        *act.lock().unwrap() = Some(Box::new(move || {
            // Its first poll closes the pool; the rest would wait for the connection
            // still out.
            let mut close = std::pin::pin!(closer.close(Duration::from_secs(1)));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(matches!(close.as_mut().poll(&mut cx), Poll::Pending));
        }));
        let second = tokio::time::timeout(Duration::from_secs(1), pool.get())
            .await
            .expect("told the pool closed, not after the minute's connect");
        assert!(matches!(second, Err(PoolError::Closed)), "{second:?}");
    }
}

/// A caller that leaves the line unserved lifts the bar its wait put on the hand-back
/// cell, as a served one does: the next return parks there, not under the lock.
#[cfg(all(
    test,
    target_pointer_width = "64",
    feature = "tokio",
    not(pool_model),
    not(feature = "metrics")
))]
mod leaving_the_line_tests {
    use std::future::Future;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use super::tests::NoIo;
    use crate::Pool;

    fn pool(wait: Option<Duration>) -> Pool<NoIo> {
        Pool::builder(NoIo)
            .max_size(1)
            .wait_timeout(wait)
            .build()
            .expect("valid config")
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_waiting_reopens_the_hand_back_cell() {
        let pool = pool(None);
        let held = pool.get().await.expect("the connection");
        {
            let mut waiting = std::pin::pin!(pool.get());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
            assert_eq!(pool.status().waiting, 1);
        }
        assert_eq!(pool.status().waiting, 0);
        drop(held);
        assert!(
            pool.shared.hand_back.holds_idle(),
            "the return parked in the hand-back cell"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_whose_wait_expires_reopens_the_hand_back_cell() {
        let pool = pool(Some(Duration::from_millis(100)));
        let held = pool.get().await.expect("the connection");
        let waited = pool.get().await;
        assert!(
            matches!(waited, Err(crate::PoolError::Timeout(..))),
            "the wait expires"
        );
        drop(held);
        assert!(
            pool.shared.hand_back.holds_idle(),
            "the return parked in the hand-back cell"
        );
    }
}

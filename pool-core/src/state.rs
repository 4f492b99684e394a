//! The pool's bookkeeping, kept under one mutex and changed only by the methods here.
//!
//! The invariant every method keeps: `size == idle.len() + in_use + connecting`, where
//! each counted connection is owned by exactly one of: the idle list, the hand-back
//! cell (counted in `in_use` here, reported idle by `Pool::status`; see `handback.rs`), a
//! [`SlotGuard`](crate::pool::SlotGuard) or, for a connect that may finish without its
//! caller, an `OwnedSlot` (being opened), a `TakenIdle` (taken from the idle list, not
//! yet a checkout), a [`Pooled`](crate::Pooled) (checked out or being checked), a
//! waiter's grant, or a [`ToClose`] list (chosen to close, and counted in `closing` as
//! well until it is closed). Those
//! owners give their unit back in `Drop`, so a cancelled or panicking caller cannot leak
//! one. Nothing here awaits or calls user code.

use std::collections::VecDeque;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::clock;
use crate::handback::{Carried, Carries};
use crate::metrics::CloseReason;
use crate::waiters::WaitQueue;
use crate::{ConnectionInfo, Reuse, Status};

/// A live connection and what the pool knows about it, boxed once when it is opened:
/// what moves between the idle list, the line and a checkout is then a pointer, not
/// the driver's connection and its bookkeeping (a hundred bytes and more), which keeps
/// a hand-off in line small and the checkout's copies few.
pub(crate) struct Conn<C>(Box<ConnData<C>>);

pub(crate) struct ConnData<C> {
    pub(crate) raw: C,
    pub(crate) info: ConnectionInfo,
    /// When upkeep first found the connection in the idle list during its current
    /// spell there: a precise reading taken after it went idle, so `idle_timeout`
    /// counted from here never ends early. Cleared by every return.
    pub(crate) seen_idle_at: Option<Instant>,
    /// The current checkout's bookkeeping, kept here rather than in the guard, so a
    /// [`Pooled`](crate::Pooled) is two pointers: it moves through every caller's
    /// future and `Result`, where each byte is copied on every checkout, while this
    /// box is written by every checkout anyway (`info.checkouts`).
    pub(crate) checkout: CheckoutMarks,
    /// When it was last parked in the hand-back cell (see `handback.rs`), on the
    /// coarse clock: its idle time, as `Idle::idle_since` is for the idle list.
    pub(crate) parked_since: Instant,
    /// While parked in the hand-back cell, the reference to the pool its last user
    /// held (see `handback.rs`).
    carried: Carried,
}

impl<C> Carries for ConnData<C> {
    fn carried(&mut self) -> &mut Carried {
        &mut self.carried
    }
}

/// What the pool notes about a connection while it is out of the idle list.
#[derive(Default)]
pub(crate) struct CheckoutMarks {
    /// When a user took it; `None` while the pool itself holds it (upkeep opening or
    /// resetting one), so its use time is not recorded.
    pub(crate) taken_at: Option<Instant>,
    pub(crate) leak_key: Option<usize>,
    /// Being checked before checkout: if dropped now (cancelled mid-check), its session
    /// state is unknown, so it is closed rather than returned.
    pub(crate) checking: bool,
    /// Marked broken by its user: closed on return.
    pub(crate) broken: bool,
}

impl<C> Conn<C> {
    pub(crate) fn new(raw: C, info: ConnectionInfo) -> Self {
        let parked_since = info.created_at;
        Conn(Box::new(ConnData {
            raw,
            info,
            seen_idle_at: None,
            checkout: CheckoutMarks::default(),
            parked_since,
            carried: Carried::EMPTY,
        }))
    }

    /// The box, to park in the hand-back cell.
    pub(crate) fn into_box(self) -> Box<ConnData<C>> {
        self.0
    }

    /// The connection and its bookkeeping as one plain struct, so both can be borrowed
    /// at once (the driver's connection mutably, its info shared).
    pub(crate) fn data(&mut self) -> &mut ConnData<C> {
        &mut self.0
    }

    pub(crate) fn into_raw(self) -> C {
        self.0.raw
    }
}

impl<C> std::ops::Deref for Conn<C> {
    type Target = ConnData<C>;
    fn deref(&self) -> &ConnData<C> {
        &self.0
    }
}

impl<C> std::ops::DerefMut for Conn<C> {
    fn deref_mut(&mut self) -> &mut ConnData<C> {
        &mut self.0
    }
}

/// A connection resting in the pool.
pub(crate) struct Idle<C> {
    pub(crate) conn: Conn<C>,
    /// When it was returned, on the coarse clock, so possibly some milliseconds early;
    /// only the check interval counts from it (see `Shared::check_reason`).
    pub(crate) idle_since: Instant,
    /// Returned in an unknown session state: reset before its next checkout.
    pub(crate) dirty: bool,
}

impl<C> Idle<C> {
    /// A connection taken out of the hand-back cell (only clean ones are parked there).
    pub(crate) fn from_parked(data: Box<ConnData<C>>) -> Self {
        Idle {
            idle_since: data.parked_since,
            conn: Conn(data),
            dirty: false,
        }
    }
}

/// Connections chosen under the pool's lock to close once it is released.
///
/// Each is still counted in `size` until it is closed (so a new connection never
/// exists beside the one it replaces), and in `State::closing` as well from the
/// moment it is chosen, so every decision taken under the lock meanwhile (is the
/// pool above its `max_size`?) already counts it as gone. Only
/// [`State::close_later`] adds to it, and only `Shared::close_chosen` empties it,
/// freeing both counts under one lock.
#[must_use = "chosen connections are still counted in the pool's size"]
pub(crate) struct ToClose<C> {
    conns: Vec<(Conn<C>, CloseReason)>,
}

impl<C> ToClose<C> {
    pub(crate) const fn new() -> Self {
        ToClose { conns: Vec::new() }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The connections, to close; `State::chosen_closed` must then be told how many.
    pub(crate) fn into_conns(self) -> Vec<(Conn<C>, CloseReason)> {
        self.conns
    }
}

/// What a parked caller is handed.
pub(crate) enum Grant<C> {
    /// An idle connection, and whether it comes straight from the return that stamped
    /// its `idle_since` (so that stamp is as good as a reading of the clock at the
    /// grant), rather than from the idle list or the hand-back cell. Whether it is due
    /// a check because a peer was found broken, its taker asks `Shared::broken_at_hint`,
    /// which is at least as recent as the lock's `broken_at` at the grant: a grant
    /// sits in a waiter's slot, which is smaller without it (see `waiters.rs`).
    Conn(Idle<C>, bool),
    /// Room to open a connection: `size` and `connecting` already count it.
    Slot,
    /// The pool was closed.
    Closed,
    /// The database is down and nothing can come back: fail at once.
    Unavailable {
        last_error: String,
        retry_at: Instant,
    },
    /// A connect just failed and nothing can come back: wait out the back-off, then
    /// try again (one caller probes, the rest queue behind it).
    Retry { retry_at: Instant },
    /// The watchdog found the caller's deadline passed: it has left the line.
    #[cfg_attr(not(all(feature = "tokio", not(pool_model))), allow(dead_code))]
    Expired,
}

/// The pool's one timer for the deadlines of waiting callers (see `watchdog.rs`),
/// which exists only with tokio.
#[cfg_attr(not(all(feature = "tokio", not(pool_model))), allow(dead_code))]
pub(crate) enum Watchdog {
    /// None runs: the first caller to wait with a watched deadline spawns it.
    Absent,
    /// Spawned or woken, and will look at the line before it sleeps again.
    Running,
    /// Asleep until this moment, the earliest watched deadline when it last looked.
    Sleeping(Instant),
    /// No watched deadline in line: asleep until a caller brings one (its waker).
    Parked(Option<Waker>),
}

/// Consecutive connect failures after which the database is taken to be down, and
/// callers that nothing could serve fail at once instead of waiting out the back-off.
/// One failure may be a blip; two in a row, with a back-off between them, is an outage.
pub(crate) const DOWN_AFTER_FAILURES: u32 = 2;

/// The connect back-off after consecutive failures.
pub(crate) struct Backoff {
    pub(crate) failures: u32,
    pub(crate) retry_at: Instant,
}

/// Settings the state needs to make its own decisions.
pub(crate) struct Limits {
    pub(crate) max_connecting: usize,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) reuse: Reuse,
}

/// May a caller open a connection now?
pub(crate) enum Open {
    Now,
    /// The pool is full or enough connects are already under way: wait.
    Later,
    /// Connects are failing and the next attempt is not yet due.
    BackingOff {
        retry_at: Instant,
    },
}

/// Wakers collected under the lock and woken after it is released.
#[derive(Default)]
pub(crate) struct WakeList {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl WakeList {
    pub(crate) fn push(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest.push(waker);
        }
    }

    #[inline]
    pub(crate) fn wake(self) {
        if self.first.is_none() {
            // `rest` only fills once `first` has: nothing is allocated, so nothing
            // needs dropping either (the drop glue alone cost as much as the return's
            // bookkeeping under the lock).
            std::mem::forget(self);
            return;
        }
        if let Some(first) = self.first {
            first.wake();
        }
        for waker in self.rest {
            waker.wake();
        }
    }
}

/// `repr(C)` with the idle list first: it is what the fast path writes, and so shares
/// the cache line of the mutex's lock word (see `Shared`).
#[repr(C)]
pub(crate) struct State<C> {
    pub(crate) idle: VecDeque<Idle<C>>,
    pub(crate) closed: bool,
    pub(crate) size: usize,
    pub(crate) connecting: usize,
    pub(crate) max_size: usize,
    pub(crate) min_idle: usize,
    pub(crate) waiters: WaitQueue<Grant<C>>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) last_connect_error: Option<String>,
    /// When a connection was last found broken; idle ones last checked before then are
    /// due for a check.
    pub(crate) broken_at: Option<Instant>,
    /// Connections chosen to close ([`ToClose`]) and not closed yet: counted in
    /// `size` still, but already gone for the question whether the pool is above its
    /// `max_size`, so two returns racing after a shrink do not both close for it.
    pub(crate) closing: usize,
    upkeep_waker: Option<Waker>,
    upkeep_notified: bool,
    close_wakers: Vec<Waker>,
    pub(crate) limits: Limits,
    pub(crate) watchdog: Watchdog,
}

impl<C> Drop for State<C> {
    fn drop(&mut self) {
        // The pool is gone: let a parked watchdog see it and end.
        if let Watchdog::Parked(Some(waker)) =
            std::mem::replace(&mut self.watchdog, Watchdog::Absent)
        {
            waker.wake();
        }
    }
}

impl<C> State<C> {
    pub(crate) fn new(max_size: usize, min_idle: usize, limits: Limits) -> Self {
        State {
            // Room for a usual pool's idle connections up front, so returns do not
            // grow the list; a huge `max_size` is a bound, not a size to allocate.
            idle: VecDeque::with_capacity(max_size.min(256)),
            size: 0,
            connecting: 0,
            max_size,
            min_idle,
            waiters: WaitQueue::new(),
            closed: false,
            backoff: None,
            last_connect_error: None,
            broken_at: None,
            closing: 0,
            upkeep_waker: None,
            upkeep_notified: false,
            close_wakers: Vec::new(),
            limits,
            watchdog: Watchdog::Absent,
        }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.size - self.idle.len() - self.connecting
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            max_size: self.max_size,
            size: self.size,
            idle: self.idle.len(),
            in_use: self.in_use(),
            connecting: self.connecting,
            waiting: self.waiters.len(),
        }
    }

    pub(crate) fn open_permission(&self, now: Instant) -> Open {
        if self.size >= self.max_size {
            return Open::Later;
        }
        match &self.backoff {
            Some(backoff) if now < backoff.retry_at => Open::BackingOff {
                retry_at: backoff.retry_at,
            },
            // After failures, one probe at a time until a connect succeeds.
            Some(_) if self.connecting > 0 => Open::Later,
            _ if self.connecting >= self.limits.max_connecting => Open::Later,
            _ => Open::Now,
        }
    }

    /// Counts a connection about to be opened.
    pub(crate) fn reserve(&mut self) {
        self.size += 1;
        self.connecting += 1;
    }

    #[inline]
    pub(crate) fn take_idle(&mut self) -> Option<Idle<C>> {
        match self.limits.reuse {
            Reuse::MostRecent => self.idle.pop_back(),
            Reuse::Fifo => self.idle.pop_front(),
        }
    }

    /// A usable connection comes back: to the first waiter, else to the idle list.
    /// `just_returned`: its user returns it now (see [`Grant::Conn`]).
    #[inline]
    pub(crate) fn put_back(&mut self, idle: Idle<C>, just_returned: bool, wake: &mut WakeList) {
        if self.waiters.is_empty() {
            self.idle.push_back(idle);
            return;
        }
        let popped = self.waiters.pop_front().expect("waiters is not empty");
        let grant = Grant::Conn(idle, just_returned);
        wake.push(self.waiters.grant(popped, grant));
    }

    /// A usable connection comes back (its user's return, a cancelled waiter's grant,
    /// one `retain` kept, one a cancelled upkeep pass did not reset): as
    /// [`put_back`](Self::put_back), unless the pool is closed or, after a resize,
    /// above its `max_size`: then it joins `closing`, the connections to close once
    /// the lock is released. Returns whether it was kept.
    #[inline]
    pub(crate) fn give_back(
        &mut self,
        idle: Idle<C>,
        just_returned: bool,
        wake: &mut WakeList,
        closing: &mut ToClose<C>,
    ) -> bool {
        if self.closed {
            self.close_later(closing, idle.conn, CloseReason::PoolClosed);
        } else if self.above_max_size() {
            self.close_later(closing, idle.conn, CloseReason::Resized);
        } else {
            self.put_back(idle, just_returned, wake);
            return true;
        }
        false
    }

    /// Whether the pool is above its `max_size` (after a shrink), not counting the
    /// connections already chosen to close.
    pub(crate) fn above_max_size(&self) -> bool {
        self.excess() > 0
    }

    /// How many connections the pool has above its `max_size` (after a shrink), not
    /// counting those already chosen to close.
    pub(crate) fn excess(&self) -> usize {
        (self.size - self.closing).saturating_sub(self.max_size)
    }

    /// Chooses a counted connection to close once the lock is released.
    pub(crate) fn close_later(
        &mut self,
        closing: &mut ToClose<C>,
        conn: Conn<C>,
        reason: CloseReason,
    ) {
        self.closing += 1;
        closing.conns.push((conn, reason));
    }

    /// `count` connections chosen with [`close_later`](Self::close_later) are closed.
    pub(crate) fn chosen_closed(&mut self, count: usize) {
        self.closing -= count;
    }

    /// Gives waiters whatever the pool can give now: idle connections, room to open
    /// one, or (when the database is down and nothing can come back) the failure.
    pub(crate) fn dispatch(&mut self, now: Instant, wake: &mut WakeList) {
        while !self.waiters.is_empty() {
            if let Some(idle) = self.take_idle() {
                self.put_back(idle, false, wake);
                continue;
            }
            match self.open_permission(now) {
                Open::Now => {
                    let popped = self.waiters.pop_front().expect("waiters is not empty");
                    self.reserve();
                    wake.push(self.waiters.grant(popped, Grant::Slot));
                }
                Open::Later => break,
                Open::BackingOff { retry_at } => {
                    if self.in_use() == 0 && self.connecting == 0 {
                        while let Some(popped) = self.waiters.pop_front() {
                            let grant = self.backoff_grant(retry_at);
                            wake.push(self.waiters.grant(popped, grant));
                        }
                    }
                    break;
                }
            }
        }
    }

    /// What a caller gets when connects are backing off and nothing can come back:
    /// a retry after a single failure, the failure itself once the database is down.
    pub(crate) fn backoff_grant(&self, retry_at: Instant) -> Grant<C> {
        let failures = self.backoff.as_ref().map_or(0, |b| b.failures);
        if failures >= DOWN_AFTER_FAILURES {
            Grant::Unavailable {
                last_error: self.last_error_text(),
                retry_at,
            }
        } else {
            Grant::Retry { retry_at }
        }
    }

    pub(crate) fn last_error_text(&self) -> String {
        self.last_connect_error
            .clone()
            .unwrap_or_else(|| "connect failed".to_owned())
    }

    /// `count` counted connections are gone (closed, detached, or never opened).
    pub(crate) fn release(&mut self, count: usize, now: Instant, wake: &mut WakeList) {
        self.size -= count;
        self.dispatch(now, wake);
        self.size_dropped(wake);
    }

    /// A reserved connect ended without a connection.
    pub(crate) fn unreserve(&mut self, now: Instant, wake: &mut WakeList) {
        self.connecting -= 1;
        self.release(1, now, wake);
    }

    fn size_dropped(&mut self, wake: &mut WakeList) {
        if self.closed {
            if self.size == 0 {
                for waker in self.close_wakers.drain(..) {
                    wake.push(Some(waker));
                }
            }
        } else if self.idle.len() + self.connecting < self.min_idle {
            self.notify_upkeep(wake);
        }
    }

    /// A connect succeeded: the database is reachable again.
    pub(crate) fn connected(&mut self) {
        self.connecting -= 1;
        self.backoff = None;
        self.last_connect_error = None;
    }

    /// A connect failed: back off, doubling the wait with each consecutive failure.
    pub(crate) fn connect_failed(&mut self, now: Instant, error: String) {
        let failures = self.backoff.as_ref().map_or(0, |b| b.failures) + 1;
        let doublings = (failures - 1).min(20);
        let delay = self
            .limits
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.limits.backoff_max);
        // A little jitter so many pools do not retry in step.
        let jitter = delay.mul_f64(fastrand::f64() * 0.2);
        self.backoff = Some(Backoff {
            failures,
            retry_at: clock::saturating_add(now, delay - jitter),
        });
        self.last_connect_error = Some(error);
    }

    pub(crate) fn notify_upkeep(&mut self, wake: &mut WakeList) {
        self.upkeep_notified = true;
        wake.push(self.upkeep_waker.take());
    }

    /// Upkeep checks for a notification, registering to be woken by the next one.
    pub(crate) fn poll_upkeep_notified(&mut self, waker: &Waker) -> bool {
        if std::mem::take(&mut self.upkeep_notified) || self.closed {
            return true;
        }
        self.upkeep_waker = Some(waker.clone());
        false
    }

    /// `close` checks whether every connection is gone, registering to be woken if not.
    pub(crate) fn poll_all_closed(&mut self, waker: &Waker) -> bool {
        if self.size == 0 {
            return true;
        }
        self.close_wakers.push(waker.clone());
        false
    }
}

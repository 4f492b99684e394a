//! A FIFO queue of parked callers, each of which can be handed a value.
//!
//! Guarantees, relied on by the pool:
//! - **First come, first served**: [`WaitQueue::pop_front`] yields callers in the
//!   order of [`WaitQueue::push_back`].
//! - **Hand-off without a race**: a value given with [`WaitQueue::grant`] stays in the
//!   caller's node until the caller takes it with [`WaitQueue::poll`] or, if the
//!   caller gave up, [`WaitQueue::cancel`] gives it back. A grant is therefore never
//!   lost: whoever cancels a wait must pass any granted value on.
//! - **O(1)** push, pop and cancel (a doubly linked list threaded through a slab), so
//!   thousands of cancelled waits cost no scanning.
//! - **Watched deadlines in line order**: a caller pushed with a deadline to watch
//!   ([`WaitQueue::push_back`] with `Some`) is accepted only if no watched caller
//!   ahead of it has a later deadline ([`WaitQueue::in_watch_order`]), so the earliest
//!   watched deadline is always the first watched caller's, and
//!   [`WaitQueue::expire_due`] finds every expired one by walking from the front until
//!   the first that is not, passing over only unwatched callers.
//!
//! The queue is not synchronised: the pool keeps it inside its state mutex.

use std::task::Waker;
use std::time::Instant;

/// Slab indices are 32-bit: slots stay small, and no pool has 4 billion callers waiting.
type Index = u32;
const NIL: Index = Index::MAX;

enum Slot<T> {
    Vacant {
        next_free: Index,
    },
    Queued {
        prev: Index,
        next: Index,
        waker: Option<Waker>,
        /// The deadline someone else (the pool's watchdog) keeps for this caller.
        watch: Option<Instant>,
    },
    Granted {
        value: T,
    },
    /// Popped from the queue, value not yet given.
    Popped {
        waker: Option<Waker>,
    },
}

/// A key naming one caller's place; valid until [`WaitQueue::poll`] returns a value or
/// [`WaitQueue::cancel`] is called with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitKey(Index);

pub(crate) struct WaitQueue<T> {
    slots: Vec<Slot<T>>,
    free: Index,
    head: Index,
    tail: Index,
    queued: usize,
    /// Queued callers with a watched deadline, and the latest such deadline pushed
    /// since there last were none.
    watched: usize,
    latest_watched: Option<Instant>,
}

/// What a caller finds when it polls its place.
pub(crate) enum Polled<T> {
    /// Its value; the key is now free.
    Ready(T),
    /// Still waiting; the waker was stored. `watched`: its deadline is still kept by
    /// the watchdog.
    Pending { watched: bool },
}

impl<T> WaitQueue<T> {
    pub(crate) const fn new() -> Self {
        WaitQueue {
            slots: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            queued: 0,
            watched: 0,
            latest_watched: None,
        }
    }

    /// Callers still in line (popped ones awaiting their grant do not count).
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether a caller with this deadline may join with it watched: no watched caller
    /// in line has a later one.
    pub(crate) fn in_watch_order(&self, deadline: Instant) -> bool {
        self.latest_watched.is_none_or(|latest| latest <= deadline)
    }

    /// Puts a caller at the back of the line, with `watch`, a deadline kept by the
    /// watchdog, only if [`in_watch_order`](Self::in_watch_order) allowed it.
    pub(crate) fn push_back(&mut self, waker: Option<Waker>, watch: Option<Instant>) -> WaitKey {
        if let Some(deadline) = watch {
            debug_assert!(self.in_watch_order(deadline));
            self.watched += 1;
            self.latest_watched = Some(deadline);
        }
        let slot = Slot::Queued {
            prev: self.tail,
            next: NIL,
            waker,
            watch,
        };
        let index = if self.free != NIL {
            let index = self.free;
            match self.slots[index as usize] {
                Slot::Vacant { next_free } => self.free = next_free,
                _ => unreachable!("free list points at an occupied slot"),
            }
            self.slots[index as usize] = slot;
            index
        } else {
            if self.slots.len() == self.slots.capacity() {
                // Grow by a quarter, not double: with thousands waiting, a doubled
                // slab would hold up to as many empty slots as taken ones.
                self.slots.reserve_exact((self.slots.len() / 4).max(16));
            }
            let index = Index::try_from(self.slots.len()).expect("fewer than 2^32 callers wait");
            self.slots.push(slot);
            index
        };
        if self.tail == NIL {
            self.head = index;
        } else {
            self.set_next(self.tail, index);
        }
        self.tail = index;
        self.queued += 1;
        WaitKey(index)
    }

    /// Takes the first caller out of line; give it its value with [`grant`](Self::grant).
    pub(crate) fn pop_front(&mut self) -> Option<WaitKey> {
        if self.head == NIL {
            return None;
        }
        let index = self.head;
        let waker = self.unlink(index);
        self.slots[index as usize] = Slot::Popped { waker };
        Some(WaitKey(index))
    }

    /// Gives a popped caller its value; returns the waker to wake once the lock is
    /// released.
    pub(crate) fn grant(&mut self, key: WaitKey, value: T) -> Option<Waker> {
        match std::mem::replace(&mut self.slots[key.0 as usize], Slot::Granted { value }) {
            Slot::Popped { waker } => waker,
            _ => unreachable!("grant to a caller that was not popped"),
        }
    }

    /// The caller checks its place: takes its value if granted, else stores `waker`.
    pub(crate) fn poll(&mut self, key: WaitKey, waker: &Waker) -> Polled<T> {
        let (stored, watched) = match &mut self.slots[key.0 as usize] {
            Slot::Queued {
                waker: stored,
                watch,
                ..
            } => (stored, watch.is_some()),
            // Its value is on the way: nothing can expire it now.
            Slot::Popped { waker: stored } => (stored, true),
            Slot::Granted { .. } => {
                return match self.release(key.0) {
                    Slot::Granted { value } => Polled::Ready(value),
                    _ => unreachable!(),
                }
            }
            Slot::Vacant { .. } => unreachable!("poll with a released key"),
        };
        if !stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *stored = Some(waker.clone());
        }
        Polled::Pending { watched }
    }

    /// The caller gives up its place. Returns the value it had been granted, which the
    /// caller must pass on.
    pub(crate) fn cancel(&mut self, key: WaitKey) -> Option<T> {
        if let Slot::Queued { .. } = self.slots[key.0 as usize] {
            self.unlink(key.0);
        }
        match self.release(key.0) {
            Slot::Granted { value } => Some(value),
            Slot::Queued { .. } | Slot::Popped { .. } => None,
            Slot::Vacant { .. } => unreachable!("cancel with a released key"),
        }
    }

    fn release(&mut self, index: Index) -> Slot<T> {
        let old = std::mem::replace(
            &mut self.slots[index as usize],
            Slot::Vacant {
                next_free: self.free,
            },
        );
        self.free = index;
        old
    }

    #[cfg_attr(not(all(feature = "tokio", not(pool_model))), allow(dead_code))]
    /// Grants `expired()` to every watched caller whose deadline is not after `now`,
    /// handing their wakers to `wake`; returns the earliest watched deadline left.
    pub(crate) fn expire_due(
        &mut self,
        now: Instant,
        mut expired: impl FnMut() -> T,
        mut wake: impl FnMut(Option<Waker>),
    ) -> Option<Instant> {
        let mut index = self.head;
        while index != NIL {
            let Slot::Queued { next, watch, .. } = &self.slots[index as usize] else {
                unreachable!("a slot in line that is not queued")
            };
            let (next, watch) = (*next, *watch);
            match watch {
                Some(deadline) if deadline > now => return Some(deadline),
                Some(_) => {
                    let waker = self.unlink(index);
                    self.slots[index as usize] = Slot::Granted { value: expired() };
                    wake(waker);
                }
                None => {}
            }
            index = next;
        }
        None
    }

    #[cfg_attr(not(all(feature = "tokio", not(pool_model))), allow(dead_code))]
    /// Nobody keeps deadlines any more: every watched caller is told (woken) so it
    /// keeps its own.
    pub(crate) fn unwatch_all(&mut self, mut wake: impl FnMut(Option<Waker>)) {
        let mut index = self.head;
        while index != NIL && self.watched > 0 {
            let Slot::Queued {
                next, watch, waker, ..
            } = &mut self.slots[index as usize]
            else {
                unreachable!("a slot in line that is not queued")
            };
            if watch.take().is_some() {
                self.watched -= 1;
                wake(waker.clone());
            }
            index = *next;
        }
        self.watched = 0;
        self.latest_watched = None;
    }

    /// Removes a queued slot from the list, returning its waker; the slot's content is
    /// left for the caller to overwrite.
    fn unlink(&mut self, index: Index) -> Option<Waker> {
        let (prev, next, waker, watch) = match &mut self.slots[index as usize] {
            Slot::Queued {
                prev,
                next,
                waker,
                watch,
            } => (*prev, *next, waker.take(), watch.take()),
            _ => unreachable!("unlink of a slot not in line"),
        };
        if watch.is_some() {
            self.watched -= 1;
            if self.watched == 0 {
                self.latest_watched = None;
            }
        }
        if prev == NIL {
            self.head = next;
        } else {
            self.set_next(prev, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.set_prev(next, prev);
        }
        self.queued -= 1;
        waker
    }

    fn set_next(&mut self, index: Index, to: Index) {
        match &mut self.slots[index as usize] {
            Slot::Queued { next, .. } => *next = to,
            _ => unreachable!("link to a slot not in line"),
        }
    }

    fn set_prev(&mut self, index: Index, to: Index) {
        match &mut self.slots[index as usize] {
            Slot::Queued { prev, .. } => *prev = to,
            _ => unreachable!("link to a slot not in line"),
        }
    }
}

/// The size of one slot in line, for the memory bound's test.
#[cfg(test)]
pub(crate) fn slot_size<T>() -> usize {
    std::mem::size_of::<Slot<T>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    fn at(base: Instant, ms: u64) -> Instant {
        base + std::time::Duration::from_millis(ms)
    }

    #[test]
    fn watched_deadlines_must_not_go_backwards_and_reset_when_none_are_left() {
        let base = Instant::now();
        let mut q: WaitQueue<()> = WaitQueue::new();
        let a = q.push_back(None, Some(at(base, 10)));
        assert!(q.in_watch_order(at(base, 10)));
        assert!(!q.in_watch_order(at(base, 9)), "earlier than one in line");
        let b = q.push_back(None, None);
        assert!(
            !q.in_watch_order(at(base, 9)),
            "unwatched callers do not count"
        );
        assert_eq!(q.cancel(a), None);
        assert!(q.in_watch_order(at(base, 1)), "no watched caller is left");
        assert_eq!(q.cancel(b), None);
    }

    #[test]
    fn expire_due_expires_only_passed_deadlines_and_skips_unwatched_callers() {
        let base = Instant::now();
        let mut q: WaitQueue<&str> = WaitQueue::new();
        let own_timer = q.push_back(None, None);
        let early = q.push_back(Some(noop()), Some(at(base, 10)));
        let late = q.push_back(None, Some(at(base, 20)));
        let mut woken = 0;
        let next = q.expire_due(
            at(base, 15),
            || "expired",
            |w| woken += usize::from(w.is_some()),
        );
        assert_eq!(next, Some(at(base, 20)), "the next watched deadline");
        assert_eq!(woken, 1);
        assert!(matches!(q.poll(early, &noop()), Polled::Ready("expired")));
        assert!(matches!(
            q.poll(late, &noop()),
            Polled::Pending { watched: true }
        ));
        assert!(matches!(
            q.poll(own_timer, &noop()),
            Polled::Pending { watched: false }
        ));
        assert_eq!(q.len(), 2);
        assert_eq!(q.expire_due(at(base, 20), || "expired", |_| {}), None);
        assert!(matches!(q.poll(late, &noop()), Polled::Ready("expired")));
        assert_eq!(
            q.pop_front(),
            Some(own_timer),
            "the unwatched caller stays in line"
        );
    }

    #[test]
    fn unwatch_all_wakes_the_watched_and_leaves_them_in_line() {
        let base = Instant::now();
        let mut q: WaitQueue<()> = WaitQueue::new();
        let a = q.push_back(Some(noop()), Some(at(base, 10)));
        let b = q.push_back(Some(noop()), None);
        let mut woken = 0;
        q.unwatch_all(|w| woken += usize::from(w.is_some()));
        assert_eq!(woken, 1, "only the watched caller is told");
        assert!(matches!(
            q.poll(a, &noop()),
            Polled::Pending { watched: false }
        ));
        assert!(q.in_watch_order(base), "no watched deadline is left");
        assert_eq!(q.expire_due(at(base, 100), || (), |_| {}), None);
        assert_eq!(q.pop_front(), Some(a));
        assert_eq!(q.pop_front(), Some(b));
    }

    #[test]
    fn pops_in_push_order() {
        let mut q: WaitQueue<()> = WaitQueue::new();
        let keys: Vec<_> = (0..5).map(|_| q.push_back(None, None)).collect();
        let popped: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(keys, popped);
        assert!(q.is_empty());
    }

    #[test]
    fn cancel_in_the_middle_keeps_order_and_reuses_slots() {
        let mut q: WaitQueue<u32> = WaitQueue::new();
        let a = q.push_back(None, None);
        let b = q.push_back(None, None);
        let c = q.push_back(None, None);
        assert_eq!(q.cancel(b), None);
        assert_eq!(q.len(), 2);
        let d = q.push_back(None, None);
        assert_eq!(d, b, "the freed slot is reused");
        assert_eq!(q.pop_front(), Some(a));
        assert_eq!(q.pop_front(), Some(c));
        assert_eq!(q.pop_front(), Some(d));
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn a_granted_value_is_returned_by_cancel() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None, None);
        let key = q.pop_front().unwrap();
        assert_eq!(key, a);
        assert!(q.grant(key, 7).is_none());
        assert_eq!(q.cancel(a), Some(7));
    }

    #[test]
    fn poll_takes_a_grant_once_and_stores_wakers_before() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None, None);
        assert!(matches!(q.poll(a, &noop()), Polled::Pending { .. }));
        let key = q.pop_front().unwrap();
        assert!(
            q.grant(key, "conn").is_some(),
            "the stored waker is handed back"
        );
        assert!(matches!(q.poll(a, &noop()), Polled::Ready("conn")));
        let b = q.push_back(None, None);
        assert_eq!(b, a, "the slot was released by the successful poll");
    }
}

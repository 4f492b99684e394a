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
//!
//! The queue is not synchronised: the pool keeps it inside its state mutex.

use std::task::Waker;

const NIL: usize = usize::MAX;

enum Slot<T> {
    Vacant {
        next_free: usize,
    },
    Queued {
        prev: usize,
        next: usize,
        waker: Option<Waker>,
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
pub(crate) struct WaitKey(usize);

pub(crate) struct WaitQueue<T> {
    slots: Vec<Slot<T>>,
    free: usize,
    head: usize,
    tail: usize,
    queued: usize,
}

/// What a caller finds when it polls its place.
pub(crate) enum Polled<T> {
    /// Its value; the key is now free.
    Ready(T),
    /// Still waiting; the waker was stored.
    Pending,
}

impl<T> WaitQueue<T> {
    pub(crate) const fn new() -> Self {
        WaitQueue {
            slots: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            queued: 0,
        }
    }

    /// Callers still in line (popped ones awaiting their grant do not count).
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Puts a caller at the back of the line.
    pub(crate) fn push_back(&mut self, waker: Option<Waker>) -> WaitKey {
        let slot = Slot::Queued {
            prev: self.tail,
            next: NIL,
            waker,
        };
        let index = if self.free != NIL {
            let index = self.free;
            match self.slots[index] {
                Slot::Vacant { next_free } => self.free = next_free,
                _ => unreachable!("free list points at an occupied slot"),
            }
            self.slots[index] = slot;
            index
        } else {
            self.slots.push(slot);
            self.slots.len() - 1
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
        self.slots[index] = Slot::Popped { waker };
        Some(WaitKey(index))
    }

    /// Gives a popped caller its value; returns the waker to wake once the lock is
    /// released.
    pub(crate) fn grant(&mut self, key: WaitKey, value: T) -> Option<Waker> {
        match std::mem::replace(&mut self.slots[key.0], Slot::Granted { value }) {
            Slot::Popped { waker } => waker,
            _ => unreachable!("grant to a caller that was not popped"),
        }
    }

    /// The caller checks its place: takes its value if granted, else stores `waker`.
    pub(crate) fn poll(&mut self, key: WaitKey, waker: &Waker) -> Polled<T> {
        match &mut self.slots[key.0] {
            Slot::Queued { waker: stored, .. } | Slot::Popped { waker: stored } => {
                if !stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *stored = Some(waker.clone());
                }
                Polled::Pending
            }
            Slot::Granted { .. } => match self.release(key.0) {
                Slot::Granted { value } => Polled::Ready(value),
                _ => unreachable!(),
            },
            Slot::Vacant { .. } => unreachable!("poll with a released key"),
        }
    }

    /// The caller gives up its place. Returns the value it had been granted, which the
    /// caller must pass on.
    pub(crate) fn cancel(&mut self, key: WaitKey) -> Option<T> {
        if let Slot::Queued { .. } = self.slots[key.0] {
            self.unlink(key.0);
        }
        match self.release(key.0) {
            Slot::Granted { value } => Some(value),
            Slot::Queued { .. } | Slot::Popped { .. } => None,
            Slot::Vacant { .. } => unreachable!("cancel with a released key"),
        }
    }

    fn release(&mut self, index: usize) -> Slot<T> {
        let old = std::mem::replace(
            &mut self.slots[index],
            Slot::Vacant {
                next_free: self.free,
            },
        );
        self.free = index;
        old
    }

    /// Removes a queued slot from the list, returning its waker; the slot's content is
    /// left for the caller to overwrite.
    fn unlink(&mut self, index: usize) -> Option<Waker> {
        let (prev, next, waker) = match &mut self.slots[index] {
            Slot::Queued { prev, next, waker } => (*prev, *next, waker.take()),
            _ => unreachable!("unlink of a slot not in line"),
        };
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

    fn set_next(&mut self, index: usize, to: usize) {
        match &mut self.slots[index] {
            Slot::Queued { next, .. } => *next = to,
            _ => unreachable!("link to a slot not in line"),
        }
    }

    fn set_prev(&mut self, index: usize, to: usize) {
        match &mut self.slots[index] {
            Slot::Queued { prev, .. } => *prev = to,
            _ => unreachable!("link to a slot not in line"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn pops_in_push_order() {
        let mut q: WaitQueue<()> = WaitQueue::new();
        let keys: Vec<_> = (0..5).map(|_| q.push_back(None)).collect();
        let popped: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        assert_eq!(keys, popped);
        assert!(q.is_empty());
    }

    #[test]
    fn cancel_in_the_middle_keeps_order_and_reuses_slots() {
        let mut q: WaitQueue<u32> = WaitQueue::new();
        let a = q.push_back(None);
        let b = q.push_back(None);
        let c = q.push_back(None);
        assert_eq!(q.cancel(b), None);
        assert_eq!(q.len(), 2);
        let d = q.push_back(None);
        assert_eq!(d, b, "the freed slot is reused");
        assert_eq!(q.pop_front(), Some(a));
        assert_eq!(q.pop_front(), Some(c));
        assert_eq!(q.pop_front(), Some(d));
        assert_eq!(q.pop_front(), None);
    }

    #[test]
    fn a_granted_value_is_returned_by_cancel() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None);
        let key = q.pop_front().unwrap();
        assert_eq!(key, a);
        assert!(q.grant(key, 7).is_none());
        assert_eq!(q.cancel(a), Some(7));
    }

    #[test]
    fn poll_takes_a_grant_once_and_stores_wakers_before() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None);
        assert!(matches!(q.poll(a, &noop()), Polled::Pending));
        let key = q.pop_front().unwrap();
        assert!(
            q.grant(key, "conn").is_some(),
            "the stored waker is handed back"
        );
        assert!(matches!(q.poll(a, &noop()), Polled::Ready("conn")));
        let b = q.push_back(None);
        assert_eq!(b, a, "the slot was released by the successful poll");
    }
}

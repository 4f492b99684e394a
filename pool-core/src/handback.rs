//! A one-connection hand-back cell beside the pool's locked idle list.
//!
//! Most returns are followed by a checkout with nobody waiting in between: a task that
//! queries in a loop, or tasks on one worker thread taking turns. The locked path costs
//! each of them a lock and an unlock (two atomic read-modify-writes on the pool's most
//! contended cache line, plus the idle list's bookkeeping). Here a return instead swaps
//! the connection into one atomic cell, and the next checkout swaps it out: one atomic
//! operation each, and no lock.
//!
//! The cell must never hide a connection from a caller who waits for one, nor outlive
//! `close`. Whoever needs the locked state to be the whole truth (a caller about to
//! wait, `close`, a `resize` below the pool's size) *bars* the cell, with a reason, and
//! drains it, under the pool's lock ([`bar_and_drain`](HandBack::bar_and_drain)). From
//! then until the reason is lifted:
//! - [`take`](HandBack::take) finds nothing, so every checkout takes the locked path;
//! - [`park`](HandBack::park) hands its value back to the caller (to return through the
//!   locked path), either at once or, if the bar went up while it was parking, by taking
//!   the cell's content back out.
//!
//! Guarantees:
//! - **Nothing lost, nothing twice**: every value parked comes out exactly once: from
//!   `take` or `drain`, from `park` itself, or dropped with the cell.
//! - **Barring is airtight**: once `bar_and_drain` has returned, a value parked later
//!   is never left in the cell: its `park` reads the bar after its swap, and every
//!   operation on the cell and the bar is sequentially consistent, so either the drain
//!   came after the swap (and took the value) or the read sees the bar (and the parker
//!   takes the cell's content back). The bar is raised and lifted only under the pool's
//!   lock, which is what lets a raise while the bar is already up skip the drain.
//! - **Lock-free**: `take` is a load and a swap, `park` a load, a swap and a load.
//!
//! A value may still sit in the cell while nothing is barred: it is an idle connection
//! like those in the list (counted in the pool's `size`, reported idle by `status`).
//! Upkeep and `retain` [`take`](HandBack::take) it into the list, under the lock,
//! before they look at idle connections. Under the lock a value in a barred cell is
//! not idle but on its way back through the locked path, and nobody but its parker
//! takes it: upkeep once drained such a value into the idle list while a caller
//! waited, and nothing handed it over.

use std::marker::PhantomData;
use std::ptr;

use crate::sync::{AtomicPtr, AtomicUsize, Ordering};

/// Why the cell is barred (bits of [`HandBack`]'s bar word).
pub(crate) mod bar {
    /// Callers wait in line (or one is about to join it): a return must go to them.
    pub(crate) const WAITERS: usize = 1;
    /// The pool is closed: a return closes the connection.
    pub(crate) const CLOSED: usize = 1 << 1;
    /// The pool has more connections than `max_size` after a `resize`: a return may
    /// have to close the connection.
    pub(crate) const OVER_SIZE: usize = 1 << 2;
    /// Never used: FIFO reuse takes the oldest idle connection, not the latest, and
    /// with the `metrics` feature every return updates the pool's gauges under the
    /// lock.
    pub(crate) const OFF: usize = 1 << 3;
}

/// One boxed value, parked and taken without a lock, unless barred (see the module
/// docs).
pub(crate) struct HandBack<T> {
    cell: AtomicPtr<T>,
    bar: AtomicUsize,
    /// Owns the parked box (for drop checking).
    _owns: PhantomData<Box<T>>,
}

// SAFETY: the cell moves a `Box<T>` from the thread that parks it to the thread that
// takes it, and nothing else: sharing or sending the cell needs only `T: Send`, as for
// a `Mutex<Option<Box<T>>>`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for HandBack<T> {}
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for HandBack<T> {}

/// What [`HandBack::park`] gives back: up to two values to return through the locked
/// path (the caller's own, refused or taken back, and one it displaced).
#[must_use = "values handed back must be returned through the locked path"]
pub(crate) struct HandedBack<T>([Option<Box<T>>; 2]);

impl<T> HandedBack<T> {
    /// The parker's own value (refused, or taken back) and the one it displaced.
    pub(crate) fn into_parts(self) -> (Option<Box<T>>, Option<Box<T>>) {
        let [own, displaced] = self.0;
        (own, displaced)
    }
}

// The pool takes the two apart (its own value and a displaced one are returned
// differently); the tests only count what came back.
#[cfg(test)]
impl<T> IntoIterator for HandedBack<T> {
    type Item = Box<T>;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Box<T>>, 2>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

impl<T> HandBack<T> {
    /// An empty cell, barred for good with [`bar::OFF`] if `off`.
    pub(crate) fn new(off: bool) -> Self {
        HandBack {
            cell: AtomicPtr::new(ptr::null_mut()),
            bar: AtomicUsize::new(if off { bar::OFF } else { 0 }),
            _owns: PhantomData,
        }
    }

    /// Takes the parked value, unless the cell is barred or empty. Under the pool's
    /// lock a value taken so is idle (nothing bars it); one left behind because the bar
    /// is up is on its way back through the locked path (see
    /// [`bar_and_drain`](Self::bar_and_drain)).
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        if self.bar.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.swap(ptr::null_mut())
    }

    /// Parks `value`, unless the cell is barred; see [`HandedBack`].
    #[inline]
    pub(crate) fn park(&self, value: Box<T>) -> HandedBack<T> {
        if self.bar.load(Ordering::SeqCst) != 0 {
            return HandedBack([Some(value), None]);
        }
        let displaced = self.swap(Box::into_raw(value));
        // Read after the swap (see "Barring is airtight").
        let taken_back = if self.bar.load(Ordering::SeqCst) != 0 {
            self.swap(ptr::null_mut())
        } else {
            None
        };
        HandedBack([taken_back, displaced])
    }

    /// Takes the parked value whether barred or not.
    fn drain(&self) -> Option<Box<T>> {
        self.swap(ptr::null_mut())
    }

    /// Raises the bar for `reason`, and drains the cell if the bar was down; for a
    /// holder of the pool's lock, under which alone the bar is raised and lifted.
    ///
    /// A value found in the cell while the bar is up is on its way back: whoever raised
    /// the bar from down drained the cell then, under the lock, and the bar has not been
    /// down since, so the value was parked after that drain, and its `park` reads the
    /// bar after its swap and takes it back (returning it through the locked path,
    /// which applies every rule the bar stands for: a holder of the lock that took it
    /// instead would have to apply them itself, and once did not). So only a raise from
    /// down drains, and a raise for a reason already up is one load. Saving the
    /// read-modify-writes matters to a pool that runs dry: every caller that finds no
    /// idle connection passes here.
    pub(crate) fn bar_and_drain(&self, reason: usize) -> Option<Box<T>> {
        if self.bar.load(Ordering::SeqCst) & reason != 0 {
            return None;
        }
        if self.bar.fetch_or(reason, Ordering::SeqCst) != 0 {
            return None;
        }
        self.drain()
    }

    /// Lifts the bar for `reason` (a plain read when it is not up).
    pub(crate) fn unbar(&self, reason: usize) {
        if self.bar.load(Ordering::Relaxed) & reason != 0 {
            self.bar.fetch_and(!reason, Ordering::SeqCst);
        }
    }

    /// Whether a value is parked now (a snapshot).
    pub(crate) fn is_occupied(&self) -> bool {
        !self.cell.load(Ordering::SeqCst).is_null()
    }

    /// Whether an idle value is parked: for a holder of the pool's lock, to whom a value
    /// in a barred cell is on its way back, not idle (see
    /// [`bar_and_drain`](Self::bar_and_drain)).
    pub(crate) fn holds_idle(&self) -> bool {
        self.bar.load(Ordering::SeqCst) == 0 && self.is_occupied()
    }

    /// Swaps `new` (null or a box given up with `Box::into_raw`) into the cell and
    /// returns the previous content, owned.
    #[allow(unsafe_code)]
    fn swap(&self, new: *mut T) -> Option<Box<T>> {
        let old = self.cell.swap(new, Ordering::SeqCst);
        // SAFETY: a non-null pointer in the cell came from `Box::into_raw` in `park`,
        // and the swap removed it from the cell, so this is its only owner.
        (!old.is_null()).then(|| unsafe { Box::from_raw(old) })
    }
}

impl<T> Drop for HandBack<T> {
    fn drop(&mut self) {
        drop(self.drain());
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as Count;
    use std::sync::Arc;

    struct Tracked(u32, Arc<Count>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ids(handed: HandedBack<Tracked>) -> Vec<u32> {
        handed.into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn parks_one_value_and_hands_back_the_one_it_displaces() {
        let dropped = Arc::new(Count::new(0));
        let cell = HandBack::new(false);
        assert!(ids(cell.park(Box::new(Tracked(1, dropped.clone())))).is_empty());
        assert!(cell.is_occupied() && cell.holds_idle());
        assert_eq!(ids(cell.park(Box::new(Tracked(2, dropped.clone())))), [1]);
        assert_eq!(cell.take().map(|t| t.0), Some(2));
        assert!(cell.take().is_none());
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "both were dropped once");
    }

    #[test]
    fn a_barred_cell_takes_nothing_and_refuses_to_park() {
        let dropped = Arc::new(Count::new(0));
        let cell = HandBack::new(false);
        assert!(ids(cell.park(Box::new(Tracked(1, dropped.clone())))).is_empty());
        assert_eq!(
            cell.bar_and_drain(bar::WAITERS).map(|t| t.0),
            Some(1),
            "raising the bar drains the cell"
        );
        assert!(cell.take().is_none(), "barred: the locked path serves");
        assert_eq!(ids(cell.park(Box::new(Tracked(2, dropped.clone())))), [2]);
        assert!(cell.bar_and_drain(bar::WAITERS).is_none());
        cell.unbar(bar::WAITERS);
        assert!(ids(cell.park(Box::new(Tracked(3, dropped.clone())))).is_empty());
        drop(cell);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            3,
            "the parked one dropped with it"
        );
    }

    #[test]
    fn reasons_are_lifted_one_at_a_time() {
        let cell: HandBack<u8> = HandBack::new(false);
        assert!(cell.bar_and_drain(bar::WAITERS).is_none());
        assert!(cell.bar_and_drain(bar::OVER_SIZE).is_none());
        cell.unbar(bar::WAITERS);
        assert!(ids_u8(cell.park(Box::new(1))) == [1], "still over size");
        cell.unbar(bar::OVER_SIZE);
        assert!(ids_u8(cell.park(Box::new(2))).is_empty());
        let off: HandBack<u8> = HandBack::new(true);
        assert_eq!(ids_u8(off.park(Box::new(3))), [3], "off for good");
    }

    fn ids_u8(handed: HandedBack<u8>) -> Vec<u8> {
        handed.into_iter().map(|b| *b).collect()
    }

    /// The handshake under real threads: a thread parks while another bars and
    /// drains; afterwards the cell is empty and every value came out exactly once.
    #[test]
    fn barring_leaves_nothing_parked() {
        for _ in 0..2000 {
            let cell = Arc::new(HandBack::<u32>::new(false));
            let parker = {
                let cell = Arc::clone(&cell);
                std::thread::spawn(move || {
                    let mut out: Vec<u32> = Vec::new();
                    for v in 0..4 {
                        out.extend(cell.park(Box::new(v)).into_iter().map(|b| *b));
                    }
                    out
                })
            };
            let drained: Vec<u32> = cell
                .bar_and_drain(bar::CLOSED)
                .into_iter()
                .map(|b| *b)
                .collect();
            let mut all = parker.join().unwrap();
            all.extend(drained);
            assert!(
                cell.drain().is_none(),
                "a value was left parked past the bar"
            );
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3]);
        }
    }

    /// A value found in a barred cell is on its way back: neither a further raise (for
    /// another reason) nor `take` removes it, and its parker's read of the bar does.
    /// Taken by a holder of the lock, it skipped the rules of the locked return: upkeep
    /// put such a value in the idle list while a caller waited.
    #[test]
    fn a_value_in_a_barred_cell_is_left_to_its_parker() {
        let cell = HandBack::<u32>::new(false);
        assert!(cell.bar_and_drain(bar::WAITERS).is_none());
        // A `park` that read the bar before the raise, and has swapped since.
        let displaced = cell.swap(Box::into_raw(Box::new(7)));
        assert!(displaced.is_none());
        assert!(cell.is_occupied() && !cell.holds_idle(), "barred: not idle");
        assert!(cell.take().is_none(), "barred: not idle");
        assert!(cell.bar_and_drain(bar::OVER_SIZE).is_none());
        assert!(cell.bar_and_drain(bar::CLOSED).is_none());
        // The parker's read after its swap.
        assert_ne!(cell.bar.load(Ordering::SeqCst), 0);
        assert_eq!(cell.swap(ptr::null_mut()).map(|b| *b), Some(7));
    }

    /// A bar raised while the bar is up drains nothing, and needs not: under real
    /// threads racing a parker, every value still comes out exactly once and none is
    /// left parked. (The window in which a value sits in the barred cell is a few
    /// instructions wide, so this rarely reaches it:
    /// `a_value_in_a_barred_cell_is_left_to_its_parker` pins that case.)
    #[test]
    fn a_bar_already_up_leaves_nothing_to_drain() {
        for _ in 0..2000 {
            let cell = Arc::new(HandBack::<u32>::new(false));
            let parker = {
                let cell = Arc::clone(&cell);
                std::thread::spawn(move || {
                    (0..4)
                        .flat_map(|v| cell.park(Box::new(v)))
                        .map(|b| *b)
                        .collect::<Vec<u32>>()
                })
            };
            let mut all: Vec<u32> = cell
                .bar_and_drain(bar::WAITERS)
                .into_iter()
                .map(|b| *b)
                .collect();
            assert!(cell.bar_and_drain(bar::WAITERS).is_none());
            assert!(cell.bar_and_drain(bar::CLOSED).is_none());
            all.extend(parker.join().unwrap());
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3], "each came out once");
            assert!(!cell.is_occupied(), "a value was left parked past the bar");
        }
    }
}

//! A one-connection hand-back cell beside the pool's locked idle list.
//!
//! Most returns are followed by a checkout with nobody waiting in between: a task that
//! queries in a loop, or tasks on one worker thread taking turns. The locked path costs
//! each of them a lock and an unlock (two atomic read-modify-writes on the pool's most
//! contended cache line, plus the idle list's bookkeeping). Here a return instead puts
//! the connection into one atomic cell, and the next checkout takes it out: one atomic
//! read-modify-write each, and no lock.
//!
//! The cell must never hide a connection from a caller who waits for one, nor outlive
//! `close`. Whoever needs the locked state to be the whole truth (a caller about to
//! wait, `close`, a `resize` below the pool's size) *bars* the cell, with a reason, and
//! drains it, under the pool's lock ([`bar_and_drain`](HandBack::bar_and_drain)). From
//! then until the last reason is lifted the cell is empty:
//! - [`take`](HandBack::take) finds nothing, so every checkout takes the locked path;
//! - [`park`](HandBack::park) refuses its value, which the caller returns through the
//!   locked path.
//!
//! The cell is one pointer: null when empty, the parked box, or, while barred, a
//! marker no box can be (address 1: a box of a type aligned to 2 or more never is).
//! `park` and `take` are each one compare-and-swap of it, which succeeds only while
//! the cell is not barred, and `bar_and_drain` puts the marker in and takes the content
//! out in one swap. So a value is parked only into an open cell, and a parker that has
//! parked never touches the cell again. (The cell used to be a pointer and a separate bar
//! word: a parker swapped its value in and then read the bar, taking the value back if
//! the bar had gone up in between. A value could then sit in a barred cell on its way
//! back, and one holder of the lock that took such a value skipped the rules of the
//! locked return: a caller waited for ever.)
//!
//! Guarantees:
//! - **Nothing lost, nothing twice**: every value given to `park` comes out exactly
//!   once: refused by `park`, from `take` or `bar_and_drain`, displaced by a later
//!   `park`, or dropped with the cell.
//! - **Barring is airtight**: once `bar_and_drain` has returned, the cell is empty and
//!   stays so until the bar is lifted: a `park` or `take` whose compare-and-swap
//!   expected the cell's content from before the bar fails, finds the marker and
//!   gives up. The bar
//!   is raised and lifted only under the pool's lock, which is what lets a raise while
//!   the bar is already up skip the swap.
//! - **Lock-free**: `take` and `park` are a load and a compare-and-swap, retried only
//!   when another `take` or `park` changed the cell in between.
//!
//! A value may sit in the cell while nothing is barred: it is an idle connection like
//! those in the list (counted in the pool's `size`, reported idle by `status`). Upkeep
//! and `retain` [`take`](HandBack::take) it into the list, under the lock, before they
//! look at idle connections.

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

/// The address of the marker a barred cell holds (see the module docs).
const BARRED: usize = 1;

/// The marker a barred cell holds: never dereferenced, never a box's address.
fn barred<T>() -> *mut T {
    ptr::without_provenance_mut(BARRED)
}

/// Whether `p` is the marker of a barred cell.
fn is_barred<T>(p: *mut T) -> bool {
    p.addr() == BARRED
}

/// Whether `p`, read from the cell, is a parked box: neither null nor the marker.
fn is_parked<T>(p: *mut T) -> bool {
    !p.is_null() && !is_barred(p)
}

/// One boxed value, parked and taken without a lock, unless barred (see the module
/// docs).
pub(crate) struct HandBack<T> {
    /// Null, the parked box, or, while `bar` is not 0, the marker [`barred`].
    cell: AtomicPtr<T>,
    /// The reasons the cell is barred ([`bar`]); changed only under the pool's lock.
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
/// path (the caller's own, refused, and one it displaced).
#[must_use = "values handed back must be returned through the locked path"]
pub(crate) struct HandedBack<T>([Option<Box<T>>; 2]);

impl<T> HandedBack<T> {
    /// The parker's own value (refused) and the one it displaced.
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
        const {
            assert!(
                std::mem::align_of::<T>() >= 2,
                "a barred cell's marker, address 1, must never be a box's address"
            );
        }
        HandBack {
            cell: AtomicPtr::new(if off { barred() } else { ptr::null_mut() }),
            bar: AtomicUsize::new(if off { bar::OFF } else { 0 }),
            _owns: PhantomData,
        }
    }

    /// Takes the parked value, unless the cell is barred or empty.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<T>> {
        let mut current = self.cell.load(Ordering::SeqCst);
        loop {
            if !is_parked(current) {
                return None;
            }
            match self.cell.compare_exchange_weak(
                current,
                ptr::null_mut(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(taken) => return Self::owned(taken),
                Err(now) => current = now,
            }
        }
    }

    /// Parks `value`, unless the cell is barred; see [`HandedBack`]. Once parked, the
    /// value is the cell's: this call reads nothing more of the cell.
    #[inline]
    pub(crate) fn park(&self, value: Box<T>) -> HandedBack<T> {
        let new = Box::into_raw(value);
        let mut current = self.cell.load(Ordering::SeqCst);
        loop {
            if is_barred(current) {
                return HandedBack([Self::owned(new), None]);
            }
            match self
                .cell
                .compare_exchange_weak(current, new, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(displaced) => return HandedBack([None, Self::owned(displaced)]),
                Err(now) => current = now,
            }
        }
    }

    /// Raises the bar for `reason` and, if the bar was down, drains the cell; for a
    /// holder of the pool's lock, under which alone the bar is raised and lifted. A raise
    /// for a reason already up is one load, and one while another reason is up changes
    /// only the bar word: the cell is empty already. That matters to a pool that runs
    /// dry: every caller that finds no idle connection passes here.
    pub(crate) fn bar_and_drain(&self, reason: usize) -> Option<Box<T>> {
        if self.bar.load(Ordering::SeqCst) & reason != 0 {
            return None;
        }
        if self.bar.fetch_or(reason, Ordering::SeqCst) != 0 {
            return None;
        }
        Self::owned(self.cell.swap(barred(), Ordering::SeqCst))
    }

    /// Lifts the bar for `reason` (a plain read when it is not up), and opens the cell
    /// if it was the last reason; for a holder of the pool's lock.
    pub(crate) fn unbar(&self, reason: usize) {
        if self.bar.load(Ordering::Relaxed) & reason != 0
            && self.bar.fetch_and(!reason, Ordering::SeqCst) == reason
        {
            // Barred, the cell has held nothing but the marker since it was raised.
            self.cell.store(ptr::null_mut(), Ordering::SeqCst);
        }
    }

    /// Whether an idle value is parked now (a snapshot; a barred cell is empty).
    pub(crate) fn holds_idle(&self) -> bool {
        is_parked(self.cell.load(Ordering::SeqCst))
    }

    /// The box `p` points to (none for null or the marker), owned.
    #[allow(unsafe_code)]
    fn owned(p: *mut T) -> Option<Box<T>> {
        // SAFETY: any other pointer came from `Box::into_raw` in `park` and was just
        // taken out of the cell by the caller's successful swap or compare-and-swap,
        // or never got into it (`park`'s failed exchange): the caller is its only owner.
        is_parked(p).then(|| unsafe { Box::from_raw(p) })
    }
}

impl<T> Drop for HandBack<T> {
    fn drop(&mut self) {
        drop(Self::owned(
            self.cell.swap(ptr::null_mut(), Ordering::SeqCst),
        ));
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
        assert!(cell.holds_idle());
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
        let cell: HandBack<u32> = HandBack::new(false);
        assert!(cell.bar_and_drain(bar::WAITERS).is_none());
        assert!(cell.bar_and_drain(bar::OVER_SIZE).is_none());
        cell.unbar(bar::WAITERS);
        assert!(ids_u32(cell.park(Box::new(1))) == [1], "still over size");
        cell.unbar(bar::OVER_SIZE);
        assert!(ids_u32(cell.park(Box::new(2))).is_empty());
        let off: HandBack<u32> = HandBack::new(true);
        assert_eq!(ids_u32(off.park(Box::new(3))), [3], "off for good");
        assert!(off.take().is_none());
    }

    fn ids_u32(handed: HandedBack<u32>) -> Vec<u32> {
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
            assert!(!cell.holds_idle(), "a value was left parked past the bar");
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3]);
        }
    }

    /// A `park` that read the cell open just before the bar went up does not park:
    /// its compare-and-swap expected the open cell and finds the marker. (With a swap
    /// and a later read of the bar, such a value sat in the barred cell on its way back,
    /// and a holder of the lock that took it skipped the rules of the locked return:
    /// upkeep put one in the idle list while a caller waited.)
    #[test]
    fn a_park_that_read_the_cell_open_before_the_bar_finds_it_barred() {
        let cell = HandBack::<u32>::new(false);
        // The load at the start of such a `park`.
        let seen = cell.cell.load(Ordering::SeqCst);
        assert!(cell.bar_and_drain(bar::WAITERS).is_none());
        let value = Box::into_raw(Box::new(7));
        let exchanged = cell
            .cell
            .compare_exchange(seen, value, Ordering::SeqCst, Ordering::SeqCst);
        assert!(
            exchanged.is_err_and(is_barred),
            "the exchange fails and shows the bar"
        );
        assert_eq!(
            HandBack::owned(value).map(|b| *b),
            Some(7),
            "still the parker's"
        );
        assert!(!cell.holds_idle());
        assert!(cell.bar_and_drain(bar::CLOSED).is_none());
        cell.unbar(bar::WAITERS);
        assert!(
            !cell.holds_idle() && cell.take().is_none(),
            "closed: still barred"
        );
        assert_eq!(ids_u32(cell.park(Box::new(8))), [8]);
    }

    /// A bar raised while the bar is up drains nothing, and needs not: under real
    /// threads racing a parker, every value still comes out exactly once and none is
    /// left parked.
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
            assert!(!cell.holds_idle(), "a value was left parked past the bar");
        }
    }
}

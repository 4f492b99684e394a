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
//!
//! # The owner's reference travels with the value
//! A checkout holds a strong reference to the pool (`O`, the owner of the cell), and a
//! return drops it: two atomic read-modify-writes of one count that every core shares,
//! which cost as much as the rest of a checkout from the cell. So the reference is not
//! dropped and cloned again: [`park`](HandBack::park) takes it with the value and keeps
//! it inside the parked box ([`Carried`]), and whoever takes the box out, by any of
//! the cell's exits, gets it back beside the value. The cell's API hands values and
//! references in and out only as pairs, so none is dropped or made up on the way.
//!
//! A parked value keeps its owner alive, and the owner owns the cell: a cycle. The
//! owner breaks it by barring the cell for good once nothing else can use it (the pool
//! does so when its last handle is dropped, [`bar::ORPHANED`]), which drains the cell.
//!
//! A parker gives its reference away with the value: the moment its compare-and-swap
//! succeeds, a taker on another thread may drop the last reference and free the owner,
//! cell included. So `park` reaches the cell through a raw pointer it took from the
//! reference before giving it away, and touches nothing after the compare-and-swap
//! that parked the value, as `Arc`'s own `drop` touches nothing after its decrement.

use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::Arc;

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
    /// The owner's last handle is gone: a parked value would keep it alive for ever.
    pub(crate) const ORPHANED: usize = 1 << 4;
}

/// The owner's reference a parked value carries, with the owner's type erased (the
/// value's type does not name its owner's). Empty whenever the value is out of the
/// cell; only [`HandBack`] fills and empties it, with the owner's type it was given.
pub(crate) struct Carried(Option<NonNull<()>>);

impl Carried {
    pub(crate) const EMPTY: Carried = Carried(None);

    fn put<O>(&mut self, owner: Arc<O>) {
        debug_assert!(self.0.is_none(), "a value carries one reference at most");
        let owner = NonNull::new(Arc::into_raw(owner).cast_mut()).expect("an `Arc` is never null");
        self.0 = Some(owner.cast());
    }

    /// # Safety
    /// `O` is the type the reference was [`put`](Self::put) with.
    #[allow(unsafe_code)]
    unsafe fn take<O>(&mut self) -> Option<Arc<O>> {
        // SAFETY: the pointer came from `Arc::into_raw` of an `Arc<O>` (the caller's
        // promise) and is taken out once.
        self.0
            .take()
            .map(|owner| unsafe { Arc::from_raw(owner.as_ptr().cast::<O>().cast_const()) })
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        debug_assert!(
            self.0.is_none(),
            "a value dropped while carrying its owner's reference leaks the owner"
        );
    }
}

// SAFETY: the pointer is an `Arc<O>` moved along with the value, which needs `O: Send +
// Sync` to be sent or shared; `HandBack<T, O>`, the only one to fill it, requires that.
#[allow(unsafe_code)]
unsafe impl Send for Carried {}
#[allow(unsafe_code)]
unsafe impl Sync for Carried {}

/// A value that can be parked: it has room for its owner's reference.
pub(crate) trait Carries {
    fn carried(&mut self) -> &mut Carried;
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

/// One boxed value, parked and taken without a lock, unless barred, together with a
/// reference to the cell's owner `O` (see the module docs).
pub(crate) struct HandBack<T: Carries, O> {
    /// Null, the parked box, or, while `bar` is not 0, the marker [`barred`].
    cell: AtomicPtr<T>,
    /// The reasons the cell is barred ([`bar`]); changed only under the pool's lock.
    bar: AtomicUsize,
    /// Owns the parked box and the reference it carries (for drop checking).
    _owns: PhantomData<(Box<T>, Arc<O>)>,
}

// SAFETY: the cell moves a `Box<T>` and an `Arc<O>` from the thread that parks them to
// the thread that takes them, and nothing else: sharing or sending the cell needs what
// sending both needs, as for a `Mutex<Option<(Box<T>, Arc<O>)>>`.
#[allow(unsafe_code)]
unsafe impl<T: Carries + Send, O: Send + Sync> Send for HandBack<T, O> {}
#[allow(unsafe_code)]
unsafe impl<T: Carries + Send, O: Send + Sync> Sync for HandBack<T, O> {}

/// What [`HandBack::park`] gives back, to return through the locked path with the
/// reference beside it.
#[must_use = "values handed back must be returned through the locked path"]
pub(crate) enum HandedBack<T, O> {
    /// Parked: the cell has the value and the reference.
    Parked,
    /// The cell is barred: the parker's own value and reference.
    Refused(Box<T>, Arc<O>),
    /// Parked in place of this value, which comes back with the reference its own
    /// parker left in the cell.
    Displaced(Box<T>, Arc<O>),
}

// The tests only count what came back.
#[cfg(test)]
impl<T, O> IntoIterator for HandedBack<T, O> {
    type Item = Box<T>;
    type IntoIter = std::option::IntoIter<Box<T>>;
    fn into_iter(self) -> Self::IntoIter {
        match self {
            HandedBack::Parked => None,
            HandedBack::Refused(value, _) | HandedBack::Displaced(value, _) => Some(value),
        }
        .into_iter()
    }
}

impl<T: Carries, O> HandBack<T, O> {
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

    /// Takes the parked value and the reference it carried, unless the cell is barred
    /// or empty.
    #[inline]
    pub(crate) fn take(&self) -> Option<(Box<T>, Arc<O>)> {
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

    /// Parks `value` with `owner`, the reference to the cell's owner, in the cell
    /// `cell` finds in it, unless the cell is barred; see [`HandedBack`]. Once parked,
    /// both are the cell's, and the owner may be gone the next moment: this call reads
    /// nothing more of the cell (see the module docs).
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) fn park(
        owner: Arc<O>,
        cell: fn(&O) -> &Self,
        mut value: Box<T>,
    ) -> HandedBack<T, O> {
        let this: *const Self = cell(&owner);
        // From here `value` holds the reference that keeps `*this` alive, until the
        // compare-and-swap that publishes it.
        value.carried().put(owner);
        let new = Box::into_raw(value);
        // SAFETY: `new`, not yet published, keeps the owner and so `*this` alive; each
        // access below reaches the cell anew through the pointer, and none follows the
        // compare-and-swap that succeeds.
        let mut current = unsafe { (*this).cell.load(Ordering::SeqCst) };
        loop {
            if is_barred(current) {
                let (value, owner) = Self::owned(new).expect("the parker's own box");
                return HandedBack::Refused(value, owner);
            }
            // SAFETY: as above; this exchange is the last access if it succeeds.
            let exchanged = unsafe {
                (*this)
                    .cell
                    .compare_exchange_weak(current, new, Ordering::SeqCst, Ordering::SeqCst)
            };
            match exchanged {
                Ok(displaced) => {
                    return match Self::owned(displaced) {
                        Some((value, owner)) => HandedBack::Displaced(value, owner),
                        None => HandedBack::Parked,
                    }
                }
                Err(now) => current = now,
            }
        }
    }

    /// Raises the bar for `reason` and, if the bar was down, drains the cell; for a
    /// holder of the pool's lock, under which alone the bar is raised and lifted. A raise
    /// for a reason already up is one load, and one while another reason is up changes
    /// only the bar word: the cell is empty already. That matters to a pool that runs
    /// dry: every caller that finds no idle connection passes here.
    pub(crate) fn bar_and_drain(&self, reason: usize) -> Option<(Box<T>, Arc<O>)> {
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

    /// Whether the bar is up for `reason` (a snapshot).
    pub(crate) fn is_barred_for(&self, reason: usize) -> bool {
        self.bar.load(Ordering::SeqCst) & reason != 0
    }

    /// Whether an idle value is parked now (a snapshot; a barred cell is empty).
    pub(crate) fn holds_idle(&self) -> bool {
        is_parked(self.cell.load(Ordering::SeqCst))
    }

    /// The box `p` points to (none for null or the marker), owned, and the reference
    /// it carried.
    #[allow(unsafe_code)]
    fn owned(p: *mut T) -> Option<(Box<T>, Arc<O>)> {
        if !is_parked(p) {
            return None;
        }
        // SAFETY: any other pointer came from `Box::into_raw` in `park` and was just
        // taken out of the cell by the caller's successful swap or compare-and-swap,
        // or never got into it (`park`'s failed exchange): the caller is its only owner.
        let mut value = unsafe { Box::from_raw(p) };
        // SAFETY: `park` put an `Arc<O>` into every box it made.
        let owner = unsafe { value.carried().take::<O>() }.expect("a parked box carries its owner");
        Some((value, owner))
    }
}

impl<T: Carries, O> Drop for HandBack<T, O> {
    fn drop(&mut self) {
        // A box parked here would carry a reference to the owner, which is being
        // dropped, so there is none when the owner is the one holding the cell.
        drop(Self::owned(
            self.cell.swap(ptr::null_mut(), Ordering::SeqCst),
        ));
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as Count;

    /// A parked value that counts its drops.
    struct Tracked {
        id: u32,
        dropped: Arc<Count>,
        carried: Carried,
    }

    impl Tracked {
        fn boxed(id: u32, dropped: &Arc<Count>) -> Box<Self> {
            Box::new(Tracked {
                id,
                dropped: Arc::clone(dropped),
                carried: Carried::EMPTY,
            })
        }
    }

    impl Carries for Tracked {
        fn carried(&mut self) -> &mut Carried {
            &mut self.carried
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The cell's owner, as the pool is.
    struct Owner {
        cell: HandBack<Tracked, Owner>,
    }

    fn owner(off: bool) -> Arc<Owner> {
        Arc::new(Owner {
            cell: HandBack::new(off),
        })
    }

    fn cell_of(owner: &Owner) -> &HandBack<Tracked, Owner> {
        &owner.cell
    }

    fn park(owner: &Arc<Owner>, value: Box<Tracked>) -> HandedBack<Tracked, Owner> {
        HandBack::park(Arc::clone(owner), cell_of, value)
    }

    fn ids(handed: HandedBack<Tracked, Owner>) -> Vec<u32> {
        handed.into_iter().map(|t| t.id).collect()
    }

    fn id(taken: Option<(Box<Tracked>, Arc<Owner>)>) -> Option<u32> {
        taken.map(|(value, _)| value.id)
    }

    #[test]
    fn parks_one_value_and_hands_back_the_one_it_displaces() {
        let dropped = Arc::new(Count::new(0));
        let owner = owner(false);
        assert!(ids(park(&owner, Tracked::boxed(1, &dropped))).is_empty());
        assert!(owner.cell.holds_idle());
        assert_eq!(ids(park(&owner, Tracked::boxed(2, &dropped))), [1]);
        assert_eq!(id(owner.cell.take()), Some(2));
        assert!(owner.cell.take().is_none());
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "both were dropped once");
    }

    /// The reference a parker gives with its value is the one whoever takes the value
    /// out gets: the owner's count does not move on the way.
    #[test]
    fn the_owners_reference_travels_with_the_value() {
        let dropped = Arc::new(Count::new(0));
        let owner = owner(false);
        assert!(matches!(
            park(&owner, Tracked::boxed(1, &dropped)),
            HandedBack::Parked
        ));
        assert_eq!(Arc::strong_count(&owner), 2, "the cell holds one");
        match park(&owner, Tracked::boxed(2, &dropped)) {
            HandedBack::Displaced(value, carried) => {
                assert_eq!(value.id, 1);
                assert!(Arc::ptr_eq(&carried, &owner));
                assert_eq!(Arc::strong_count(&owner), 3, "the cell's and the one back");
            }
            _ => panic!("the first value is displaced"),
        }
        assert_eq!(Arc::strong_count(&owner), 2);
        let (value, carried) = owner.cell.take().expect("parked");
        assert_eq!(value.id, 2);
        assert!(Arc::ptr_eq(&carried, &owner));
        drop(carried);
        assert_eq!(
            Arc::strong_count(&owner),
            1,
            "nothing leaked, nothing made up"
        );
    }

    #[test]
    fn a_barred_cell_takes_nothing_and_refuses_to_park() {
        let dropped = Arc::new(Count::new(0));
        let owner = owner(false);
        assert!(ids(park(&owner, Tracked::boxed(1, &dropped))).is_empty());
        assert_eq!(
            id(owner.cell.bar_and_drain(bar::WAITERS)),
            Some(1),
            "raising the bar drains the cell"
        );
        assert!(
            owner.cell.take().is_none(),
            "barred: the locked path serves"
        );
        match park(&owner, Tracked::boxed(2, &dropped)) {
            HandedBack::Refused(value, carried) => {
                assert_eq!(value.id, 2);
                assert!(Arc::ptr_eq(&carried, &owner), "the parker's own, back");
            }
            _ => panic!("a barred cell refuses"),
        }
        assert!(owner.cell.bar_and_drain(bar::WAITERS).is_none());
        owner.cell.unbar(bar::WAITERS);
        assert!(ids(park(&owner, Tracked::boxed(3, &dropped))).is_empty());
        assert_eq!(Arc::strong_count(&owner), 2);
        // The parked value keeps its owner alive: only barring the cell for good
        // breaks the cycle.
        let weak = Arc::downgrade(&owner);
        let (value, carried) = owner
            .cell
            .bar_and_drain(bar::ORPHANED)
            .expect("the parked one");
        assert_eq!(value.id, 3);
        drop((value, carried));
        drop(owner);
        assert!(weak.upgrade().is_none(), "the owner is gone");
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reasons_are_lifted_one_at_a_time() {
        let dropped = Arc::new(Count::new(0));
        let owner = owner(false);
        assert!(owner.cell.bar_and_drain(bar::WAITERS).is_none());
        assert!(owner.cell.bar_and_drain(bar::OVER_SIZE).is_none());
        owner.cell.unbar(bar::WAITERS);
        assert_eq!(
            ids(park(&owner, Tracked::boxed(1, &dropped))),
            [1],
            "still over size"
        );
        owner.cell.unbar(bar::OVER_SIZE);
        assert!(ids(park(&owner, Tracked::boxed(2, &dropped))).is_empty());
        assert_eq!(id(owner.cell.take()), Some(2));
        let off = self::owner(true);
        assert_eq!(
            ids(park(&off, Tracked::boxed(3, &dropped))),
            [3],
            "off for good"
        );
        assert!(off.cell.take().is_none());
        assert_eq!(Arc::strong_count(&off), 1);
    }

    /// The handshake under real threads: a thread parks while another bars and
    /// drains; afterwards the cell is empty and every value came out exactly once,
    /// each with a reference.
    #[test]
    fn barring_leaves_nothing_parked() {
        let dropped = Arc::new(Count::new(0));
        for _ in 0..2000 {
            let owner = owner(false);
            let parker = {
                let owner = Arc::clone(&owner);
                let dropped = Arc::clone(&dropped);
                std::thread::spawn(move || {
                    let mut out: Vec<u32> = Vec::new();
                    for v in 0..4 {
                        out.extend(ids(park(&owner, Tracked::boxed(v, &dropped))));
                    }
                    out
                })
            };
            let drained: Vec<u32> = id(owner.cell.bar_and_drain(bar::CLOSED))
                .into_iter()
                .collect();
            let mut all = parker.join().unwrap();
            all.extend(drained);
            assert!(
                !owner.cell.holds_idle(),
                "a value was left parked past the bar"
            );
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3]);
            assert_eq!(Arc::strong_count(&owner), 1, "every reference came back");
        }
    }

    /// A `park` that read the cell open just before the bar went up does not park:
    /// its compare-and-swap expected the open cell and finds the marker. (With a swap
    /// and a later read of the bar, such a value sat in the barred cell on its way back,
    /// and a holder of the lock that took it skipped the rules of the locked return:
    /// upkeep put one in the idle list while a caller waited.)
    #[test]
    fn a_park_that_read_the_cell_open_before_the_bar_finds_it_barred() {
        let dropped = Arc::new(Count::new(0));
        let owner = owner(false);
        // The load at the start of such a `park`.
        let seen = owner.cell.cell.load(Ordering::SeqCst);
        assert!(owner.cell.bar_and_drain(bar::WAITERS).is_none());
        let mut value = Tracked::boxed(7, &dropped);
        value.carried().put(Arc::clone(&owner));
        let value = Box::into_raw(value);
        let exchanged =
            owner
                .cell
                .cell
                .compare_exchange(seen, value, Ordering::SeqCst, Ordering::SeqCst);
        assert!(
            exchanged.is_err_and(is_barred),
            "the exchange fails and shows the bar"
        );
        assert_eq!(
            id(HandBack::<Tracked, Owner>::owned(value)),
            Some(7),
            "still the parker's"
        );
        assert!(!owner.cell.holds_idle());
        assert!(owner.cell.bar_and_drain(bar::CLOSED).is_none());
        owner.cell.unbar(bar::WAITERS);
        assert!(
            !owner.cell.holds_idle() && owner.cell.take().is_none(),
            "closed: still barred"
        );
        assert_eq!(ids(park(&owner, Tracked::boxed(8, &dropped))), [8]);
        assert_eq!(Arc::strong_count(&owner), 1);
    }

    /// A bar raised while the bar is up drains nothing, and needs not: under real
    /// threads racing a parker, every value still comes out exactly once and none is
    /// left parked.
    #[test]
    fn a_bar_already_up_leaves_nothing_to_drain() {
        let dropped = Arc::new(Count::new(0));
        for _ in 0..2000 {
            let owner = owner(false);
            let parker = {
                let owner = Arc::clone(&owner);
                let dropped = Arc::clone(&dropped);
                std::thread::spawn(move || {
                    (0..4)
                        .flat_map(|v| ids(park(&owner, Tracked::boxed(v, &dropped))))
                        .collect::<Vec<u32>>()
                })
            };
            let mut all: Vec<u32> = id(owner.cell.bar_and_drain(bar::WAITERS))
                .into_iter()
                .collect();
            assert!(owner.cell.bar_and_drain(bar::WAITERS).is_none());
            assert!(owner.cell.bar_and_drain(bar::CLOSED).is_none());
            all.extend(parker.join().unwrap());
            all.sort_unstable();
            assert_eq!(all, [0, 1, 2, 3], "each came out once");
            assert!(
                !owner.cell.holds_idle(),
                "a value was left parked past the bar"
            );
            assert_eq!(Arc::strong_count(&owner), 1, "every reference came back");
        }
    }
}

//! A FIFO queue of parked callers, each of which can be handed a value.
//!
//! Guarantees, relied on by the pool:
//! - **First come, first served**: [`WaitQueue::pop_front`] yields callers in the
//!   order of [`WaitQueue::push_back`]. A caller that must wait again because its turn
//!   came to nothing (its connection failed its check) rejoins with
//!   [`WaitQueue::rejoin`] at the place it first had: ahead of everyone who joined
//!   after it did, as deadpool's and sqlx's callers keep their permit.
//! - **Hand-off without a race**: a value given with [`WaitQueue::grant`] stays in the
//!   caller's slot until the caller takes it with [`WaitKey::try_take`] (no lock),
//!   [`WaitQueue::poll`] or, if the caller gave up, [`WaitQueue::cancel`] gives it
//!   back. A grant is therefore never lost: whoever cancels a wait must pass any
//!   granted value on.
//! - **A granted caller takes its value without the lock**: a grant is published by
//!   one atomic store, and the caller's [`WaitKey::try_take`] is one load and one
//!   store on its own slot. A pool that runs dry hands every return to a waiter, and
//!   the pool's lock, taken a third time per checkout to pick the grant up, was the
//!   cache line the two cores fought over most (see [`Cell`]).
//! - **O(1)** push, and **amortised O(1)** pop, cancel and expiry, so thousands of
//!   cancelled or expired waits cost no scanning.
//! - **Watched deadlines in line order**: a caller pushed with a deadline to watch
//!   ([`WaitQueue::push_back`] with `Some`) is accepted only if no watched caller
//!   ahead of it has a later deadline ([`WaitQueue::in_watch_order`]), so the earliest
//!   watched deadline is always the first watched caller's, and
//!   [`WaitQueue::expire_due`] finds every expired one by walking from the front until
//!   the first that is not, passing over only unwatched callers (and stale entries,
//!   which it clears from the front as it goes).
//!
//! The callers live in a slab; their order is a ring of `(slot, ticket)` entries
//! beside it. A cancelled caller's slot is freed at once and its entry left behind,
//! recognised as stale because the slot no longer waits under that ticket; so is an
//! expired caller's. Stale entries are dropped when they reach the front, and swept out
//! once they outnumber the live ones, so the ring holds at most `2 × waiting + 17`.
//! A doubly linked list threaded through the slab (what this replaced) wrote the
//! neighbours' slots on every push and pop, and with callers on two cores each of
//! those writes moved a cache line between them while the pool's lock was held: the
//! ring is written at its two ends only, eight entries to a line.
//!
//! The queue is not synchronised: the pool keeps it inside its state mutex. Only a
//! granted caller's slot is reached without it, through the caller's [`WaitKey`].
//!
//! Slots live in chunks that never move or shrink while the queue lives (a growing
//! `Vec` would move them under a caller reading its grant), so a key can point at its
//! slot. A slot a caller took its grant from is marked so, and reused under the lock
//! once a later caller needs one ([`WaitQueue::occupy`]); until then it sits in
//! `granted`, the slots handed a value, in the order they were.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::task::Waker;
use std::time::Instant;

use crate::sync::{AtomicU8, Ordering, UnsafeCell};

/// Slab indices are 32-bit: slots stay small, and no pool has 4 billion callers waiting.
type Index = u32;
const NIL: Index = Index::MAX;

/// The least length of `granted` at which [`WaitQueue::reuse_taken`] sweeps it.
const SWEEP_GRANTED_AT_LEAST: usize = 16;

/// Tells a caller's entry in the ring from a stale one left by an earlier occupant of
/// its slot. It wraps after 2^32 pushes, but a stale entry cannot live that long: it
/// leaves the ring when a pop reaches it or a sweep runs, so while it stays, every
/// entry pushed after it is still behind it, and 2^32 of them would be a 32 GiB ring.
/// Only a rejoining caller is put ahead of it, and each of those first needed a
/// connection to fail its check: 2^32 of them would take years of failures.
type Ticket = u32;

enum Slot<T> {
    Vacant {
        next_free: Index,
    },
    Queued {
        ticket: Ticket,
        /// Its place in line: the ticket it first joined with (see [`Place`]).
        place: Ticket,
        waker: Option<Waker>,
        /// The deadline someone else (the pool's watchdog) keeps for this caller.
        watch: Option<Instant>,
    },
    Granted {
        value: T,
    },
}

/// Slots per chunk: a chunk is 2 KiB, allocated the first time a pool's callers wait
/// (and as more wait at once than the chunks hold); at 10,000 waiting callers the last
/// chunk's unused slots are a fraction of a per cent.
const CHUNK: usize = 32;

/// Who may touch a [`Cell`]'s slot, in its `state`.
mod state {
    /// Vacant or queued: the holder of the pool's lock.
    pub(super) const LOCKED: u8 = 0;
    /// Granted: the caller, alone; published with a release store, under the lock.
    pub(super) const GRANTED: u8 = 1;
    /// Its grant taken: the holder of the lock again, once it has seen this with an
    /// acquire load (the caller's last access to the slot came before its release
    /// store of this).
    pub(super) const TAKEN: u8 = 2;
}

/// One caller's slot, at a fixed address while the queue lives.
///
/// The slot is plain data guarded by `state` ([`state`]): the lock's holder reads and
/// writes it while it is `LOCKED`, and never while `GRANTED` (it checks `state` before it
/// looks at a slot, see [`WaitQueue::is_live`]); the granted caller takes the value and
/// marks it `TAKEN`, after which it never touches the slot again.
pub(crate) struct Cell<T> {
    state: AtomicU8,
    /// The slot's index in the queue, fixed when the cell is made.
    index: Index,
    slot: UnsafeCell<Slot<T>>,
}

// SAFETY: the slot moves between threads only as a `T` or a `Waker` (both `Send`), and
// `state` gives it one accessor at a time: the lock's holder, or the granted caller.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Cell<T> {}

/// A key naming one caller's place, for the queue that issued it only.
///
/// Neither `Copy` nor `Clone`, and spent by whatever takes the caller's value
/// ([`try_take`](Self::try_take) and [`WaitQueue::poll`] take it out of the caller's
/// `Option`, [`WaitQueue::cancel`] consumes it): a key left over after its slot was
/// reused could otherwise take another caller's grant while that caller takes it too.
pub(crate) struct WaitKey<T>(NonNull<Cell<T>>);

impl<T> PartialEq for WaitKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for WaitKey<T> {}
impl<T> std::fmt::Debug for WaitKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WaitKey").field(&self.0).finish()
    }
}

// SAFETY: a key is a pointer to a `Cell`, which is `Sync` for `T: Send`; it is used
// only as `WaitQueue`'s methods and `try_take` say, whichever thread holds it.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for WaitKey<T> {}

impl<T> WaitKey<T> {
    fn cell(&self) -> &Cell<T> {
        // SAFETY: the queue that issued the key is alive (the key's contract), and it
        // never frees or moves a cell while it lives.
        #[allow(unsafe_code)]
        unsafe {
            self.0.as_ref()
        }
    }

    fn index(&self) -> Index {
        self.cell().index
    }

    /// The caller's value, if it was granted one, taken without the pool's lock; the
    /// key is then spent (taken out of `key`). `None`: not granted yet (look again
    /// under the lock, which also stores the waker), and the key stays.
    ///
    /// # Safety
    /// The queue that issued the key must be alive.
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) unsafe fn try_take(key: &mut Option<Self>) -> Option<T> {
        let value = key.as_ref()?.take_granted()?;
        *key = None;
        Some(value)
    }

    /// The caller's value, if it was granted one; the key must be dropped if it was.
    #[inline]
    fn take_granted(&self) -> Option<T> {
        let cell = self.cell();
        if cell.state.load(Ordering::Acquire) != state::GRANTED {
            return None;
        }
        // SAFETY: `GRANTED`, seen with an acquire load that pairs with the grant's
        // release store: the grant's write of the slot is visible, and the slot is
        // this caller's alone until it stores `TAKEN`; that happens once, as the key,
        // the only one to this slot, is spent after this.
        #[allow(unsafe_code)]
        let slot = cell
            .slot
            .with_mut(|slot| unsafe { std::ptr::replace(slot, Slot::Vacant { next_free: NIL }) });
        cell.state.store(state::TAKEN, Ordering::Release);
        match slot {
            Slot::Granted { value } => Some(value),
            Slot::Vacant { .. } | Slot::Queued { .. } => {
                unreachable!("a granted cell holds its value")
            }
        }
    }

    /// A second key to the same slot, for tests that compare keys.
    #[cfg(test)]
    fn dup(&self) -> Self {
        WaitKey(self.0)
    }
}

/// Where a caller first stood in line, kept across leaving and rejoining it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place(Ticket);

/// The first caller, just taken out of line: to be handed its value with
/// [`WaitQueue::grant`] before the lock is released (its slot is written once, then).
#[must_use = "a popped caller must be granted a value"]
pub(crate) struct Popped {
    index: Index,
    waker: Option<Waker>,
}

/// A place in the ring: live while its slot is queued under the same ticket.
#[derive(Clone, Copy)]
struct Entry {
    index: Index,
    ticket: Ticket,
}

pub(crate) struct WaitQueue<T> {
    /// The slots, [`CHUNK`] to a chunk: slot `i` is `chunks[i / CHUNK][i % CHUNK]`.
    chunks: Vec<Box<[Cell<T>; CHUNK]>>,
    /// Slots made so far.
    made: Index,
    free: Index,
    /// Slots granted a value, in grant order: each stays here until its caller has
    /// taken the value (`TAKEN`) and a later caller reuses it.
    granted: VecDeque<Index>,
    /// When `granted` is this long, [`reuse_taken`](Self::reuse_taken) sweeps it for
    /// taken slots behind an untaken first one.
    sweep_granted_at: usize,
    line: VecDeque<Entry>,
    next_ticket: Ticket,
    queued: usize,
    /// Queued callers with a watched deadline, and the latest such deadline pushed
    /// since there last were none.
    watched: usize,
    latest_watched: Option<Instant>,
}

/// What a caller finds when it polls its place.
pub(crate) enum Polled<T> {
    /// Its value; the key is spent, and its slot reused once a later caller needs one.
    Ready(T),
    /// Still waiting; the waker was stored. `watched`: its deadline is still kept by
    /// the watchdog.
    Pending { watched: bool },
}

impl<T> WaitQueue<T> {
    pub(crate) const fn new() -> Self {
        WaitQueue {
            chunks: Vec::new(),
            made: 0,
            free: NIL,
            granted: VecDeque::new(),
            sweep_granted_at: SWEEP_GRANTED_AT_LEAST,
            line: VecDeque::new(),
            next_ticket: 0,
            queued: 0,
            watched: 0,
            latest_watched: None,
        }
    }

    #[inline]
    fn cell(&self, index: Index) -> &Cell<T> {
        &self.chunks[index as usize / CHUNK][index as usize % CHUNK]
    }

    /// Whether the lock's holder owns slot `index` now (vacant or queued). Relaxed:
    /// only the lock's holders store `LOCKED` and `GRANTED`, and the lock orders their
    /// stores before this load; the caller's `TAKEN` only ever follows `GRANTED`.
    fn is_locked(&self, index: Index) -> bool {
        self.cell(index).state.load(Ordering::Relaxed) == state::LOCKED
    }

    /// Slot `index`, which must be vacant or queued (the lock's holder's).
    fn slot(&self, index: Index) -> &Slot<T> {
        debug_assert!(self.is_locked(index), "a granted slot is its caller's");
        // SAFETY: `LOCKED`, so no caller touches the slot, and the lock's holder holds
        // `&self`: no `&mut` to it exists.
        #[allow(unsafe_code)]
        self.cell(index).slot.with(|slot| unsafe { &*slot })
    }

    /// Slot `index`, which must be vacant or queued (the lock's holder's).
    fn slot_mut(&mut self, index: Index) -> &mut Slot<T> {
        debug_assert!(self.is_locked(index), "a granted slot is its caller's");
        // SAFETY: as in `slot`, and `&mut self` excludes every other reference.
        #[allow(unsafe_code)]
        self.cell(index).slot.with_mut(|slot| unsafe { &mut *slot })
    }

    fn key(&self, index: Index) -> WaitKey<T> {
        WaitKey(NonNull::from(self.cell(index)))
    }

    /// The index of `key`'s slot, checking (in debug builds) that this queue issued it.
    fn index_of(&self, key: &WaitKey<T>) -> Index {
        let index = key.index();
        debug_assert!(
            index < self.made && std::ptr::eq(self.cell(index), key.0.as_ptr()),
            "a key of another queue"
        );
        index
    }

    /// Callers still in line.
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
    /// Returns its key and its place (to [`rejoin`](Self::rejoin) at, should its turn
    /// come to nothing).
    #[inline]
    pub(crate) fn push_back(
        &mut self,
        waker: Option<Waker>,
        watch: Option<Instant>,
    ) -> (WaitKey<T>, Place) {
        if let Some(deadline) = watch {
            debug_assert!(self.in_watch_order(deadline));
            self.watched += 1;
            self.latest_watched = Some(deadline);
        }
        let (index, ticket) = self.occupy(waker, watch, None);
        self.make_room_in_line();
        self.line.push_back(Entry { index, ticket });
        self.queued += 1;
        (self.key(index), Place(ticket))
    }

    /// A caller joining the line: at its `place` if it stood there before (see
    /// [`rejoin`](Self::rejoin); it then has no deadline to watch), else at the back.
    /// Inlined: every caller that waits passes here, nearly always to `push_back`.
    #[inline]
    pub(crate) fn join(
        &mut self,
        waker: Option<Waker>,
        watch: Option<Instant>,
        place: Option<Place>,
    ) -> (WaitKey<T>, Place) {
        match place {
            Some(place) => {
                debug_assert!(watch.is_none(), "a caller rejoining keeps its own deadline");
                (self.rejoin(waker, place), place)
            }
            None => self.push_back(waker, watch),
        }
    }

    /// Puts a caller back at `place`, where it first stood: ahead of every caller in
    /// line that first joined after it, behind the rest. Not watched (a deadline there
    /// could be out of the watchdog's order). O(position), for the rare caller whose
    /// turn came to nothing (at most one per connection that failed its check): not
    /// for callers coming back in bulk. Places more than 2^31 tickets apart compare
    /// the wrong way round, which can only misorder callers, not lose one.
    pub(crate) fn rejoin(&mut self, waker: Option<Waker>, place: Place) -> WaitKey<T> {
        let (index, ticket) = self.occupy(waker, None, Some(place));
        // Tickets wrap: "after" is within half the ticket space ahead.
        let after = |theirs: Place| (theirs.0.wrapping_sub(place.0) as i32) > 0;
        let position = self
            .line
            .iter()
            .position(|&entry| self.place_of(entry).is_some_and(after))
            .unwrap_or(self.line.len());
        self.make_room_in_line();
        self.line.insert(position, Entry { index, ticket });
        self.queued += 1;
        self.key(index)
    }

    /// The ring grows by a quarter when full (entries are 8 bytes): with thousands
    /// waiting, a doubled ring would hold up to as many empty entries as used ones.
    fn make_room_in_line(&mut self) {
        if self.line.len() == self.line.capacity() {
            self.line.reserve_exact((self.line.len() / 4).max(16));
        }
    }

    /// The place of the caller `entry` names, if it is live.
    fn place_of(&self, entry: Entry) -> Option<Place> {
        if !self.is_locked(entry.index) {
            // Granted since: the entry is stale, and the slot its caller's.
            return None;
        }
        match *self.slot(entry.index) {
            Slot::Queued { ticket, place, .. } if ticket == entry.ticket => Some(Place(place)),
            _ => None,
        }
    }

    /// Where the caller holding `key` first stood in line.
    #[cfg(test)]
    fn place(&self, key: &WaitKey<T>) -> Place {
        match *self.slot(self.index_of(key)) {
            Slot::Queued { place, .. } => Place(place),
            _ => unreachable!("the place of a caller not in line"),
        }
    }

    /// A slot for a caller joining now, under a fresh ticket; its place is `place`, or
    /// this ticket for a first join.
    #[inline]
    fn occupy(
        &mut self,
        waker: Option<Waker>,
        watch: Option<Instant>,
        place: Option<Place>,
    ) -> (Index, Ticket) {
        let ticket = self.next_ticket;
        self.next_ticket = ticket.wrapping_add(1);
        let slot = Slot::Queued {
            ticket,
            place: place.map_or(ticket, |place| place.0),
            waker,
            watch,
        };
        let index = match self.pop_free() {
            Some(index) => index,
            None => match self.reuse_taken() {
                Some(index) => index,
                None => self.make_slot(),
            },
        };
        *self.slot_mut(index) = slot;
        (index, ticket)
    }

    /// The first slot on the free list, taken off it.
    #[inline]
    fn pop_free(&mut self) -> Option<Index> {
        let index = self.free;
        if index == NIL {
            return None;
        }
        let Slot::Vacant { next_free } = *self.slot(index) else {
            unreachable!("free list points at an occupied slot")
        };
        self.free = next_free;
        Some(index)
    }

    /// A new vacant slot, in a new chunk if the last is full.
    fn make_slot(&mut self) -> Index {
        let index = self.made;
        if (index as usize).is_multiple_of(CHUNK) {
            let chunk = std::array::from_fn(|offset| Cell {
                state: AtomicU8::new(state::LOCKED),
                index: index
                    .checked_add(offset as Index)
                    .filter(|&i| i != NIL)
                    .expect("fewer than 2^32 callers wait"),
                slot: UnsafeCell::new(Slot::Vacant { next_free: NIL }),
            });
            self.chunks.push(Box::new(chunk));
        }
        self.made += 1;
        index
    }

    /// A slot whose caller has taken its grant, to reuse now: the first granted, if it
    /// is taken (callers mostly take their grants in the order given) or, once
    /// `granted` has grown to twice its length at the last sweep, any: a caller that
    /// holds a grant untaken (its task not run for a while) keeps only its own slot
    /// from reuse, not every slot granted after it.
    #[inline]
    fn reuse_taken(&mut self) -> Option<Index> {
        let &first = self.granted.front()?;
        if self.take_back(first) {
            self.granted.pop_front();
            if self.granted.is_empty() {
                // A burst's threshold does not outlive it.
                self.sweep_granted_at = SWEEP_GRANTED_AT_LEAST;
            }
            return Some(first);
        }
        if self.granted.len() < self.sweep_granted_at {
            return None;
        }
        self.sweep_taken()
    }

    /// Reuses every taken slot in `granted`, returning one of them.
    #[cold]
    fn sweep_taken(&mut self) -> Option<Index> {
        let mut granted = std::mem::take(&mut self.granted);
        granted.retain(|&index| {
            if self.take_back(index) {
                self.release(index);
                false
            } else {
                true
            }
        });
        self.granted = granted;
        self.sweep_granted_at = (2 * self.granted.len()).max(SWEEP_GRANTED_AT_LEAST);
        self.pop_free()
    }

    /// If slot `index`'s caller has taken its grant, makes the slot the lock's holder's
    /// again.
    #[inline]
    fn take_back(&self, index: Index) -> bool {
        let cell = self.cell(index);
        // Acquire: pairs with the caller's release store, after which it never touches
        // the slot again.
        if cell.state.load(Ordering::Acquire) != state::TAKEN {
            return false;
        }
        cell.state.store(state::LOCKED, Ordering::Relaxed);
        true
    }

    /// Whether `entry` still names a caller in line.
    fn is_live(&self, entry: Entry) -> bool {
        self.place_of(entry).is_some()
    }

    /// Takes the first caller out of line; give it its value with [`grant`](Self::grant)
    /// at once, under the same lock.
    pub(crate) fn pop_front(&mut self) -> Option<Popped> {
        if self.queued == 0 {
            return None;
        }
        loop {
            let entry = self.line.pop_front().expect("a queued caller has an entry");
            if self.is_live(entry) {
                let waker = self.leave_line(entry.index);
                if self.queued == 0 {
                    // Whatever is left is stale.
                    self.line.clear();
                }
                return Some(Popped {
                    index: entry.index,
                    waker,
                });
            }
        }
    }

    /// Gives a popped caller its value; returns the waker to wake once the lock is
    /// released.
    pub(crate) fn grant(&mut self, popped: Popped, value: T) -> Option<Waker> {
        debug_assert!(
            matches!(
                self.slot(popped.index),
                Slot::Queued {
                    waker: None,
                    watch: None,
                    ..
                }
            ),
            "grant to a caller that was not just popped"
        );
        self.put_grant(popped.index, value);
        popped.waker
    }

    /// Writes `value` into slot `index`, out of line, and hands the slot to its caller.
    #[inline]
    fn put_grant(&mut self, index: Index, value: T) {
        *self.slot_mut(index) = Slot::Granted { value };
        // Release: the caller that sees `GRANTED` sees the value.
        self.cell(index)
            .state
            .store(state::GRANTED, Ordering::Release);
        self.granted.push_back(index);
    }

    /// The caller checks its place: takes its value if granted, else stores `waker`.
    pub(crate) fn poll(&mut self, key: &mut Option<WaitKey<T>>, waker: &Waker) -> Polled<T> {
        let Some(held) = key.as_ref() else {
            unreachable!("poll with a spent key")
        };
        let index = self.index_of(held);
        if let Some(value) = held.take_granted() {
            *key = None;
            return Polled::Ready(value);
        }
        let (stored, watched) = match self.slot_mut(index) {
            Slot::Queued {
                waker: stored,
                watch,
                ..
            } => (stored, watch.is_some()),
            Slot::Granted { .. } => unreachable!("a granted slot is not locked"),
            Slot::Vacant { .. } => unreachable!("poll with a released key"),
        };
        if !stored.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *stored = Some(waker.clone());
        }
        Polled::Pending { watched }
    }

    /// The caller gives up its place. Returns the value it had been granted, which the
    /// caller must pass on.
    pub(crate) fn cancel(&mut self, key: WaitKey<T>) -> Option<T> {
        let index = self.index_of(&key);
        if let Some(value) = key.take_granted() {
            // Its slot is reused from `granted`.
            return Some(value);
        }
        assert!(
            matches!(self.slot(index), Slot::Queued { .. }),
            "cancel with a released key"
        );
        // Its entry stays in the ring, stale from here on.
        self.leave_line(index);
        self.release(index);
        self.tidy();
        None
    }

    /// Keeps stale entries from piling up after callers leave the line other than by
    /// a pop: drops those at the front (where expired callers, the oldest, leave
    /// theirs), and sweeps the rest once they outnumber the live ones by 16, so each
    /// stale entry costs one removal, amortised.
    fn tidy(&mut self) {
        if self.queued == 0 {
            self.line.clear();
            return;
        }
        while let Some(&front) = self.line.front() {
            if self.is_live(front) {
                break;
            }
            self.line.pop_front();
        }
        if self.line.len() > 2 * self.queued + 16 {
            let mut line = std::mem::take(&mut self.line);
            line.retain(|&entry| self.is_live(entry));
            self.line = line;
        }
    }

    /// Puts slot `index`, the lock's holder's, on the free list.
    fn release(&mut self, index: Index) {
        let next_free = self.free;
        *self.slot_mut(index) = Slot::Vacant { next_free };
        self.free = index;
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
        let mut next = None;
        let mut any_expired = false;
        for position in 0..self.line.len() {
            let entry = self.line[position];
            if !self.is_live(entry) {
                continue;
            }
            let Slot::Queued { watch, .. } = self.slot(entry.index) else {
                unreachable!("a live entry's slot is queued")
            };
            match *watch {
                Some(deadline) if deadline > now => {
                    next = Some(deadline);
                    break;
                }
                // Granted, its entry goes stale.
                Some(_) => {
                    let waker = self.leave_line(entry.index);
                    self.put_grant(entry.index, expired());
                    wake(waker);
                    any_expired = true;
                }
                None => {}
            }
        }
        if any_expired {
            self.tidy();
        }
        next
    }

    #[cfg_attr(not(all(feature = "tokio", not(pool_model))), allow(dead_code))]
    /// Nobody keeps deadlines any more: every watched caller is told (woken) so it
    /// keeps its own.
    pub(crate) fn unwatch_all(&mut self, mut wake: impl FnMut(Option<Waker>)) {
        for position in 0..self.line.len() {
            if self.watched == 0 {
                break;
            }
            let entry = self.line[position];
            if !self.is_live(entry) {
                continue;
            }
            let Slot::Queued { watch, waker, .. } = self.slot_mut(entry.index) else {
                unreachable!("a live entry's slot is queued")
            };
            if watch.take().is_some() {
                wake(waker.clone());
                self.watched -= 1;
            }
        }
        self.watched = 0;
        self.latest_watched = None;
    }

    /// Counts a queued caller out of line, returning its waker; the slot's content is
    /// left for the caller to overwrite, and its entry in the ring goes stale.
    #[inline]
    fn leave_line(&mut self, index: Index) -> Option<Waker> {
        let (waker, watch) = match self.slot_mut(index) {
            Slot::Queued { waker, watch, .. } => (waker.take(), watch.take()),
            _ => unreachable!("a caller leaving the line was not in it"),
        };
        if watch.is_some() {
            self.watched -= 1;
            if self.watched == 0 {
                self.latest_watched = None;
            }
        }
        self.queued -= 1;
        waker
    }
}

#[cfg(test)]
impl Popped {
    fn key<T>(&self, queue: &WaitQueue<T>) -> WaitKey<T> {
        queue.key(self.index)
    }
}

/// The size of one slot in line, for the memory bound's test.
#[cfg(test)]
pub(crate) fn slot_size<T>() -> usize {
    std::mem::size_of::<Cell<T>>()
}

/// The size of one entry in the ring, for the memory bound's test.
#[cfg(test)]
pub(crate) fn entry_size() -> usize {
    std::mem::size_of::<Entry>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    /// Polls the caller `key` names, with a second key to its slot.
    fn poll<T>(q: &mut WaitQueue<T>, key: &WaitKey<T>) -> Polled<T> {
        q.poll(&mut Some(key.dup()), &noop())
    }

    /// Takes the caller's grant without the lock, with a second key to its slot.
    fn take<T>(key: &WaitKey<T>) -> Option<T> {
        // SAFETY: every test keeps its queue alive while it uses its keys.
        #[allow(unsafe_code)]
        unsafe {
            WaitKey::try_take(&mut Some(key.dup()))
        }
    }

    fn at(base: Instant, ms: u64) -> Instant {
        base + std::time::Duration::from_millis(ms)
    }

    #[test]
    fn watched_deadlines_must_not_go_backwards_and_reset_when_none_are_left() {
        let base = Instant::now();
        let mut q: WaitQueue<()> = WaitQueue::new();
        let a = q.push_back(None, Some(at(base, 10))).0;
        assert!(q.in_watch_order(at(base, 10)));
        assert!(!q.in_watch_order(at(base, 9)), "earlier than one in line");
        let b = q.push_back(None, None).0;
        assert!(
            !q.in_watch_order(at(base, 9)),
            "unwatched callers do not count"
        );
        assert_eq!(q.cancel(a.dup()), None);
        assert!(q.in_watch_order(at(base, 1)), "no watched caller is left");
        assert_eq!(q.cancel(b.dup()), None);
    }

    #[test]
    fn expire_due_expires_only_passed_deadlines_and_skips_unwatched_callers() {
        let base = Instant::now();
        let mut q: WaitQueue<&str> = WaitQueue::new();
        let own_timer = q.push_back(None, None).0;
        let early = q.push_back(Some(noop()), Some(at(base, 10))).0;
        let late = q.push_back(None, Some(at(base, 20))).0;
        let mut woken = 0;
        let next = q.expire_due(
            at(base, 15),
            || "expired",
            |w| woken += usize::from(w.is_some()),
        );
        assert_eq!(next, Some(at(base, 20)), "the next watched deadline");
        assert_eq!(woken, 1);
        assert!(matches!(poll(&mut q, &early), Polled::Ready("expired")));
        assert!(matches!(
            poll(&mut q, &late),
            Polled::Pending { watched: true }
        ));
        assert!(matches!(
            poll(&mut q, &own_timer),
            Polled::Pending { watched: false }
        ));
        assert_eq!(q.len(), 2);
        assert_eq!(q.expire_due(at(base, 20), || "expired", |_| {}), None);
        assert!(matches!(poll(&mut q, &late), Polled::Ready("expired")));
        assert_eq!(
            q.pop_front().map(|p| p.key(&q)),
            Some(own_timer),
            "the unwatched caller stays in line"
        );
    }

    #[test]
    fn unwatch_all_wakes_the_watched_and_leaves_them_in_line() {
        let base = Instant::now();
        let mut q: WaitQueue<()> = WaitQueue::new();
        let a = q.push_back(Some(noop()), Some(at(base, 10))).0;
        let b = q.push_back(Some(noop()), None).0;
        let mut woken = 0;
        q.unwatch_all(|w| woken += usize::from(w.is_some()));
        assert_eq!(woken, 1, "only the watched caller is told");
        assert!(matches!(
            poll(&mut q, &a),
            Polled::Pending { watched: false }
        ));
        assert!(q.in_watch_order(base), "no watched deadline is left");
        assert_eq!(q.expire_due(at(base, 100), || (), |_| {}), None);
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(a));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(b));
    }

    /// Callers served in vain rejoin where they first stood, whatever order they come
    /// back in: ahead of those who joined after them, and keeping that place.
    #[test]
    fn a_caller_rejoins_where_it_first_stood() {
        let mut q: WaitQueue<()> = WaitQueue::new();
        let a = q.push_back(None, None).0;
        let b = q.push_back(None, None).0;
        let c = q.push_back(None, None).0;
        let (place_a, place_b) = (q.place(&a), q.place(&b));
        for key in [a, b] {
            let popped = q.pop_front().unwrap();
            assert_eq!(popped.key(&q), key);
            let _ = q.grant(popped, ());
            assert!(matches!(poll(&mut q, &key), Polled::Ready(())));
        }
        let cancelled = q.push_back(None, None).0;
        assert_eq!(q.cancel(cancelled.dup()), None, "a stale entry in the way");
        let d = q.push_back(None, None).0;
        let b = q.rejoin(None, place_b);
        let a = q.rejoin(None, place_a);
        assert_eq!((q.place(&a), q.place(&b)), (place_a, place_b));
        assert_ne!(q.place(&c), place_a);
        let order: Vec<_> = std::iter::from_fn(|| q.pop_front().map(|p| p.key(&q))).collect();
        assert_eq!(order, [a, b, c, d]);
    }

    /// Tickets wrap around: a place just before the wrap is still ahead of one after.
    #[test]
    fn rejoining_orders_places_across_the_ticket_wrap() {
        let mut q: WaitQueue<()> = WaitQueue::new();
        q.next_ticket = Ticket::MAX;
        let early = q.push_back(None, None).0;
        let late = q.push_back(None, None).0;
        let place = q.place(&early);
        let popped = q.pop_front().unwrap();
        let _ = q.grant(popped, ());
        assert!(matches!(poll(&mut q, &early), Polled::Ready(())));
        let again = q.rejoin(None, place);
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(again));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(late));
    }

    #[test]
    fn pops_in_push_order() {
        let mut q: WaitQueue<()> = WaitQueue::new();
        let keys: Vec<_> = (0..5).map(|_| q.push_back(None, None).0).collect();
        let popped: Vec<_> = std::iter::from_fn(|| q.pop_front().map(|p| p.key(&q))).collect();
        assert_eq!(keys, popped);
        assert!(q.is_empty());
    }

    #[test]
    fn cancel_in_the_middle_keeps_order_and_reuses_slots() {
        let mut q: WaitQueue<u32> = WaitQueue::new();
        let a = q.push_back(None, None).0;
        let b = q.push_back(None, None).0;
        let c = q.push_back(None, None).0;
        assert_eq!(q.cancel(b.dup()), None);
        assert_eq!(q.len(), 2);
        let d = q.push_back(None, None).0;
        assert_eq!(d, b, "the freed slot is reused");
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(a));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(c));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(d));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), None);
    }

    #[test]
    fn cancelled_callers_leave_no_more_entries_behind_than_live_ones() {
        let mut q: WaitQueue<()> = WaitQueue::new();
        let first = q.push_back(None, None).0;
        for _ in 0..10_000 {
            let key = q.push_back(None, None).0;
            assert_eq!(q.cancel(key.dup()), None);
            assert!(q.line.len() <= 2 * q.len() + 17, "{} entries", q.line.len());
        }
        let last = q.push_back(None, None).0;
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(first));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(last));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), None);
        assert!(q.made <= 3, "freed slots are reused");
    }

    #[test]
    fn expired_callers_leave_no_entries_behind() {
        let base = Instant::now();
        let mut q: WaitQueue<&str> = WaitQueue::new();
        let unwatched = q.push_back(None, None).0;
        for round in 0..1_000 {
            let key = q.push_back(None, Some(at(base, round))).0;
            assert_eq!(q.expire_due(at(base, round), || "expired", |_| {}), None);
            assert!(matches!(poll(&mut q, &key), Polled::Ready("expired")));
            assert!(q.line.len() <= 2 * q.len() + 17, "{} entries", q.line.len());
        }
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(unwatched));
        assert!(q.line.is_empty());
    }

    #[test]
    fn a_grant_is_taken_without_the_lock_once_and_its_slot_reused_after() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None, None).0;
        let mut key = Some(a.dup());
        // SAFETY (here and below): `q` outlives the key.
        #[allow(unsafe_code)]
        let taken = unsafe { WaitKey::try_take(&mut key) };
        assert_eq!(taken, None, "nothing granted yet");
        assert!(key.is_some(), "the key stays until a grant is taken");
        let popped = q.pop_front().unwrap();
        let _ = q.grant(popped, "conn");
        let b = q.push_back(None, None).0;
        assert_ne!(b, a, "a slot granted and not taken is its caller's");
        #[allow(unsafe_code)]
        let taken = unsafe { WaitKey::try_take(&mut key) };
        assert_eq!(taken, Some("conn"));
        assert!(key.is_none(), "the key is spent");
        let c = q.push_back(None, None).0;
        assert_eq!(c, a, "a taken slot is reused");
        assert_eq!(q.made, 2);
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(b));
        assert_eq!(q.pop_front().map(|p| p.key(&q)), Some(c));
    }

    /// A caller that holds its grant untaken keeps its own slot, not those granted
    /// after it: they are swept back once enough pile up behind it.
    #[test]
    fn slots_taken_behind_an_untaken_grant_are_reused() {
        let mut q = WaitQueue::new();
        let slow = q.push_back(None, None).0;
        let popped = q.pop_front().unwrap();
        let _ = q.grant(popped, 0);
        for round in 1..=1_000 {
            let key = q.push_back(None, None).0;
            let popped = q.pop_front().unwrap();
            let _ = q.grant(popped, round);
            assert_eq!(take(&key), Some(round));
            assert!(
                q.made <= 2 * SWEEP_GRANTED_AT_LEAST as Index,
                "{} slots",
                q.made
            );
            assert!(q.granted.len() <= SWEEP_GRANTED_AT_LEAST);
        }
        assert_eq!(
            take(&slow),
            Some(0),
            "the slow caller's grant waited for it"
        );
    }

    #[test]
    fn cancel_takes_back_a_grant_made_before() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None, None).0;
        let popped = q.pop_front().unwrap();
        let _ = q.grant(popped, 7);
        assert_eq!(q.cancel(a.dup()), Some(7));
        let b = q.push_back(None, None).0;
        assert_eq!(b, a, "the slot is reused once taken back");
    }

    /// Grants made under a lock on one thread, taken without it on another, while the
    /// first keeps queueing callers into the slots the second frees: every value
    /// arrives once, and slots are reused rather than made anew.
    #[test]
    fn grants_cross_threads_without_the_lock() {
        const ROUNDS: u32 = 20_000;
        let queue = std::sync::Arc::new(std::sync::Mutex::new(WaitQueue::<u32>::new()));
        let (keys, taker_keys) = std::sync::mpsc::sync_channel(4);
        let taker = std::thread::spawn(move || {
            let mut sum = 0u64;
            for key in taker_keys {
                let key: WaitKey<u32> = key;
                loop {
                    if let Some(value) = take(&key) {
                        sum += u64::from(value);
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            sum
        });
        for round in 0..ROUNDS {
            let mut q = queue.lock().unwrap();
            let key = q.push_back(None, None).0;
            let popped = q.pop_front().unwrap();
            let _ = q.grant(popped, round);
            drop(q);
            keys.send(key).unwrap();
        }
        drop(keys);
        let sum = taker.join().unwrap();
        assert_eq!(sum, u64::from(ROUNDS) * u64::from(ROUNDS - 1) / 2);
        let q = queue.lock().unwrap();
        assert!(q.made < 64, "{} slots for at most 5 at once", q.made);
    }

    #[test]
    fn poll_takes_a_grant_once_and_stores_wakers_before() {
        let mut q = WaitQueue::new();
        let a = q.push_back(None, None).0;
        assert!(matches!(poll(&mut q, &a), Polled::Pending { .. }));
        let popped = q.pop_front().unwrap();
        assert!(
            q.grant(popped, "conn").is_some(),
            "the stored waker is handed back"
        );
        let mut key = Some(a.dup());
        assert!(matches!(q.poll(&mut key, &noop()), Polled::Ready("conn")));
        assert!(key.is_none(), "the key is spent");
        let b = q.push_back(None, None).0;
        assert_eq!(b, a, "the slot is reused once its grant is taken");
    }
}

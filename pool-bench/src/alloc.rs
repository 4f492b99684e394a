//! A global allocator that counts what is allocated inside a window, so the scale
//! scenario can tell what a waiting task costs in memory.
//!
//! Counting is off outside a window: the only cost then is one relaxed load of a flag
//! that never changes while the timed scenarios run, so it does not skew them. Inside
//! a window every allocation, reallocation and deallocation of every thread is counted.
//! Memory allocated before the window and freed inside it is subtracted from `live`,
//! so open a window on a quiet process (nothing else is freed in the scale scenario
//! while its tasks park).

// A `GlobalAlloc` cannot be implemented without `unsafe`; this one only forwards to
// the system allocator and adds to counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// The system allocator, counting inside a [`Window`].
pub struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn record_alloc(size: usize) {
    LIVE.fetch_add(size as i64, Relaxed);
    ALLOCATED.fetch_add(size as u64, Relaxed);
    ALLOCATIONS.fetch_add(1, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged;
// the counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && COUNTING.load(Relaxed) {
            record_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && COUNTING.load(Relaxed) {
            record_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE.fetch_sub(layout.size() as i64, Relaxed);
        }
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && COUNTING.load(Relaxed) {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
            ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        new
    }
}

/// What was allocated inside a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Bytes allocated and not freed when the window closed.
    pub live: i64,
    /// Bytes allocated in all (a reallocation counts its growth).
    pub allocated: u64,
    /// Allocations made (a reallocation counts as one).
    pub allocations: u64,
}

/// Counts allocations from [`Window::open`] until [`Window::close`]. One at a time.
pub struct Window(());

impl Window {
    /// Resets the counters and starts counting.
    pub fn open() -> Window {
        LIVE.store(0, Relaxed);
        ALLOCATED.store(0, Relaxed);
        ALLOCATIONS.store(0, Relaxed);
        COUNTING.store(true, Relaxed);
        Window(())
    }

    /// What has been counted so far; the window stays open.
    pub fn usage(&self) -> Usage {
        Usage {
            live: LIVE.load(Relaxed),
            allocated: ALLOCATED.load(Relaxed),
            allocations: ALLOCATIONS.load(Relaxed),
        }
    }

    /// Stops counting and returns what was counted.
    pub fn close(self) -> Usage {
        let usage = self.usage();
        COUNTING.store(false, Relaxed);
        usage
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        COUNTING.store(false, Relaxed);
    }
}

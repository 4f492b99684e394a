//! The synchronisation primitives the pool's bookkeeping is built on, named in one place
//! so the model checker can swap them.
//!
//! Normally the mutex is `parking_lot`'s (it spins briefly before parking, which under
//! the pool's short critical sections measured a few per cent faster than `std`'s with
//! two cores contending) and the atomics are `std`'s. Built with
//! `RUSTFLAGS="--cfg pool_model"` (as `cargo xtask test` does for `tests/model.rs`, in
//! its own target directory) they are loom's, whose scheduler then explores the
//! interleavings of every lock and atomic operation. A `cfg` and not a cargo feature:
//! `--all-features` builds must keep the real ones.
//!
//! Neither mutex poisons: the state is only changed by code that cannot panic half-way,
//! so a lock whose holder panicked still guards consistent state.
//!
//! `Arc` and `Weak` stay `std`'s in both builds: loom's `Arc` has no `Weak` (upkeep holds
//! one), and reference counts are not part of the bookkeeping under test.

use std::ops::Deref;

#[cfg(not(pool_model))]
pub(crate) use parking_lot::{Mutex, MutexGuard};
#[cfg(not(pool_model))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

#[cfg(pool_model)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(pool_model)]
pub(crate) use model::{Mutex, MutexGuard};

/// loom's, which records every access so that the model checker reports two that
/// race (a plain `UnsafeCell` it cannot see).
#[cfg(pool_model)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(not(pool_model))]
pub(crate) use plain::UnsafeCell;

/// A value on cache lines of its own, so that writes to its neighbours do not take
/// its line away from the core using it (false sharing), nor writes to it theirs.
///
/// Aligned to 128 bytes, not 64: x86-64 cores fetch lines in adjacent pairs, and
/// aarch64 server cores have 128-byte lines. The cost is up to 127 bytes of padding on
/// each side of the value, once per pool.
#[repr(align(128))]
pub(crate) struct CachePadded<T>(T);

impl<T> CachePadded<T> {
    pub(crate) const fn new(value: T) -> Self {
        CachePadded(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(not(pool_model))]
mod plain {
    /// `std`'s `UnsafeCell` with loom's signature: the value is reached through a raw
    /// pointer passed to a closure.
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(pool_model)]
mod model {
    pub(crate) use loom::sync::MutexGuard;

    /// loom's mutex with `parking_lot`'s signature: `lock` returns the guard.
    #[derive(Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|poison| poison.into_inner())
        }
    }
}

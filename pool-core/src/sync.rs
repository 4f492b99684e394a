//! The synchronisation primitives the pool's bookkeeping is built on, named in one place
//! so the model checker can swap them.
//!
//! Normally these are `std`'s. Built with `RUSTFLAGS="--cfg pool_model"` (as
//! `cargo xtask test` does for `tests/model.rs`, in its own target directory) they are
//! loom's, whose scheduler then explores the interleavings of every lock and atomic
//! operation. A `cfg` and not a cargo feature: `--all-features` builds must keep `std`'s.
//!
//! `Arc` and `Weak` stay `std`'s in both builds: loom's `Arc` has no `Weak` (upkeep holds
//! one), and reference counts are not part of the bookkeeping under test.

#[cfg(not(pool_model))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(pool_model))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(pool_model)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(pool_model)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

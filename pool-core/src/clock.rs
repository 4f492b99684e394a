//! The pool's one source of time.
//!
//! With the `tokio` feature this is tokio's clock, which is the system's monotonic clock
//! unless a test pauses it; then the pool's ages, lifetimes and idle times move with the
//! test's virtual time, and time-dependent behaviour is tested without real waiting.

use std::time::Instant;

#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "tokio")]
    {
        tokio::time::Instant::now().into_std()
    }
    #[cfg(not(feature = "tokio"))]
    {
        Instant::now()
    }
}

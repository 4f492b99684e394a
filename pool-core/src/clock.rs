//! The pool's sources of time.
//!
//! Two readings of one monotonic timebase (that of [`std::time::Instant`]):
//!
//! - [`now`], precise: for every moment a limit that must not end early counts from
//!   (when a wait with a timeout or a checkout began, when upkeep first saw a
//!   connection idle, which `idle_timeout` counts from), for connects, checks, back-offs,
//!   upkeep and anything a user reads back as a duration;
//! - [`recent`], cheap: for the readings every checkout and return take, where a few
//!   milliseconds either way is harmless: the fast path's question (has the idle
//!   connection expired? is it due a check?), the start of a wait without a timeout,
//!   and the return's stamp of when the connection went idle, which only the check
//!   interval counts from (a check a few milliseconds early costs one check). On Linux
//!   it reads `CLOCK_MONOTONIC_COARSE` (about 5 ns here, against about 23 ns for the
//!   precise clock). It is never ahead of the precise clock, but how far it lags has no
//!   bound to rely on: nominally under two kernel ticks, it was measured at up to 7 ms
//!   on an idle 4 ms-tick VM and 15 ms on a loaded one. So no limit that must not end
//!   early counts from it: one did, padded by a tick, and closed a connection 0.8 ms
//!   before its `idle_timeout` in a conformance run.
//!
//! With the `test-util` feature both read tokio's clock instead, so a test that pauses
//! tokio's time moves the pool's ages, lifetimes and idle times with it and tests
//! time-dependent behaviour without real waiting. Tokio's clock takes a lock per read
//! when its own `test-util` is compiled in, which is why normal builds do not use it.
//! With the `metrics` feature [`recent`] is the precise clock too, as the wait and use
//! times it reports need better than a tick.

use std::time::Instant;

/// The precise time.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(feature = "test-util")]
    {
        tokio::time::Instant::now().into_std()
    }
    #[cfg(not(feature = "test-util"))]
    {
        Instant::now()
    }
}

/// `at + span`, or, if that is past what an `Instant` holds, a century after `at`:
/// for a moment that must exist (a back-off's end) however long a configured span is.
pub(crate) fn saturating_add(at: Instant, span: std::time::Duration) -> Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
    at.checked_add(span)
        .or_else(|| at.checked_add(CENTURY))
        .unwrap_or(at)
}

/// The time at the last kernel tick: behind [`now`] by a few milliseconds, never ahead;
/// only where a few milliseconds either way is harmless (see the module docs).
#[inline]
pub(crate) fn recent() -> Instant {
    #[cfg(all(
        target_os = "linux",
        not(feature = "test-util"),
        not(feature = "metrics")
    ))]
    {
        coarse::recent()
    }
    #[cfg(not(all(
        target_os = "linux",
        not(feature = "test-util"),
        not(feature = "metrics")
    )))]
    {
        now()
    }
}

#[cfg(all(
    target_os = "linux",
    not(feature = "test-util"),
    not(feature = "metrics")
))]
mod coarse {
    use std::cell::Cell;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// Reads `clock` through libc (glibc's vDSO: no system call).
    #[allow(unsafe_code)]
    #[inline]
    fn read(clock: libc::clockid_t) -> Option<libc::timespec> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
        // the function only writes to it.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        (rc == 0).then_some(ts)
    }

    /// One moment read on both clocks, to carry coarse readings into `Instant`'s
    /// timebase (on Linux, `CLOCK_MONOTONIC`, which the coarse clock shares).
    pub(super) struct Anchor {
        instant: Instant,
        /// `None` where the kernel lacks the clocks: then every reading is precise.
        monotonic: Option<libc::timespec>,
    }

    pub(super) fn anchor() -> &'static Anchor {
        static ANCHOR: OnceLock<Anchor> = OnceLock::new();
        ANCHOR.get_or_init(|| {
            let instant = Instant::now();
            // Read just after `instant`: the anchor's nanoseconds are, if anything, a
            // little later than the instant's, so converted readings are never ahead.
            let monotonic = read(libc::CLOCK_MONOTONIC);
            Anchor { instant, monotonic }
        })
    }

    thread_local! {
        /// The last coarse reading on this thread and its conversion: the coarse clock
        /// changes once a tick, so most readings convert to the same `Instant` again.
        static LAST: Cell<(libc::time_t, libc::c_long, Option<Instant>)> =
            const { Cell::new((0, 0, None)) };
    }

    #[inline]
    pub(super) fn recent() -> Instant {
        let Some(coarse) = read(libc::CLOCK_MONOTONIC_COARSE) else {
            return Instant::now();
        };
        let (secs, nanos) = (coarse.tv_sec, coarse.tv_nsec);
        LAST.with(|last| match last.get() {
            (s, n, Some(converted)) if (s, n) == (secs, nanos) => converted,
            _ => {
                let converted = convert(coarse);
                last.set((secs, nanos, Some(converted)));
                converted
            }
        })
    }

    fn convert(coarse: libc::timespec) -> Instant {
        let anchor = anchor();
        let Some(base) = anchor.monotonic else {
            return Instant::now();
        };
        // Seconds and nanoseconds apart, without a division by 10^9.
        let mut secs = coarse.tv_sec - base.tv_sec;
        let mut nanos = coarse.tv_nsec - base.tv_nsec;
        if nanos < 0 {
            secs -= 1;
            nanos += 1_000_000_000;
        }
        match (u64::try_from(secs), u32::try_from(nanos)) {
            (Ok(secs), Ok(nanos)) => anchor
                .instant
                .checked_add(Duration::new(secs, nanos))
                .unwrap_or(anchor.instant),
            // Within a tick of the anchor the coarse clock may read before it; the
            // anchor is then the closer reading that is not ahead.
            _ => anchor.instant,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Over 30 ms, longer than two ticks of the coarsest kernel (10 ms), so every phase
    /// of the coarse clock's steps is seen (1000 readings in a row, as this test once
    /// took, all fall within one step and prove little).
    #[test]
    fn recent_never_leads_now_and_keeps_moving() {
        let start = now();
        let first = recent();
        let mut last = first;
        while now() < start + Duration::from_millis(30) {
            let cheap = recent();
            let after = now();
            assert!(cheap <= after, "recent {cheap:?} is ahead of now {after:?}");
            assert!(cheap >= last, "recent went back from {last:?} to {cheap:?}");
            last = cheap;
        }
        assert!(last > first, "recent did not move in 30 ms");
    }
}

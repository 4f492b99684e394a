//! The pool's sources of time.
//!
//! Two readings of one monotonic timebase (that of [`std::time::Instant`]):
//!
//! - [`now`], precise: for connects, checks, upkeep and anything a user reads back as a
//!   duration;
//! - [`recent`], cheap: for the checkout's fast path and the return, which only ask
//!   whether a connection has expired or is due a check, and stamp when it went idle.
//!   On Linux it reads `CLOCK_MONOTONIC_COARSE` (about 5 ns here, against about 24 ns
//!   for the precise clock, twice per checkout), which lags the precise clock by at
//!   most [`resolution`], one kernel tick (1 to 10 ms); it is never ahead of it. A
//!   deadline taken from it is pushed back by that tick, so a wait never ends early.
//!
//! With the `test-util` feature both read tokio's clock instead, so a test that pauses
//! tokio's time moves the pool's ages, lifetimes and idle times with it and tests
//! time-dependent behaviour without real waiting. Tokio's clock takes a lock per read
//! when its own `test-util` is compiled in, which is why normal builds do not use it.
//! With the `metrics` feature [`recent`] is the precise clock too, as the wait and use
//! times it reports need better than a tick.

use std::time::{Duration, Instant};

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

/// The time at the last kernel tick: at most [`resolution`] behind [`now`], never ahead.
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

/// How far [`recent`] may lag behind [`now`].
#[inline]
pub(crate) fn resolution() -> Duration {
    #[cfg(all(
        target_os = "linux",
        not(feature = "test-util"),
        not(feature = "metrics")
    ))]
    {
        coarse::anchor().resolution
    }
    #[cfg(not(all(
        target_os = "linux",
        not(feature = "test-util"),
        not(feature = "metrics")
    )))]
    {
        Duration::ZERO
    }
}

/// When something that started at `started` (a [`recent`] reading: a wait, an idle
/// spell, a checkout) has lasted `limit`: late by at most one tick, never early.
#[inline]
pub(crate) fn deadline(started: Instant, limit: Duration) -> Instant {
    started + limit + resolution()
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
    fn read(clock: libc::clockid_t, resolution: bool) -> Option<libc::timespec> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
        // both functions only write to it.
        let rc = unsafe {
            if resolution {
                libc::clock_getres(clock, &mut ts)
            } else {
                libc::clock_gettime(clock, &mut ts)
            }
        };
        (rc == 0).then_some(ts)
    }

    /// One moment read on both clocks, to carry coarse readings into `Instant`'s
    /// timebase (on Linux, `CLOCK_MONOTONIC`, which the coarse clock shares).
    pub(super) struct Anchor {
        instant: Instant,
        /// `None` where the kernel lacks the clocks: then every reading is precise.
        monotonic: Option<libc::timespec>,
        pub(super) resolution: Duration,
    }

    pub(super) fn anchor() -> &'static Anchor {
        static ANCHOR: OnceLock<Anchor> = OnceLock::new();
        ANCHOR.get_or_init(|| {
            let instant = Instant::now();
            // Read just after `instant`: the anchor's nanoseconds are, if anything, a
            // little later than the instant's, so converted readings are never ahead.
            let monotonic = read(libc::CLOCK_MONOTONIC, false);
            let resolution = read(libc::CLOCK_MONOTONIC_COARSE, true)
                .and_then(|res| {
                    Some(Duration::new(
                        res.tv_sec.try_into().ok()?,
                        res.tv_nsec.try_into().ok()?,
                    ))
                })
                .unwrap_or(Duration::ZERO);
            Anchor {
                instant,
                monotonic,
                resolution,
            }
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
        let Some(coarse) = read(libc::CLOCK_MONOTONIC_COARSE, false) else {
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

    #[test]
    fn recent_lags_now_by_at_most_the_resolution_and_never_leads() {
        for _ in 0..1000 {
            let before = now();
            let cheap = recent();
            let after = now();
            assert!(cheap <= after, "recent {cheap:?} is ahead of now {after:?}");
            assert!(
                cheap + resolution() + Duration::from_millis(1) >= before,
                "recent {cheap:?} lags {before:?} by more than {:?}",
                resolution()
            );
        }
    }

    #[test]
    fn a_deadline_from_a_recent_reading_is_not_early() {
        let limit = Duration::from_millis(5);
        let true_start = now();
        let end = deadline(recent(), limit);
        assert!(end >= true_start + limit);
    }
}

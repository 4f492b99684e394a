//! The server's side: how many connections of this run it has, polled all through the
//! run, keeping the highest count that lasted.
//!
//! A count above the limit is asked again [`CONFIRM_AFTER`] later and counts only if it
//! still holds: the server learns of a connection the client closed a little late
//! (later still while the proxy delays bytes), and right after a blackhole heals it
//! learns at once of the closes the partition held back and of the connects the pool
//! gave up on during it (whose bytes the proxy then delivers): moments no pool can
//! prevent. A connection the pool really holds beyond
//! its limit, or one a driver never closes, lasts. Every count above the limit is
//! reported either way, with what the faults were doing then.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::tally::ErrorTally;
use crate::conformance::Backend;

/// How often the server is asked. Each ask may open a connection of the backend's own
/// (not counted), so not much more often than this.
const EVERY: Duration = Duration::from_millis(50);

/// How long a count above the limit must last to count: longer than the most latency
/// the faults add (250 ms), so that a close the network was still delivering when the
/// count was read has arrived.
pub(crate) const CONFIRM_AFTER: Duration = Duration::from_millis(500);

/// What the watch saw.
#[derive(Debug, Default)]
pub(crate) struct ServerWatch {
    /// The highest count that lasted (a count above the limit lasted if the next
    /// count, [`CONFIRM_AFTER`] later, was above it too; the lower of the two lasted).
    pub(crate) peak: AtomicUsize,
    /// The highest count read at all.
    pub(crate) peak_seen: AtomicUsize,
    /// How many counts were read.
    pub(crate) samples: AtomicU64,
    /// Counts that could not be read.
    pub(crate) errors: ErrorTally,
    /// Counts above the limit that lasted, by what the faults were doing then.
    pub(crate) over_limit: ErrorTally,
    /// Counts above the limit gone on the second count, by what the faults were doing.
    pub(crate) over_limit_briefly: ErrorTally,
    stop: AtomicBool,
}

impl ServerWatch {
    /// Polls the server until [`stop`](Self::stop); a count above `limit` is asked
    /// again and noted with `context` (what the faults were doing when it was read).
    pub(crate) async fn watch<B: Backend>(
        &self,
        backend: &B,
        limit: usize,
        context: impl Fn(Instant) -> String,
    ) {
        let started = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let asked = Instant::now();
            if let Some(count) = self.sample(backend).await {
                if count <= limit {
                    self.peak.fetch_max(count, Ordering::SeqCst);
                } else {
                    tokio::time::sleep(CONFIRM_AFTER).await;
                    let again = self.sample(backend).await.unwrap_or(count);
                    let seen = || {
                        format!(
                            "{count} connections {:.1}s into the run, {again} {CONFIRM_AFTER:?} later",
                            (asked - started).as_secs_f64()
                        )
                    };
                    if again > limit {
                        self.peak.fetch_max(count.min(again), Ordering::SeqCst);
                        self.over_limit.add(&context(asked), seen);
                    } else {
                        self.over_limit_briefly.add(&context(asked), seen);
                    }
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    }

    /// Reads the count once and returns it.
    pub(crate) async fn sample<B: Backend>(&self, backend: &B) -> Option<usize> {
        match backend.server_connections().await {
            Ok(count) => {
                self.peak_seen.fetch_max(count, Ordering::SeqCst);
                self.samples.fetch_add(1, Ordering::SeqCst);
                Some(count)
            }
            Err(e) => {
                self.errors.add("counting server connections", || e);
                None
            }
        }
    }

    /// Ends [`watch`](Self::watch) after its current poll.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockBackend;
    use pool_core::Manager;

    /// Watches `backend` with a limit of 1 while `hold` runs.
    async fn watch_while(
        backend: &MockBackend,
        hold: impl std::future::Future<Output = ()>,
    ) -> ServerWatch {
        let watch = ServerWatch::default();
        tokio::select! {
            () = watch.watch(backend, 1, |_| "context".to_owned()) => {
                unreachable!("the watch ends only when stopped")
            }
            () = hold => {}
        }
        watch
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_above_the_limit_that_lasts_counts() {
        let backend = MockBackend::new();
        let manager = backend.control().manager();
        let both = (manager.connect().await, manager.connect().await);
        let watch = watch_while(&backend, tokio::time::sleep(Duration::from_secs(1))).await;
        assert_eq!(watch.peak.load(Ordering::SeqCst), 2);
        assert_eq!(watch.over_limit.counts()[0].kind, "context");
        assert!(watch.over_limit_briefly.counts().is_empty());
        drop(both);
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_above_the_limit_gone_on_the_second_count_is_noted_only() {
        let backend = MockBackend::new();
        let manager = backend.control().manager();
        let first = manager.connect().await.unwrap();
        let mut extra = Some(manager.connect().await.unwrap());
        let hold = async {
            // The first count (at once) sees 2; the extra one is gone before the
            // second count.
            tokio::time::sleep(CONFIRM_AFTER / 2).await;
            extra.take();
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let watch = watch_while(&backend, hold).await;
        assert_eq!(watch.peak.load(Ordering::SeqCst), 1);
        assert_eq!(watch.peak_seen.load(Ordering::SeqCst), 2);
        assert!(watch.over_limit.counts().is_empty());
        let briefly = watch.over_limit_briefly.counts();
        assert_eq!(briefly.len(), 1);
        assert!(
            briefly[0]
                .example
                .starts_with("2 connections 0.0s into the run, 1 500ms later"),
            "{}",
            briefly[0].example
        );
        drop(first);
    }
}

//! The server's side: how many connections of this run it has, polled all through the
//! run, keeping the highest count seen.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::tally::ErrorTally;
use crate::conformance::Backend;

/// How often the server is asked. Each ask may open a connection of the backend's own
/// (not counted), so not much more often than this.
const EVERY: Duration = Duration::from_millis(50);

/// What the watch saw.
#[derive(Debug, Default)]
pub(crate) struct ServerWatch {
    /// The highest count seen.
    pub(crate) peak: AtomicUsize,
    /// How many counts were read.
    pub(crate) samples: AtomicU64,
    /// Counts that could not be read.
    pub(crate) errors: ErrorTally,
    stop: AtomicBool,
}

impl ServerWatch {
    /// Polls the server until [`stop`](Self::stop).
    pub(crate) async fn watch<B: Backend>(&self, backend: &B) {
        while !self.stop.load(Ordering::SeqCst) {
            self.sample(backend).await;
            tokio::time::sleep(EVERY).await;
        }
    }

    /// Reads the count once and returns it.
    pub(crate) async fn sample<B: Backend>(&self, backend: &B) -> Option<usize> {
        match backend.server_connections().await {
            Ok(count) => {
                self.peak.fetch_max(count, Ordering::SeqCst);
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

//! Metrics under the OpenTelemetry database-client names, through the `metrics`
//! facade when the `metrics` feature is on; nothing at all when it is off.

use std::time::{Duration, Instant};

/// Why the pool closed a connection; the `reason` label of the closes counter and the
/// `reason` field of the `tracing` discard event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CloseReason {
    Lifetime,
    Idle,
    Broken,
    ResetFailed,
    CheckTimedOut,
    HookRejected,
    Cancelled,
    Resized,
    Retain,
    PoolClosed,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Lifetime => "lifetime",
            CloseReason::Idle => "idle",
            CloseReason::Broken => "broken",
            CloseReason::ResetFailed => "reset_failed",
            CloseReason::CheckTimedOut => "check_timed_out",
            CloseReason::HookRejected => "hook_rejected",
            CloseReason::Cancelled => "cancelled",
            CloseReason::Resized => "resized",
            CloseReason::Retain => "retain",
            CloseReason::PoolClosed => "pool_closed",
        }
    }

    /// Whether this close says the server side may be gone, so idle peers become due
    /// for a check.
    pub(crate) fn suspects_peers(self) -> bool {
        matches!(
            self,
            CloseReason::Broken | CloseReason::ResetFailed | CloseReason::CheckTimedOut
        )
    }
}

#[cfg(feature = "metrics")]
mod enabled {
    use super::*;
    use metrics::{Counter, Gauge, Histogram, Label};

    pub(crate) struct Metrics {
        idle: Gauge,
        used: Gauge,
        pending: Gauge,
        timeouts: Counter,
        create_time: Histogram,
        wait_time: Histogram,
        use_time: Histogram,
        labels: Vec<Label>,
    }

    impl Metrics {
        pub(crate) fn new(name: &str, max_size: usize, min_idle: usize) -> Self {
            let pool = Label::new("pool.name", name.to_owned());
            let with_state = |state: &'static str| vec![pool.clone(), Label::new("state", state)];
            let labels = vec![pool.clone()];
            metrics::gauge!("db.client.connection.max", labels.clone()).set(max_size as f64);
            metrics::gauge!("db.client.connection.idle.max", labels.clone()).set(max_size as f64);
            metrics::gauge!("db.client.connection.idle.min", labels.clone()).set(min_idle as f64);
            Metrics {
                idle: metrics::gauge!("db.client.connection.count", with_state("idle")),
                used: metrics::gauge!("db.client.connection.count", with_state("used")),
                pending: metrics::gauge!("db.client.connection.pending_requests", labels.clone()),
                timeouts: metrics::counter!("db.client.connection.timeouts", labels.clone()),
                create_time: metrics::histogram!(
                    "db.client.connection.create_time",
                    labels.clone()
                ),
                wait_time: metrics::histogram!("db.client.connection.wait_time", labels.clone()),
                use_time: metrics::histogram!("db.client.connection.use_time", labels.clone()),
                labels,
            }
        }

        pub(crate) fn resized(&self, max_size: usize) {
            recorded(|| {
                metrics::gauge!("db.client.connection.max", self.labels.clone())
                    .set(max_size as f64);
                metrics::gauge!("db.client.connection.idle.max", self.labels.clone())
                    .set(max_size as f64);
            });
        }

        pub(crate) fn counts(&self, idle: usize, used: usize, pending: usize) {
            recorded(|| {
                self.idle.set(idle as f64);
                self.used.set(used as f64);
                self.pending.set(pending as f64);
            });
        }

        pub(crate) fn timeout(&self) {
            recorded(|| self.timeouts.increment(1));
        }

        pub(crate) fn create_time(&self, took: Duration) {
            recorded(|| self.create_time.record(took.as_secs_f64()));
        }

        pub(crate) fn wait_time(&self, started: Instant, now: Instant) {
            let waited = now.saturating_duration_since(started);
            recorded(|| self.wait_time.record(waited.as_secs_f64()));
        }

        pub(crate) fn use_time(&self, taken_at: Instant) {
            let took = crate::clock::now().saturating_duration_since(taken_at);
            recorded(|| self.use_time.record(took.as_secs_f64()));
        }

        pub(crate) fn closed(&self, reason: CloseReason) {
            recorded(|| {
                let mut labels = self.labels.clone();
                labels.push(Label::new("reason", reason.as_str()));
                metrics::counter!("db.client.connection.closes", labels).increment(1);
            });
        }
    }

    /// Runs a recorder's code. The pool records from returns, from a checkout's drop
    /// and under its lock, where a panic unwinding out of an exporter's bug would
    /// lose a connection's room or a waiter's wake-up: the measurement is dropped
    /// instead (the panic hook has reported the panic).
    fn recorded(record: impl FnOnce()) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(record)).is_err() {
            tracing::warn!("a metrics recorder panicked; one measurement was dropped");
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    use super::*;

    pub(crate) struct Metrics;

    impl Metrics {
        pub(crate) fn new(_name: &str, _max_size: usize, _min_idle: usize) -> Self {
            Metrics
        }
        #[inline(always)]
        pub(crate) fn resized(&self, _max_size: usize) {}
        #[inline(always)]
        pub(crate) fn counts(&self, _idle: usize, _used: usize, _pending: usize) {}
        #[inline(always)]
        pub(crate) fn timeout(&self) {}
        #[inline(always)]
        pub(crate) fn create_time(&self, _took: Duration) {}
        #[inline(always)]
        pub(crate) fn wait_time(&self, _started: Instant, _now: Instant) {}
        #[inline(always)]
        pub(crate) fn use_time(&self, _taken_at: Instant) {}
        #[inline(always)]
        pub(crate) fn closed(&self, _reason: CloseReason) {}
    }
}

pub(crate) use enabled::Metrics;

//! Helpers shared by the `core_*` test targets: the mock behind a pool, bounded
//! yielding, and a `tracing` subscriber that captures events.

#![allow(dead_code)] // each test target uses a different subset

use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pool_core::{Builder, Pool, Pooled};
use pool_testkit::mock::{MockControl, MockManager};
use tracing::field::{Field, Visit};
use tracing::{span, Event, Level, Metadata, Subscriber};

/// A builder around a fresh mock, and the mock's control.
pub fn builder() -> (Builder<MockManager>, MockControl) {
    let manager = MockManager::new();
    let control = manager.control();
    (Pool::builder(manager), control)
}

/// Builds a pool on a fresh mock with `configure` applied to the builder.
pub fn pool(
    configure: impl FnOnce(Builder<MockManager>) -> Builder<MockManager>,
) -> (Pool<MockManager>, MockControl) {
    let (builder, control) = builder();
    let pool = configure(builder)
        .build()
        .expect("the test's pool config is valid");
    (pool, control)
}

/// Checks out `n` connections one after another and holds them all.
pub async fn check_out(pool: &Pool<MockManager>, n: usize) -> Vec<Pooled<MockManager>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(pool.get().await.unwrap());
    }
    conns
}

/// Polls `fut` once with a waker that does nothing.
pub fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Yields to the runtime until `done()` holds, at most `limit` times; panics naming
/// `what` if it never does. Lets spawned tasks (upkeep, waiters) run without sleeping.
pub async fn yield_until(what: &str, limit: usize, mut done: impl FnMut() -> bool) {
    for _ in 0..limit {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    assert!(done(), "gave up after {limit} yields waiting for {what}");
}

/// Yields to the runtime `n` times so spawned tasks can run to their next wait.
pub async fn settle(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// One captured `tracing` event: its level, target, and its fields as `name=value`
/// text (the message included).
#[derive(Clone, Debug)]
pub struct Captured {
    pub level: Level,
    pub target: String,
    pub text: String,
}

/// A minimal subscriber that records every event, for tests that assert on what the
/// pool logs. Install with `tracing::subscriber::set_default` (thread-local, so run
/// the test on a current-thread runtime).
#[derive(Clone, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
    next_span: Arc<AtomicU64>,
}

impl Capture {
    /// Every event recorded so far.
    pub fn events(&self) -> Vec<Captured> {
        self.events.lock().unwrap().clone()
    }
}

struct FieldText(String);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = FieldText(String::new());
        event.record(&mut text);
        self.events.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            text: text.0,
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

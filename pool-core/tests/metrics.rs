//! With the `metrics` feature, the pool emits the OpenTelemetry database-client
//! metrics named in the crate docs, labelled with the pool's name.

use std::collections::HashSet;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use pool_core::{ConnectionInfo, Manager, Pool, PoolError, TimeoutKind};

struct Instant0;

#[derive(Debug)]
struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

#[async_trait::async_trait]
impl Manager for Instant0 {
    type Connection = u32;
    type Error = Never;
    async fn connect(&self) -> Result<u32, Never> {
        Ok(0)
    }
    async fn recycle(&self, _: &mut u32, _: &ConnectionInfo) -> Result<(), Never> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn emits_the_documented_metrics_with_the_pool_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");

    let pool = Pool::builder(Instant0)
        .name("orders")
        .max_size(1)
        .min_idle(1)
        .max_lifetime(Duration::from_secs(60))
        .wait_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, PoolError::Timeout(TimeoutKind::Wait, _)));
    drop(conn);
    // Past the lifetime (paused clock): the expired one is closed, a new one opened.
    tokio::time::advance(Duration::from_secs(61)).await;
    drop(pool.get().await.unwrap());

    let snapshot = snapshotter.snapshot().into_vec();
    let mut seen = HashSet::new();
    for (key, _unit, _desc, value) in &snapshot {
        let labels: Vec<_> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        assert!(
            labels.contains(&"pool.name=orders".to_owned()),
            "{} lacks the pool.name label: {labels:?}",
            key.key().name()
        );
        let extra: Vec<_> = labels
            .iter()
            .filter(|l| !l.starts_with("pool.name"))
            .collect();
        seen.insert((
            key.kind(),
            key.key().name().to_owned(),
            format!("{extra:?}"),
        ));
        if key.key().name() == "db.client.connection.max" {
            assert_eq!(*value, DebugValue::Gauge(1.0.into()));
        }
        if key.key().name() == "db.client.connection.timeouts" {
            assert_eq!(*value, DebugValue::Counter(1));
        }
    }
    let expect = [
        (
            MetricKind::Gauge,
            "db.client.connection.count",
            r#"["state=idle"]"#,
        ),
        (
            MetricKind::Gauge,
            "db.client.connection.count",
            r#"["state=used"]"#,
        ),
        (MetricKind::Gauge, "db.client.connection.max", "[]"),
        (MetricKind::Gauge, "db.client.connection.idle.max", "[]"),
        (MetricKind::Gauge, "db.client.connection.idle.min", "[]"),
        (
            MetricKind::Gauge,
            "db.client.connection.pending_requests",
            "[]",
        ),
        (MetricKind::Counter, "db.client.connection.timeouts", "[]"),
        (
            MetricKind::Histogram,
            "db.client.connection.create_time",
            "[]",
        ),
        (
            MetricKind::Histogram,
            "db.client.connection.wait_time",
            "[]",
        ),
        (MetricKind::Histogram, "db.client.connection.use_time", "[]"),
        (
            MetricKind::Counter,
            "db.client.connection.closes",
            r#"["reason=lifetime"]"#,
        ),
    ];
    for (kind, name, labels) in expect {
        assert!(
            seen.contains(&(kind, name.to_owned(), labels.to_owned())),
            "missing {kind:?} {name} {labels}; saw {seen:#?}"
        );
    }
}

/// A recorder whose `use_time` histogram panics, as a buggy exporter might.
struct PanickyUseTime;

struct Panics;

impl metrics::HistogramFn for Panics {
    fn record(&self, _: f64) {
        panic!("a recorder's bug");
    }
}

impl metrics::Recorder for PanickyUseTime {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        if key.name() == "db.client.connection.use_time" {
            metrics::Histogram::from_arc(std::sync::Arc::new(Panics))
        } else {
            metrics::Histogram::noop()
        }
    }
}

/// Connections that count themselves alive.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

struct Alive(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Manager for Counted {
    type Connection = Alive;
    type Error = Never;
    async fn connect(&self) -> Result<Alive, Never> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Alive(std::sync::Arc::clone(&self.0)))
    }
    async fn recycle(&self, _: &mut Alive, _: &ConnectionInfo) -> Result<(), Never> {
        Ok(())
    }
}

/// A recorder that panics while a checkout is returned costs that measurement only:
/// the connection comes back, and the pool goes once every handle is gone. (A panic
/// unwinding out of the return lost the connection's room, and the pool's last
/// reference with it.)
#[tokio::test]
async fn a_recorder_panicking_on_a_return_costs_only_the_measurement() {
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pool = metrics::with_local_recorder(&PanickyUseTime, || {
        Pool::builder(Counted(std::sync::Arc::clone(&alive)))
            .max_size(1)
            .build()
            .unwrap()
    });
    let conn = pool.get().await.unwrap();
    let returned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(conn)));
    assert!(returned.is_ok(), "the recorder's panic escaped the return");
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status}");
    drop(pool.get().await.expect("the connection came back"));
    drop(pool);
    // The pool owns the manager, which holds the only other clone.
    assert_eq!(
        std::sync::Arc::strong_count(&alive),
        1,
        "the pool was never dropped"
    );
    assert_eq!(alive.load(std::sync::atomic::Ordering::SeqCst), 0);
}

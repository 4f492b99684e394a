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

//! pool-core's configuration: bad values refused at `build` naming the field, the
//! runtime requirement of timeouts, and `PoolConfig` from JSON.

mod core_common;

use std::time::Duration;

use core_common::builder;
use pool_core::{BuildError, Builder, PoolConfig, PoolError, Reuse};
use pool_testkit::mock::MockManager;

type Configure = fn(Builder<MockManager>) -> Builder<MockManager>;

/// Each nonsensical value is `InvalidConfig` naming its field, in `field()` and in the
/// message.
#[test]
fn invalid_values_are_refused_naming_the_field() {
    let cases: &[(&str, Configure)] = &[
        ("max_size", |b| b.max_size(0)),
        ("min_idle", |b| b.max_size(2).min_idle(3)),
        ("max_connecting", |b| b.max_connecting(0)),
        ("connect_timeout", |b| b.connect_timeout(Duration::ZERO)),
        ("recycle_timeout", |b| b.recycle_timeout(Duration::ZERO)),
        ("max_lifetime", |b| b.max_lifetime(Duration::ZERO)),
        ("idle_timeout", |b| b.idle_timeout(Duration::ZERO)),
        ("leak_threshold", |b| b.leak_threshold(Duration::ZERO)),
        ("connect_backoff", |b| b.connect_backoff(Duration::ZERO)),
        ("connect_backoff_max", |b| {
            b.connect_backoff(Duration::from_secs(2))
                .connect_backoff_max(Duration::from_secs(1))
        }),
    ];
    for (field, configure) in cases {
        let (b, control) = builder();
        let err = configure(b).build().unwrap_err();
        let BuildError::InvalidConfig {
            field: named,
            reason,
        } = &err
        else {
            panic!("{field}: expected InvalidConfig, got {err:?}");
        };
        assert_eq!(named, field);
        assert_eq!(err.field(), *field);
        assert!(!reason.is_empty(), "{field}: no reason");
        let text = err.to_string();
        assert!(text.contains(&format!("`{field}`")), "{field}: {text}");
        assert_eq!(control.connects_started(), 0, "{field}: build connected");
    }
}

/// The defaults, and the edge values that are valid, build.
#[test]
fn valid_edge_values_build() {
    let cases: &[Configure] = &[
        |b| b,
        |b| b.max_size(1),
        // A bound, not a size to allocate.
        |b| b.max_size(usize::MAX),
        |b| b.max_size(1 << 40),
        |b| b.max_size(3).min_idle(3),
        |b| b.wait_timeout(Duration::ZERO),   // "do not wait"
        |b| b.check_interval(Duration::ZERO), // "check every checkout"
        |b| b.max_lifetime(None).idle_timeout(None).check_interval(None),
        |b| b.reuse(Reuse::Fifo),
    ];
    for (index, configure) in cases.iter().enumerate() {
        let (b, _control) = builder();
        if let Err(err) = configure(b).build() {
            panic!("case {index}: {err}");
        }
    }
}

/// A timeout configured with `runtime(None)` is `NoRuntime` at build time, naming the
/// timeout.
#[test]
fn timeouts_without_a_runtime_are_refused_at_build() {
    let cases: &[(&str, Configure)] = &[
        ("wait_timeout", |b| b.runtime(None)),
        ("connect_timeout", |b| b.runtime(None).wait_timeout(None)),
        ("recycle_timeout", |b| {
            b.runtime(None).wait_timeout(None).connect_timeout(None)
        }),
        ("wait_timeout", |b| {
            b.wait_timeout(Duration::from_secs(1))
                .connect_timeout(None)
                .recycle_timeout(None)
                .runtime(None)
        }),
    ];
    for (field, configure) in cases {
        let (b, _control) = builder();
        let err = configure(b).build().unwrap_err();
        assert_eq!(err, BuildError::NoRuntime { field }, "{field}");
        let text = err.to_string();
        assert!(text.contains(field) && text.contains("runtime"), "{text}");
    }
}

fn no_runtime_builder(b: Builder<MockManager>) -> Builder<MockManager> {
    b.wait_timeout(None)
        .connect_timeout(None)
        .recycle_timeout(None)
        .runtime(None)
}

/// With every timeout off, a pool needs no runtime: it builds, `get` works, a `get`
/// asking for a timeout says `NoRuntime`, and `close` does not wait.
#[tokio::test]
async fn no_timeouts_need_no_runtime() {
    let (b, control) = builder();
    let pool = no_runtime_builder(b).max_size(1).build().unwrap();
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 1);
    let err = pool
        .get_timeout(Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, PoolError::NoRuntime), "{err:?}");
    assert!(err.to_string().contains("runtime"), "{err}");
    assert!(pool.try_get().await.is_err(), "full: try_get does not wait");
    drop(conn);
    drop(pool.try_get().await.unwrap());

    let held = pool.get().await.unwrap();
    let err = pool.close(Duration::from_secs(60)).await.unwrap_err();
    assert_eq!(err.in_use, 1, "reported at once, without a timer");
    drop(held);
    assert_eq!(control.live(), 0);
}

/// Without a runtime, `upkeep` makes one pass (opening `min_idle`) and ends.
#[tokio::test]
async fn upkeep_without_a_runtime_runs_once() {
    let (b, control) = builder();
    let pool = no_runtime_builder(b)
        .max_size(3)
        .min_idle(2)
        .build()
        .unwrap();
    pool.upkeep().await;
    assert_eq!(control.live(), 2);
    assert_eq!(pool.status().idle, 2);
}

/// `PoolConfig` reads from JSON with human durations, and a builder takes it whole.
#[test]
fn pool_config_from_json_with_human_durations() {
    let config: PoolConfig = serde_json::from_str(
        r#"{
            "name": "orders",
            "max_size": 7,
            "min_idle": 2,
            "wait_timeout": "30s",
            "connect_timeout": "500ms",
            "max_lifetime": "30m",
            "idle_timeout": null,
            "check_interval": "0s",
            "leak_threshold": "1m 30s",
            "connect_backoff": "50ms",
            "connect_backoff_max": "2s",
            "reuse": "fifo"
        }"#,
    )
    .unwrap();
    assert_eq!(config.name, "orders");
    assert_eq!(config.max_size, 7);
    assert_eq!(config.min_idle, 2);
    assert_eq!(config.wait_timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.connect_timeout, Some(Duration::from_millis(500)));
    assert_eq!(config.max_lifetime, Some(Duration::from_secs(30 * 60)));
    assert_eq!(config.idle_timeout, None);
    assert_eq!(config.check_interval, Some(Duration::ZERO));
    assert_eq!(config.leak_threshold, Some(Duration::from_secs(90)));
    assert_eq!(config.connect_backoff, Duration::from_millis(50));
    assert_eq!(config.connect_backoff_max, Duration::from_secs(2));
    assert_eq!(config.reuse, Reuse::Fifo);
    // Fields left out keep their defaults.
    let defaults = PoolConfig::default();
    assert_eq!(config.recycle_timeout, defaults.recycle_timeout);
    assert_eq!(config.max_connecting, defaults.max_connecting);

    let (b, _control) = builder();
    let pool = b.config(config.clone()).build().unwrap();
    assert_eq!(pool.config(), &config);
    assert_eq!(pool.status().max_size, 7);

    // It writes back to the same form.
    let json = serde_json::to_string(&config).unwrap();
    let again: PoolConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(again, config);
}

/// A misspelt field is an error naming it, not silently ignored.
#[test]
fn pool_config_unknown_field_is_an_error_naming_it() {
    let err = serde_json::from_str::<PoolConfig>(r#"{ "max_sise": 5 }"#).unwrap_err();
    assert!(err.to_string().contains("max_sise"), "{err}");
}

/// Durations that are not durations are errors: negative, bare numbers, nonsense.
#[test]
fn pool_config_rejects_bad_durations() {
    for bad in [r#""-1s""#, r#""soon""#, r#""10 parsecs""#, "10"] {
        let json = format!(r#"{{ "wait_timeout": {bad} }}"#);
        let parsed = serde_json::from_str::<PoolConfig>(&json);
        assert!(parsed.is_err(), "{bad} was accepted: {parsed:?}");
    }
    let err = serde_json::from_str::<PoolConfig>(r#"{ "connect_backoff": "-1s" }"#).unwrap_err();
    assert!(!err.to_string().is_empty());
}

/// A JSON config that parses but makes no sense is refused at `build`, naming the
/// field.
#[test]
fn pool_config_zero_timeout_is_refused_at_build() {
    let config: PoolConfig = serde_json::from_str(r#"{ "connect_timeout": "0s" }"#).unwrap();
    let (b, _control) = builder();
    let err = b.config(config.clone()).build().unwrap_err();
    assert_eq!(err.field(), "connect_timeout");
    assert_eq!(config.validate().unwrap_err().field(), "connect_timeout");
}

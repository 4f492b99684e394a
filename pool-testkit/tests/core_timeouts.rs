//! pool-core on the mock manager: the three timeouts, connect failures surfacing as the
//! backend's own error, and the connect back-off while the backend is down.
//!
//! Time is tokio's paused clock wherever possible (the pool's clock is tokio's), so
//! these tests wait for nothing in real time; one test checks a real timer firing.

mod core_common;

use std::time::Duration;

use core_common::{pool, settle, yield_until};
use pool_core::{PoolError, TimeoutKind};
use pool_testkit::mock::DEFAULT_ERROR_MESSAGE;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// A `get` on a full pool fails with `Timeout(Wait)` after exactly its bound, with the
/// pool's counts in the error and its `Display`.
#[tokio::test(start_paused = true)]
async fn wait_timeout_fires_at_its_bound_with_counts() {
    let (pool, _control) = pool(|b| b.max_size(1).wait_timeout(100 * MS));
    let _held = pool.get().await.unwrap();

    // A second caller waits longer, so the status at the timeout shows a waiter.
    let other = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.get_timeout(Some(Duration::from_secs(10)))
                .await
                .map(drop)
        }
    });
    yield_until("the other caller to wait", 100, || {
        pool.status().waiting == 1
    })
    .await;

    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    let elapsed = started.elapsed();

    let PoolError::Timeout(TimeoutKind::Wait, ctx) = &err else {
        panic!("expected a wait timeout, got {err:?}");
    };
    assert!(elapsed >= 100 * MS, "fired early: {elapsed:?}");
    assert!(elapsed < 150 * MS, "fired late: {elapsed:?}");
    assert_eq!(ctx.after, 100 * MS);
    assert_eq!(ctx.status.max_size, 1);
    assert_eq!(ctx.status.size, 1);
    assert_eq!(ctx.status.in_use, 1);
    assert_eq!(ctx.status.idle, 0);
    assert_eq!(
        ctx.status.waiting, 2,
        "the other caller still waits, and the one that timed out is counted too"
    );
    assert_eq!(ctx.last_connect_error, None);
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Wait));

    let text = err.to_string();
    assert!(text.contains("100ms"), "{text}");
    assert!(text.contains("size 1/1"), "{text}");
    assert!(text.contains("1 in use"), "{text}");
    assert!(text.contains("2 waiting"), "{text}");
    assert!(!text.contains("last connect error"), "{text}");
    other.abort();
}

/// The same wait timeout on tokio's real clock: the runtime's timer really fires.
#[tokio::test]
async fn wait_timeout_fires_on_the_real_clock() {
    let (pool, _control) = pool(|b| b.max_size(1).wait_timeout(50 * MS));
    let _held = pool.get().await.unwrap();
    let started = std::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Wait), "{err:?}");
    assert!(elapsed >= 50 * MS, "fired early: {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "fired far too late: {elapsed:?}"
    );
    assert_eq!(
        pool.status().waiting,
        0,
        "the timed-out caller left the line"
    );
}

/// When connects have been failing, the wait timeout's message also names the last
/// connect error, so the log line alone explains why nothing came free.
#[tokio::test(start_paused = true)]
async fn wait_timeout_names_the_last_connect_error() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .wait_timeout(100 * MS)
            .connect_backoff(Duration::from_secs(10))
            .connect_backoff_max(Duration::from_secs(10))
    });
    let _held = pool.get().await.unwrap();
    control.set_error_message("database \"x\" does not exist");
    control.fail_next_connects(1);
    let first = pool.get().await.unwrap_err();
    assert!(matches!(first, PoolError::Backend(_)), "{first:?}");

    // One connection is in use, so this caller waits (one may come back) and times out.
    let err = pool.get().await.unwrap_err();
    let PoolError::Timeout(TimeoutKind::Wait, ctx) = &err else {
        panic!("expected a wait timeout, got {err:?}");
    };
    assert_eq!(
        ctx.last_connect_error.as_deref(),
        Some("database \"x\" does not exist")
    );
    let text = err.to_string();
    assert!(
        text.contains("last connect error: database \"x\" does not exist"),
        "{text}"
    );
    assert!(text.contains("1 in use"), "{text}");
}

/// A connect that hangs fails with `Timeout(Connect)` at `connect_timeout`, well before
/// the wait timeout, and gives its room back.
#[tokio::test(start_paused = true)]
async fn connect_timeout_fires_and_frees_the_slot() {
    let (pool, control) = pool(|b| {
        b.max_size(1)
            .wait_timeout(Duration::from_secs(5))
            .connect_timeout(200 * MS)
    });
    control.hang_connects(true);
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    let elapsed = started.elapsed();

    let PoolError::Timeout(TimeoutKind::Connect, ctx) = &err else {
        panic!("expected a connect timeout, got {err:?}");
    };
    assert_eq!(ctx.after, 200 * MS);
    assert!(elapsed >= 200 * MS, "fired early: {elapsed:?}");
    assert!(elapsed < 300 * MS, "fired late: {elapsed:?}");
    assert_eq!(ctx.target.as_deref(), Some(pool_testkit::mock::MOCK_TARGET));
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "opening a connection to {}",
            pool_testkit::mock::MOCK_TARGET
        )),
        "a connect timeout names where it was going: {text}"
    );
    assert_eq!(
        control.connects_waiting(),
        0,
        "the hung connect was dropped"
    );
    let status = pool.status();
    assert_eq!((status.size, status.connecting), (0, 0), "{status:?}");

    // Once connects work again (after the back-off), the pool serves.
    control.hang_connects(false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 1);
}

/// A check that hangs fails the `get` with `Timeout(Recycle)` at `recycle_timeout`; the
/// connection is discarded, not handed out or kept.
#[tokio::test(start_paused = true)]
async fn recycle_timeout_fires_and_discards_the_connection() {
    let (pool, control) = pool(|b| {
        b.max_size(1)
            .wait_timeout(Duration::from_secs(5))
            .check_interval(Duration::ZERO)
            .recycle_timeout(150 * MS)
    });
    drop(pool.get().await.unwrap());
    assert_eq!(control.live(), 1);

    control.hang_recycles(true);
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    let elapsed = started.elapsed();

    let PoolError::Timeout(TimeoutKind::Recycle, ctx) = &err else {
        panic!("expected a recycle timeout, got {err:?}");
    };
    assert_eq!(ctx.after, 150 * MS);
    assert!(elapsed >= 150 * MS, "fired early: {elapsed:?}");
    assert!(elapsed < 250 * MS, "fired late: {elapsed:?}");
    assert_eq!(control.recycles(), 1);
    assert_eq!(control.recycles_waiting(), 0, "the hung check was dropped");
    assert_eq!(control.live(), 0, "the connection was discarded");
    assert_eq!(pool.status().size, 0);

    control.hang_recycles(false);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 2, "a new connection replaced the discarded one");
}

/// A failing connect is `PoolError::Backend` with the manager's own error, returned at
/// once (not a timeout). One failure may be a blip: the next caller waits out the
/// back-off and probes. After two in a row the database is down: callers fail at once
/// with `Unavailable` carrying the same message.
#[tokio::test(start_paused = true)]
async fn failing_connect_is_the_backend_error_then_unavailable() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .wait_timeout(Duration::from_secs(5))
            .connect_backoff(Duration::from_secs(1))
            .connect_backoff_max(Duration::from_secs(2))
    });
    control.set_down(true);

    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "no timer was waited on");
    let PoolError::Backend(e) = &err else {
        panic!("expected the backend's error, got {err:?}");
    };
    assert_eq!(e.message(), DEFAULT_ERROR_MESSAGE);
    assert_eq!(err.to_string(), DEFAULT_ERROR_MESSAGE);
    assert!(
        std::error::Error::source(&err).is_some(),
        "source is the backend error"
    );

    // The second caller waits out the first back-off (at most 1 s), then probes.
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, PoolError::Backend(e) if e.message() == DEFAULT_ERROR_MESSAGE),
        "{err:?}"
    );
    assert!(elapsed <= Duration::from_secs(1), "waited {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(800), "waited {elapsed:?}");
    assert_eq!(control.connects_started(), 2);

    // Down now: the third fails at once, without connecting.
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "no timer was waited on");
    let PoolError::Unavailable {
        last_error,
        retry_in,
    } = &err
    else {
        panic!("expected Unavailable while backing off, got {err:?}");
    };
    assert!(last_error.contains(DEFAULT_ERROR_MESSAGE), "{last_error}");
    assert!(*retry_in > Duration::ZERO, "{retry_in:?}");
    assert!(*retry_in <= Duration::from_secs(2), "{retry_in:?}");
    assert!(err.to_string().contains(DEFAULT_ERROR_MESSAGE), "{err}");
    assert_eq!(
        control.connects_started(),
        2,
        "the third get did not connect"
    );
    let status = pool.status();
    assert_eq!((status.size, status.connecting), (0, 0), "{status:?}");
}

/// A single connect failure is a blip: the next caller waits out the back-off, probes,
/// and gets a connection.
#[tokio::test(start_paused = true)]
async fn one_connect_failure_is_retried_after_the_backoff() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .wait_timeout(Duration::from_secs(5))
            .connect_backoff(200 * MS)
            .connect_backoff_max(Duration::from_secs(1))
    });
    control.fail_next_connects(1);
    assert!(matches!(pool.get().await, Err(PoolError::Backend(_))));
    let started = Instant::now();
    let conn = pool
        .get()
        .await
        .expect("the probe after the back-off succeeds");
    let elapsed = started.elapsed();
    assert!(elapsed <= 200 * MS, "waited {elapsed:?}");
    assert_eq!(conn.id(), 1);
    assert_eq!(control.connects_started(), 2);
}

/// While the backend is down, connects follow the back-off schedule (50, 100, 200,
/// 400, 400 ... ms, less up to 20% jitter) however many callers ask, with upkeep
/// trying to keep `min_idle` too; when it is back, the pool serves again by itself.
#[tokio::test(start_paused = true)]
async fn backend_down_connects_back_off_and_recover() {
    let (pool, control) = pool(|b| {
        b.max_size(4)
            .min_idle(1)
            .wait_timeout(Duration::from_secs(1))
            .connect_backoff(50 * MS)
            .connect_backoff_max(400 * MS)
    });
    control.set_down(true);
    let upkeep = pool.spawn_upkeep();

    let span = Duration::from_secs(5);
    let start = Instant::now();
    let mut gets = 0;
    while start.elapsed() < span {
        let err = pool.get().await.unwrap_err();
        match &err {
            PoolError::Backend(e) => assert_eq!(e.message(), DEFAULT_ERROR_MESSAGE),
            PoolError::Unavailable { last_error, .. } => {
                assert!(last_error.contains(DEFAULT_ERROR_MESSAGE), "{last_error}")
            }
            other => panic!("expected the backend error or Unavailable, got {other:?}"),
        }
        gets += 1;
        tokio::time::advance(10 * MS).await;
        settle(5).await;
    }
    let started = control.connects_started();
    // Attempts at 0, 50, 150, 350, 750, then every 400 ms: 15 in 5 s without jitter;
    // with the full 20% off every delay (40, 80, 160, 320 ...): 18.
    assert!(gets >= 400, "only {gets} gets in 5 s: callers were held up");
    assert!(
        (10..=19).contains(&started),
        "{started} connects in 5 s for {gets} gets: not the back-off schedule"
    );
    assert_eq!(control.connects_succeeded(), 0);

    control.set_down(false);
    tokio::time::sleep(500 * MS).await; // past the longest retry delay
    let conn = pool.get().await.expect("the pool recovers by itself");
    assert!(!conn.is_killed());
    drop(conn);
    yield_until("upkeep to keep min_idle", 100, || pool.status().idle >= 1).await;
    upkeep.abort();
}

/// A caller that had to wait while the pool was backing off (another connection in
/// use, room for one more) opens a connection once the back-off ends, instead of
/// waiting out its whole wait timeout for a return.
#[tokio::test(start_paused = true)]
async fn waiter_parked_during_backoff_connects_when_it_ends() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .wait_timeout(Duration::from_secs(20))
            .connect_backoff(100 * MS)
            .connect_backoff_max(100 * MS)
    });
    let _held = pool.get().await.unwrap();
    control.fail_next_connects(1);
    assert!(matches!(
        pool.get().await.unwrap_err(),
        PoolError::Backend(_)
    ));

    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|conn| conn.id()) }
    });
    yield_until("the caller to wait", 100, || pool.status().waiting == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        waiter.is_finished(),
        "the waiter still waits 900 ms after the back-off ended (status {:?})",
        pool.status()
    );
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
}

/// Slow connects, checks and queries that stay within their timeouts (as over a slow
/// network) all complete: no timeout fires, no connect or check fails. Every checkout
/// is checked. The mock's side of the conformance case
/// `latency_of_50ms_completes_every_operation_without_a_timeout`.
#[tokio::test(start_paused = true)]
async fn slow_operations_within_their_timeouts_all_complete() {
    const MAX: usize = 3;
    const TASKS: usize = 6;
    const ROUNDS: usize = 4;
    let (pool, control) = pool(|b| {
        b.max_size(MAX)
            .check_interval(Duration::ZERO)
            .connect_timeout(Duration::from_secs(1))
            .recycle_timeout(Duration::from_secs(1))
            .wait_timeout(Duration::from_secs(10))
    });
    control.connect_delay(300 * MS);
    control.recycle_delay(200 * MS);
    control.query_delay(200 * MS);
    let started = Instant::now();
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let pool = pool.clone();
        users.spawn(async move {
            for _ in 0..ROUNDS {
                let mut conn = pool.get().await?;
                conn.query().await.expect("a slow query completes");
            }
            Ok::<(), PoolError<_>>(())
        });
    }
    while let Some(joined) = users.join_next().await {
        joined
            .unwrap()
            .expect("every get completes without a timeout");
    }
    assert!(
        started.elapsed() >= 300 * MS + 200 * MS,
        "the delays were not applied"
    );
    assert_eq!(control.connects_succeeded(), MAX);
    assert_eq!(control.connects_failed(), 0);
    assert_eq!(control.recycles_failed(), 0);
    assert!(
        control.recycles() >= TASKS * ROUNDS - MAX,
        "every reuse was checked: {} checks",
        control.recycles()
    );
    let status = pool.status();
    assert_eq!((status.size, status.in_use), (MAX, 0), "{status:?}");
}

/// Callers waiting with the usual `wait_timeout` hand their deadlines to the pool's
/// one watchdog: each still fails after exactly its own bound, in the order they came,
/// and the line is empty afterwards.
#[tokio::test(start_paused = true)]
async fn many_waiters_each_time_out_at_their_own_bound() {
    let (pool, _control) = pool(|b| b.max_size(1).wait_timeout(100 * MS));
    let _held = pool.get().await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..20u32 {
        waiters.push(tokio::spawn({
            let pool = pool.clone();
            async move {
                let started = Instant::now();
                let err = pool.get().await.unwrap_err();
                (started.elapsed(), err)
            }
        }));
        yield_until("the caller to wait", 100, || {
            pool.status().waiting == i as usize + 1
        })
        .await;
        // Spread the deadlines apart.
        tokio::time::sleep(3 * MS).await;
    }
    for waiter in waiters {
        let (elapsed, err) = waiter.await.unwrap();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Wait), "{err:?}");
        assert!(elapsed >= 100 * MS, "fired early: {elapsed:?}");
        assert!(elapsed < 105 * MS, "fired late: {elapsed:?}");
    }
    assert_eq!(pool.status().waiting, 0);
}

/// The watchdog runs on the runtime of the first caller that waited. When that
/// runtime shuts down, callers on another runtime that relied on it keep their own
/// deadlines instead of waiting forever, and a later wait gets a new watchdog.
#[test]
fn waiters_outlive_the_runtime_that_ran_the_watchdog() {
    let (pool, _control) = pool(|b| b.max_size(1).wait_timeout(300 * MS));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let held = first.block_on(pool.get()).unwrap();

    // A caller on the first runtime waits: the watchdog is spawned there, and neither
    // runs once `block_on` returns.
    first.block_on(async {
        tokio::spawn({
            let pool = pool.clone();
            async move { pool.get().await.map(drop) }
        });
        yield_until("the first caller to wait", 100, || {
            pool.status().waiting == 1
        })
        .await;
    });

    // A caller on the second runtime joins behind it, relying on that watchdog.
    let late = second.spawn({
        let pool = pool.clone();
        async move {
            let started = std::time::Instant::now();
            let result = pool.get().await.map(drop);
            (started.elapsed(), result)
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pool.status().waiting < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second caller never waited"
        );
        std::thread::yield_now();
    }

    drop(first);
    let (elapsed, result) = second
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), late).await })
        .expect("the second caller still waited 5 s after its 300 ms bound")
        .unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Wait), "{err:?}");
    assert!(elapsed >= 300 * MS, "fired early: {elapsed:?}");

    // The next wait, on the second runtime, is watched again and times out too.
    let err = second.block_on(pool.get()).unwrap_err();
    assert_eq!(err.timeout_kind(), Some(TimeoutKind::Wait), "{err:?}");
    drop(held);
}

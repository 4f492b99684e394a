//! pool-core on the mock manager at the edges of what it is given: durations too long
//! for an `Instant` (`Duration::MAX` for "never"), and a runtime shut down under a
//! caller. Nothing panics, no room is lost, and nothing deadlocks.

mod core_common;

use std::time::Duration;

use core_common::{poll_once, pool, settle};

/// `get_timeout(Some(Duration::MAX))`, "as long as it takes", waits like `None`
/// instead of overflowing the deadline.
#[tokio::test(start_paused = true)]
async fn a_wait_too_long_for_an_instant_never_ends() {
    let (pool, _control) = pool(|b| b.max_size(1));
    let held = pool.get().await.unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get_timeout(Some(Duration::MAX)).await.map(drop) }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiting.is_finished(), "still waiting after an hour");
    drop(held);
    let got = waiting.await.expect("the get did not panic");
    assert!(got.is_ok(), "{got:?}");
}

/// A `max_lifetime` too long for an `Instant` never ends, and the connect that
/// stamps it neither panics nor loses its room.
#[tokio::test(start_paused = true)]
async fn a_lifetime_too_long_for_an_instant_never_ends() {
    let (pool, control) = pool(|b| b.max_size(1).max_lifetime(Duration::MAX));
    let got = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|conn| conn.info().expires_at()) }
    })
    .await
    .expect("the get did not panic");
    assert_eq!(got.unwrap(), None);
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status:?}");
    assert_eq!(control.live(), 1);
}

/// A `check_interval` too long for an `Instant` never comes due: no check on any
/// checkout.
#[tokio::test(start_paused = true)]
async fn a_check_interval_too_long_for_an_instant_never_comes_due() {
    let (pool, control) = pool(|b| b.max_size(1).check_interval(Duration::MAX));
    drop(pool.get().await.unwrap());
    drop(pool.get().await.unwrap());
    assert_eq!(pool.status().size, 1, "the same connection, reused");
    assert_eq!(control.recycles(), 0, "checked although never due");
}

/// Upkeep with an `idle_timeout` too long for an `Instant` still closes the expired
/// connections it took out of the list, and frees their room.
#[tokio::test(start_paused = true)]
async fn upkeep_with_an_idle_timeout_too_long_for_an_instant_closes_expired_ones() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .max_lifetime(Duration::from_secs(10))
            .idle_timeout(Duration::MAX)
            .leak_threshold(Duration::MAX)
    });
    let old = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let young = pool.get().await.unwrap();
    drop((old, young));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let upkeep = pool.spawn_upkeep();
    settle(20).await;
    let status = pool.status();
    upkeep.abort();
    assert_eq!(
        (status.size, control.live()),
        (1, 1),
        "the expired one closed, the young one kept: {status:?}"
    );
}

/// A get with a deadline on a runtime shut down under it (its handle still entered,
/// as on a `spawn_blocking` thread outliving the runtime) returns from its first poll:
/// the watchdog task tokio drops at once hands its deadlines back without finding the
/// pool's lock held by the very caller that spawned it.
#[test]
fn a_get_on_a_runtime_shut_down_under_it_does_not_deadlock() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pool, _control) = pool(|b| b.max_size(1).wait_timeout(Duration::from_secs(1)));
    // Not dropped if the test fails: its return would wait on the deadlocked lock.
    let held = std::mem::ManuallyDrop::new(runtime.block_on(pool.get()).unwrap());
    let handle = runtime.handle().clone();
    runtime.shutdown_background();

    let (polled, first_poll) = std::sync::mpsc::channel();
    let caller = std::thread::spawn({
        let pool = pool.clone();
        move || {
            let _entered = handle.enter();
            let mut get = std::pin::pin!(pool.get());
            let pending = poll_once(get.as_mut()).is_pending();
            polled.send(pending).unwrap();
        }
    });
    // Explicit synchronisation would hang with the bug; the bound only names it.
    let pending = first_poll
        .recv_timeout(Duration::from_secs(10))
        .expect("the first poll of get() never returned: the pool's lock is deadlocked");
    assert!(pending, "the pool is full: the caller waits");
    caller.join().unwrap();
    drop(std::mem::ManuallyDrop::into_inner(held));
    assert_eq!(
        pool.status().idle,
        1,
        "the lock is free: the return went through"
    );
}

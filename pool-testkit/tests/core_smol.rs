//! pool-core on smol instead of tokio (`Runtime::Smol2`): the timeouts are smol timers
//! that really fire, and upkeep is a plain future smol drives.
//!
//! Real time here (smol has no paused clock), with generous upper bounds. The mock's
//! gates need no runtime; its delays (tokio sleeps) are not used.

mod core_common;

use std::future::Future;
use std::time::{Duration, Instant};

use core_common::pool;
use pool_core::{Pool, PoolError, Runtime, TimeoutKind};
use pool_testkit::mock::{MockControl, MockManager};

const MS: Duration = Duration::from_millis(1);
/// Far beyond any bound the tests wait for, so only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(10);

fn smol_pool(
    configure: impl FnOnce(pool_core::Builder<MockManager>) -> pool_core::Builder<MockManager>,
) -> (Pool<MockManager>, MockControl) {
    pool(|b| configure(b.runtime(Runtime::Smol2)))
}

/// Resolves to `Some(output)`, or `None` if `fut` takes longer than `PATIENCE`.
async fn patiently<T>(fut: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(PATIENCE).await;
        None
    })
    .await
}

/// Polls `done` every few milliseconds until it holds; panics after `PATIENCE`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        smol::Timer::after(2 * MS).await;
    }
}

/// `get`/return work on smol, and a wait timeout fires on smol's timer.
#[test]
fn get_and_wait_timeout_on_smol() {
    smol::block_on(async {
        let (pool, control) = smol_pool(|b| b.max_size(1).wait_timeout(50 * MS));
        let held = pool.get().await.unwrap();
        assert_eq!(held.id(), 1);

        let started = Instant::now();
        let err = patiently(pool.get())
            .await
            .expect("the wait timeout fired")
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Wait), "{err:?}");
        assert!(elapsed >= 50 * MS, "fired early: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "fired late: {elapsed:?}");

        drop(held);
        let again = pool.get().await.unwrap();
        assert_eq!(again.id(), 1, "reused");
        assert_eq!(control.connects_started(), 1);
    });
}

/// A hung connect and a hung check time out on smol's timer too, each with its kind.
#[test]
fn connect_and_recycle_timeouts_on_smol() {
    smol::block_on(async {
        let (pool, control) = smol_pool(|b| {
            b.max_size(1)
                .wait_timeout(Duration::from_secs(5))
                .connect_timeout(50 * MS)
                .recycle_timeout(50 * MS)
                .check_interval(Duration::ZERO)
                .connect_backoff(MS)
                .connect_backoff_max(MS)
        });
        control.hang_connects(true);
        let started = Instant::now();
        let err = patiently(pool.get()).await.expect("fired").unwrap_err();
        assert_eq!(err.timeout_kind(), Some(TimeoutKind::Connect), "{err:?}");
        assert!(started.elapsed() >= 50 * MS);
        assert_eq!(pool.status().size, 0);

        control.hang_connects(false);
        smol::Timer::after(5 * MS).await; // past the 1 ms back-off
        drop(pool.get().await.unwrap());
        control.hang_recycles(true);
        let started = Instant::now();
        let err = patiently(pool.get()).await.expect("fired").unwrap_err();
        assert!(
            matches!(err, PoolError::Timeout(TimeoutKind::Recycle, _)),
            "{err:?}"
        );
        assert!(started.elapsed() >= 50 * MS);
        assert_eq!(control.live(), 0, "the hung connection was discarded");
    });
}

/// Upkeep driven by smol opens `min_idle` connections with no `get`.
#[test]
fn upkeep_on_smol_warms_min_idle() {
    smol::block_on(async {
        let (pool, control) = smol_pool(|b| b.max_size(4).min_idle(2));
        let warmed = smol::future::or(
            async {
                pool.upkeep().await;
                false
            },
            async {
                for _ in 0..1000 {
                    if control.live() == 2 {
                        return true;
                    }
                    smol::future::yield_now().await;
                }
                false
            },
        )
        .await;
        assert!(
            warmed,
            "upkeep did not open min_idle (live {})",
            control.live()
        );
        let status = pool.status();
        assert_eq!((status.size, status.idle), (2, 2), "{status:?}");
    });
}

/// Spawned on smol's executor, upkeep sleeps on smol's timer, closes connections idle
/// past `idle_timeout`, refills `min_idle`, and ends when the pool is closed.
#[test]
fn spawned_upkeep_on_smol_reaps_refills_and_ends_on_close() {
    smol::block_on(async {
        let (pool, control) = smol_pool(|b| {
            b.max_size(4)
                .min_idle(1)
                .idle_timeout(100 * MS)
                .check_interval(None)
        });
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(pool.get().await.unwrap());
        }
        drop(conns);
        let returned = Instant::now();
        let upkeep = smol::spawn(pool.upkeep());

        eventually("idle ones beyond min_idle to close", || control.live() == 1).await;
        assert!(returned.elapsed() >= 100 * MS, "closed before idle_timeout");
        assert_eq!(pool.status().idle, 1);

        let conn = pool.get().await.unwrap();
        assert!(control.kill(conn.id()));
        drop(conn); // broken: closed, and upkeep refills min_idle
        eventually("upkeep to refill min_idle", || {
            control.live_ids() == [4] && pool.status().idle == 1
        })
        .await;

        assert_eq!(pool.close(Duration::from_secs(1)).await, Ok(()));
        assert_eq!(control.live(), 0);
        assert!(
            patiently(upkeep).await.is_some(),
            "upkeep ended after close"
        );
    });
}

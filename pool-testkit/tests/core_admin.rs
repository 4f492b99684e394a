//! pool-core on the mock manager: what a user does to the pool as a whole (`close`,
//! `resize`, `retain`) and to one connection (`detach`, `mark_broken`).

mod core_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use core_common::{check_out, poll_once, pool, yield_until};
use pool_core::{BuildError, CloseError, ConnectionInfo, Manager, Pool, PoolError};
use pool_testkit::mock::MockError;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// `close` closes idle connections at once, fails new gets with `Closed`, closes a
/// held connection when it comes back, stops upkeep, and returns `Ok` once all are back
/// before the deadline.
#[tokio::test(start_paused = true)]
async fn close_closes_idle_now_and_in_use_on_return() {
    let (pool, control) = pool(|b| b.max_size(3));
    let upkeep = pool.spawn_upkeep();
    let held = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let c = pool.get().await.unwrap();
    drop((b, c));
    assert_eq!((control.live(), pool.status().idle), (3, 2));

    let started = Instant::now();
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(5)).await }
    });
    yield_until("close to start", 100, || pool.is_closed()).await;
    assert_eq!(control.live(), 1, "idle connections closed at once");
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (1, 0, 1),
        "{status:?}"
    );
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
    assert!(matches!(pool.try_get().await, Err(PoolError::Closed)));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !closing.is_finished(),
        "close waits for the held connection"
    );
    drop(held);
    assert_eq!(control.live(), 0, "closed on return");
    assert_eq!(pool.status().size, 0);
    assert_eq!(closing.await.unwrap(), Ok(()));
    assert!(started.elapsed() < Duration::from_secs(5));
    yield_until("upkeep to end", 100, || upkeep.is_finished()).await;
}

/// `close` wakes waiting callers with `Closed`, and reports the connection still held
/// at its deadline; that one is closed when it comes back later.
#[tokio::test(start_paused = true)]
async fn close_wakes_waiters_and_reports_connections_held_past_the_deadline() {
    let (pool, control) = pool(|b| b.max_size(1).wait_timeout(Duration::from_secs(30)));
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    yield_until("the caller to wait", 100, || pool.status().waiting == 1).await;

    let started = Instant::now();
    let result = pool.close(100 * MS).await;
    let elapsed = started.elapsed();
    assert_eq!(
        result,
        Err(CloseError {
            in_use: 1,
            after: 100 * MS
        })
    );
    assert!(elapsed >= 100 * MS && elapsed < 200 * MS, "{elapsed:?}");
    assert!(
        matches!(waiter.await.unwrap(), Err(PoolError::Closed)),
        "the waiter is told the pool closed"
    );
    assert_eq!(pool.status().waiting, 0);

    assert_eq!(control.live(), 1);
    drop(held);
    assert_eq!(control.live(), 0, "closed when it came back");
    assert_eq!(pool.status().size, 0);
}

/// Growing the pool serves a caller that was waiting, by opening a connection.
#[tokio::test(start_paused = true)]
async fn resize_up_serves_waiters() {
    let (pool, control) = pool(|b| b.max_size(1).wait_timeout(Duration::from_secs(30)));
    let _held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|c| c.id()) }
    });
    yield_until("the caller to wait", 100, || pool.status().waiting == 1).await;

    pool.resize(2).unwrap();
    yield_until("the waiter to be served", 100, || waiter.is_finished()).await;
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
    assert_eq!(pool.status().max_size, 2);
    assert_eq!(control.connects_started(), 2);

    // And more can be taken at once now.
    pool.resize(3).unwrap();
    let a = pool.try_get().await.unwrap();
    let b = pool.try_get().await.unwrap();
    assert_eq!((a.id(), b.id()), (2, 3), "the idle one, then a new one");
    assert!(pool.try_get().await.is_err(), "full at 3");
}

/// Shrinking closes idle connections beyond the new size at once and in-use ones as
/// they come back, until the size is the new maximum.
#[tokio::test(start_paused = true)]
async fn resize_down_closes_idle_now_and_in_use_on_return() {
    let (pool, control) = pool(|b| b.max_size(4));
    let mut conns = check_out(&pool, 4).await;
    let d = conns.pop().unwrap();
    let c = conns.pop().unwrap();
    drop((c, d));
    let (a, b) = (conns.remove(0), conns.remove(0));
    assert_eq!(pool.status().idle, 2);

    pool.resize(1).unwrap();
    let status = pool.status();
    assert_eq!(status.max_size, 1);
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (2, 0, 2),
        "{status:?}"
    );
    assert_eq!(control.live(), 2, "idle ones closed at once");

    drop(a);
    assert_eq!(control.live(), 1, "an in-use one closed on return");
    assert_eq!(pool.status().size, 1);
    drop(b);
    assert_eq!(control.live(), 1, "at the new size: kept");
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status:?}");
    let _one = pool.try_get().await.unwrap();
    assert!(pool.try_get().await.is_err(), "full at 1");
}

/// A connection handed to a waiter who gives up after a shrink is closed, as its
/// return would have been, not kept idle above the new size.
#[tokio::test(start_paused = true)]
async fn resize_down_closes_a_grant_its_waiter_gave_up() {
    let (pool, control) = pool(|b| b.max_size(3));
    let mut conns = check_out(&pool, 3).await;
    let mut get = Box::pin(pool.get());
    assert!(poll_once(get.as_mut()).is_pending(), "in line");
    drop(conns.pop());
    assert_eq!(pool.status().waiting, 0, "handed to the waiter");

    pool.resize(1).unwrap();
    assert_eq!(pool.status().size, 3, "all three are out");
    drop(get);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (2, 0, 2),
        "the grant was closed: {status:?}"
    );
    assert_eq!(control.live(), 2);
    drop(conns);
    assert_eq!(pool.status().size, 1);
}

/// What the next connection closed runs, shared by all of them.
type CloseHook = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// A get whose check straddles `close` fails with `Closed`, as a connect that ends
/// after `close` does, instead of handing out a connection of the closed pool; and
/// `close` does not wait for it.
#[tokio::test(start_paused = true)]
async fn a_get_checking_when_the_pool_closes_fails_with_closed() {
    let (pool, control) = pool(|b| b.max_size(1).check_interval(Duration::ZERO));
    drop(pool.get().await.unwrap());
    control.pause_recycles();
    let getting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    yield_until("the check to start", 100, || {
        control.recycles_waiting() == 1
    })
    .await;
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(5)).await }
    });
    yield_until("close", 100, || pool.is_closed()).await;
    control.resume_recycles();
    let got = getting.await.unwrap();
    assert!(matches!(got, Err(PoolError::Closed)), "{got:?}");
    assert!(closing.await.unwrap().is_ok());
    assert_eq!(control.live(), 0);
}

/// A get whose `after_connect` hook straddles `close` fails with `Closed` too, and
/// the connection it opened is closed.
#[tokio::test(start_paused = true)]
async fn a_get_in_after_connect_when_the_pool_closes_fails_with_closed() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (pool, control) = pool(|b| {
        let gate = Arc::clone(&gate);
        b.max_size(1).after_connect(move |_conn, _info| {
            let gate = Arc::clone(&gate);
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                Ok(())
            })
        })
    });
    let getting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    yield_until("the connect", 100, || control.connects_succeeded() == 1).await;
    assert!(
        pool.close(Duration::ZERO).await.is_err(),
        "one is still out"
    );
    gate.add_permits(1);
    let got = getting.await.unwrap();
    assert!(matches!(got, Err(PoolError::Closed)), "{got:?}");
    assert_eq!((pool.status().size, control.live()), (0, 0));
}

/// A waiter handed a connection before `close`, polled after it, fails with `Closed`
/// and the connection is closed.
#[tokio::test(start_paused = true)]
async fn a_grant_taken_after_close_is_closed() {
    let (pool, control) = pool(|b| b.max_size(1));
    let held = pool.get().await.unwrap();
    let mut get = Box::pin(pool.get());
    assert!(poll_once(get.as_mut()).is_pending(), "in line");
    drop(held);
    assert_eq!(pool.status().waiting, 0, "handed to the waiter");
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(5)).await }
    });
    yield_until("close", 100, || pool.is_closed()).await;
    let got = get.await;
    assert!(matches!(got, Err(PoolError::Closed)), "{got:?}");
    assert!(closing.await.unwrap().is_ok());
    assert_eq!(control.live(), 0);
}

/// A connection that runs a hook when it is closed (dropped), to act inside the moment
/// between the pool choosing to close it and freeing its room.
struct OnClose(CloseHook);

impl Drop for OnClose {
    fn drop(&mut self) {
        let hook = self.0.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// Opens [`OnClose`] connections sharing one hook, which the first close takes.
#[derive(Default)]
struct OnCloseManager(CloseHook);

#[async_trait::async_trait]
impl Manager for OnCloseManager {
    type Connection = OnClose;
    type Error = MockError;
    async fn connect(&self) -> Result<OnClose, MockError> {
        Ok(OnClose(Arc::clone(&self.0)))
    }
    async fn recycle(&self, _: &mut OnClose, _: &ConnectionInfo) -> Result<(), MockError> {
        Ok(())
    }
}

/// After a shrink by one, two connections returned one after the other close one
/// between them, even when the second returns while the first is still closing (the
/// pool counts it until it is gone, but no longer as room above the new size).
#[tokio::test]
async fn resize_down_closes_once_while_a_close_is_under_way() {
    let manager = OnCloseManager::default();
    let hook = Arc::clone(&manager.0);
    let pool = Pool::builder(manager).max_size(3).build().unwrap();
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(pool.get().await.unwrap());
    }
    pool.resize(2).unwrap();
    let second = conns.pop().unwrap();
    let status_inside = Arc::new(Mutex::new(None));
    *hook.lock().unwrap() = Some(Box::new({
        let (pool, status_inside) = (pool.clone(), Arc::clone(&status_inside));
        move || {
            drop(second);
            *status_inside.lock().unwrap() = Some(pool.status());
        }
    }));

    drop(conns.pop());
    let inside = status_inside
        .lock()
        .unwrap()
        .take()
        .expect("the close ran the hook");
    assert_eq!(
        (inside.size, inside.idle),
        (3, 1),
        "the second return was kept while the first closed: {inside:?}"
    );
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (2, 1, 1),
        "one closed for the shrink: {status:?}"
    );
    drop(conns);
    assert_eq!(pool.status().size, 2);
}

/// `resize(0)` (and below `min_idle`) is refused, naming `max_size`.
#[tokio::test]
async fn resize_refuses_zero_and_below_min_idle() {
    let (pool, _control) = pool(|b| b.max_size(4).min_idle(2));
    let err = pool.resize(0).unwrap_err();
    assert!(matches!(err, BuildError::InvalidConfig { .. }), "{err:?}");
    assert_eq!(err.field(), "max_size");
    assert!(err.to_string().contains("max_size"), "{err}");
    let err = pool.resize(1).unwrap_err();
    assert_eq!(err.field(), "max_size");
    assert!(err.to_string().contains("min_idle"), "{err}");
    assert_eq!(pool.status().max_size, 4, "unchanged");
}

/// `retain` closes the idle connections its closure rejects, returns how many, frees
/// their room, and does not visit connections in use.
#[tokio::test(start_paused = true)]
async fn retain_closes_rejected_idle_connections_only() {
    let (pool, control) = pool(|b| b.max_size(4));
    let mut conns = check_out(&pool, 4).await;
    let in_use = conns.pop().unwrap();
    assert_eq!(in_use.id(), 4);
    drop(conns); // ids 1, 2, 3 idle

    let mut visited = Vec::new();
    let removed = pool.retain(|conn, info| {
        assert_eq!(conn.id(), info.id(), "mock and pool ids agree");
        visited.push(conn.id());
        conn.id() != 2
    });
    visited.sort_unstable();
    assert_eq!(visited, [1, 2, 3], "only idle connections are visited");
    assert_eq!(removed, 1);
    assert_eq!(control.live_ids(), [1, 3, 4]);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (3, 2, 1),
        "{status:?}"
    );

    // The freed room takes a new connection.
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(pool.try_get().await.unwrap());
    }
    let mut ids: Vec<_> = more.iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 3, 5]);
    assert_eq!(pool.retain(|_, _| false), 0, "nothing idle");
}

/// `detach` frees the slot at once (another `get` opens a new connection at
/// `max_size` 1) and the detached connection stays open.
#[tokio::test(start_paused = true)]
async fn detach_frees_the_slot_and_keeps_the_connection() {
    let (pool, control) = pool(|b| b.max_size(1).wait_timeout(50 * MS));
    let conn = pool.get().await.unwrap();
    let mut raw = pool_core::Pooled::detach(conn);
    assert_eq!(pool.status().size, 0);
    assert_eq!(control.live(), 1, "still open");

    let other = pool.get().await.expect("the slot was freed");
    assert_eq!(other.id(), 2);
    assert_eq!(control.live(), 2);
    raw.query().await.unwrap();
    drop(raw);
    assert_eq!(control.live(), 1);
    assert_eq!(
        pool.status().size,
        1,
        "the pool did not count the detached one"
    );
}

/// `mark_broken` makes the pool close the connection on return; the next `get` opens
/// a new one.
#[tokio::test(start_paused = true)]
async fn mark_broken_closes_on_return() {
    let (pool, control) = pool(|b| b.max_size(1));
    let mut conn = pool.get().await.unwrap();
    conn.mark_broken();
    drop(conn);
    assert_eq!(control.live(), 0);
    assert_eq!(pool.status().size, 0);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 2);
    assert_eq!(control.connects_started(), 2);
}

/// A connect under way when the pool closes: its connection is closed when it
/// arrives, its caller gets `Closed`, and `close` waits for it.
#[tokio::test(start_paused = true)]
async fn close_during_a_connect_closes_the_new_connection() {
    let (pool, control) = pool(|b| b.max_size(1));
    control.pause_connects();
    let getter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(drop) }
    });
    yield_until("the connect to start", 100, || {
        control.connects_waiting() == 1
    })
    .await;
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(5)).await }
    });
    yield_until("close to start", 100, || pool.is_closed()).await;
    assert!(!closing.is_finished(), "close waits for the connect");

    control.resume_connects();
    assert!(matches!(getter.await.unwrap(), Err(PoolError::Closed)));
    assert_eq!(closing.await.unwrap(), Ok(()));
    assert_eq!(control.live(), 0);
    assert_eq!(control.connects_succeeded(), 1);
    assert_eq!(pool.status().size, 0);
}

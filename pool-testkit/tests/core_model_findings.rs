//! Regressions for what the model check of pool-core (pool-core/tests/model.rs) found,
//! each replayed here on tokio in the one order that showed it.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pool_core::Pool;
use pool_testkit::mock::MockManager;

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// A connection handed to a waiter just before `close`, whose `get` is then dropped
/// without taking it, is closed: `close` cannot reach it (it is neither idle nor in
/// line), so parking it idle would leave it open in the closed pool, and `close` would
/// wait for it until its deadline.
#[tokio::test(start_paused = true)]
async fn a_connection_handed_over_before_close_is_closed_when_its_waiter_gives_up() {
    let manager = MockManager::new();
    let control = manager.control();
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let held = pool.get().await.unwrap();

    let mut get = Box::pin(pool.get());
    assert!(poll_once(get.as_mut()).is_pending(), "waits in line");
    drop(held); // handed straight to the waiter
    let mut close = pin!(pool.close(Duration::from_secs(5)));
    assert!(
        poll_once(close.as_mut()).is_pending(),
        "close waits for the handed-over connection"
    );
    drop(get); // the waiter gives up without taking it

    assert_eq!(control.live(), 0, "closed, not parked in the closed pool");
    let status = pool.status();
    assert_eq!((status.size, status.idle), (0, 0), "{status}");
    assert_eq!(close.await, Ok(()), "close sees the last connection go");
}

//! The pool's accounting under concurrency and cancellation: `max_size` is never
//! exceeded, waiters are served in order, and a `get` cancelled at any of its await
//! points leaves the pool whole.
//!
//! No test here sleeps to wait for something to happen: each synchronises on the mock's
//! gates (a connect or check parked until the test releases it), on the pool's own
//! counts, or by polling a future by hand.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

mod core_common;

use core_common::poll_once;
use pool_core::{Manager, Pool, PoolError, Status};
use pool_testkit::mock::{MockControl, MockManager};

fn pool(max_size: usize) -> (Pool<MockManager>, MockControl) {
    pool_with(max_size, |b| b)
}

fn pool_with(
    max_size: usize,
    configure: impl FnOnce(pool_core::Builder<MockManager>) -> pool_core::Builder<MockManager>,
) -> (Pool<MockManager>, MockControl) {
    let manager = MockManager::new();
    let control = manager.control();
    let builder = Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Duration::from_secs(30));
    (configure(builder).build().expect("valid config"), control)
}

/// The pool is whole: its counts add up, nobody waits, nothing is half-open, every
/// counted connection exists, and `max_size` connections can be taken at once.
async fn assert_whole<M: Manager>(pool: &Pool<M>, control: &MockControl) {
    let status = pool.status();
    assert_counts_add_up(status);
    assert_eq!(status.in_use, 0, "nothing is checked out: {status}");
    assert_eq!(status.waiting, 0, "nobody waits: {status}");
    assert_eq!(status.connecting, 0, "nothing is being opened: {status}");
    assert_eq!(
        control.live(),
        status.size,
        "every counted connection exists and no uncounted one does: {status}"
    );
    let mut held = Vec::new();
    for i in 0..status.max_size {
        match pool.try_get().await {
            Ok(conn) => held.push(conn),
            Err(e) => panic!(
                "connection {i} of {} not available at once: {e:?}",
                status.max_size
            ),
        }
    }
    assert!(
        matches!(pool.try_get().await, Err(PoolError::Timeout(..))),
        "no more than max_size can be taken"
    );
    drop(held);
    assert_eq!(pool.status().in_use, 0);
}

fn assert_counts_add_up(status: Status) {
    assert_eq!(
        status.size,
        status.idle + status.in_use + status.connecting,
        "size = idle + in_use + connecting: {status}"
    );
    assert!(
        status.size <= status.max_size,
        "size within max_size: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_over_eight_connections_never_exceed_eight() {
    let (pool, control) = pool(8);
    let observed_peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let pool = pool.clone();
            let observed_peak = observed_peak.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.expect("get");
                conn.query().await.expect("query");
                let status = pool.status();
                assert_counts_add_up(status);
                observed_peak.fetch_max(status.size, std::sync::atomic::Ordering::Relaxed);
                for _ in 0..(i % 3) {
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("every task finishes");
    }
    assert!(
        control.peak_live() <= 8,
        "peak live {} > 8",
        control.peak_live()
    );
    assert!(observed_peak.load(std::sync::atomic::Ordering::Relaxed) <= 8);
    assert!(control.connects_succeeded() <= 8, "connections were reused");
    assert_whole(&pool, &control).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let (pool, control) = pool(1);
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let pool2 = pool.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let conn = pool2.get().await.expect("get");
            order.lock().unwrap().push(i);
            tokio::task::yield_now().await;
            drop(conn);
        }));
        // Arrival order is defined by entering the queue: wait until this one has.
        while pool.status().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_while_waiting_in_line() {
    let (pool, control) = pool(1);
    let held = pool.get().await.unwrap();
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        assert_eq!(pool.status().waiting, 1);
    }
    assert_eq!(
        pool.status().waiting,
        0,
        "the cancelled waiter left the line"
    );
    drop(held);
    assert_eq!(pool.status().idle, 1);
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_after_a_connection_was_handed_to_it() {
    let (pool, control) = pool(1);
    let held = pool.get().await.unwrap();
    let id = held.id();
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        // The return hands the connection straight to the waiter...
        drop(held);
        assert_eq!(pool.status().idle, 0, "handed over, not parked");
        // ...which is cancelled before it could take it.
    }
    let status = pool.status();
    assert_eq!(
        status.idle, 1,
        "the handed-over connection came back: {status}"
    );
    assert_eq!(pool.get().await.unwrap().id(), id, "and it is the same one");
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_after_being_given_room_to_connect() {
    let (pool, control) = pool(1);
    let mut held = pool.get().await.unwrap();
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        // A broken connection is closed on return, so the waiter is given room to
        // open a new one instead...
        held.mark_broken();
        drop(held);
        let status = pool.status();
        assert_eq!(
            (status.size, status.connecting),
            (1, 1),
            "room granted: {status}"
        );
        // ...and is cancelled before it started.
    }
    let status = pool.status();
    assert_eq!(
        (status.size, status.connecting),
        (0, 0),
        "room given back: {status}"
    );
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_while_connecting() {
    let (pool, control) = pool(2);
    control.pause_connects();
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        assert_eq!(control.connects_waiting(), 1, "the connect is in flight");
        assert_eq!(pool.status().connecting, 1);
    }
    let status = pool.status();
    assert_eq!(
        (status.size, status.connecting),
        (0, 0),
        "room given back: {status}"
    );
    control.resume_connects();
    assert_eq!(
        control.live(),
        0,
        "the abandoned connect made no connection"
    );
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_while_checking_before_checkout() {
    let (pool, control) = pool_with(2, |b| b.check_interval(Duration::ZERO));
    drop(pool.get().await.unwrap());
    control.pause_recycles();
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        assert_eq!(control.recycles_waiting(), 1, "the check is in flight");
    }
    control.resume_recycles();
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle),
        (0, 0),
        "a connection whose check was cut short is closed, not reused: {status}"
    );
    assert_eq!(control.live(), 0);
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_in_an_after_connect_hook() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let hook_gate = gate.clone();
    let (pool, control) = pool_with(2, move |b| {
        b.after_connect(move |_conn, _info| {
            let gate = hook_gate.clone();
            Box::pin(async move {
                let _permit = gate.acquire().await;
                Ok(())
            })
        })
    });
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        assert_eq!(control.live(), 1, "connected; parked in the hook");
    }
    assert_eq!(
        control.live(),
        0,
        "a connection cut off in its hook is closed"
    );
    gate.add_permits(100);
    assert_whole(&pool, &control).await;
}

#[tokio::test]
async fn cancelled_in_a_before_checkout_hook() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let hook_gate = gate.clone();
    let (pool, control) = pool_with(2, move |b| {
        b.before_checkout(move |_conn, _info| {
            let gate = hook_gate.clone();
            Box::pin(async move {
                gate.acquire().await.expect("open").forget();
                Ok(())
            })
        })
    });
    // A new connection runs `after_connect` hooks, not `before_checkout` ones.
    drop(pool.get().await.unwrap());
    {
        let mut get = pin!(pool.get());
        assert!(poll_once(get.as_mut()).is_pending());
        assert_eq!(pool.status().in_use, 1, "parked in the hook");
    }
    assert_eq!(
        control.live(),
        0,
        "a connection cut off in its hook is closed"
    );
    gate.add_permits(1000);
    assert_whole(&pool, &control).await;
}

#[tokio::test(start_paused = true)]
async fn cancelled_by_its_wait_timeout() {
    let (pool, control) = pool_with(1, |b| b.wait_timeout(Duration::from_millis(50)));
    let held = pool.get().await.unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(
        err,
        PoolError::Timeout(pool_core::TimeoutKind::Wait, _)
    ));
    assert_eq!(pool.status().waiting, 0);
    drop(held);
    assert_whole(&pool, &control).await;
}

/// Thousands of gets cancelled at random moments (waiting, connecting, checking or
/// holding), mixed with broken connections and due checks; every get that is not
/// cancelled succeeds, and at the end the pool is whole. (Connect failures have
/// their own tests: scripted here they would queue up into an outage.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellation_stress_leaves_the_pool_whole() {
    const TASKS: usize = 4000;
    let (pool, control) = pool_with(4, |b| b.check_interval(Duration::from_micros(50)));
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut tasks = Vec::with_capacity(TASKS);
    let completed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..TASKS {
        let pool = pool.clone();
        let cancel_after = rng.usize(0..6);
        let hold_for = rng.usize(0..3);
        let break_it = rng.u8(0..8) == 0;
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            let cancel = async {
                for _ in 0..cancel_after {
                    tokio::task::yield_now().await;
                }
            };
            tokio::select! {
                biased;
                got = pool.get() => {
                    let mut conn = got.expect("a get that is not cancelled succeeds");
                    {
                        assert_counts_add_up(pool.status());
                        for _ in 0..hold_for {
                            tokio::task::yield_now().await;
                        }
                        if break_it {
                            conn.mark_broken();
                        }
                        completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                _ = cancel, if cancel_after > 0 => {}
            }
        }));
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for task in tasks {
        task.await.expect("no task panics");
    }
    let completed = completed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(completed >= TASKS / 6, "only {completed} gets completed");
    assert!(
        control.peak_live() <= 4,
        "peak live {}",
        control.peak_live()
    );
    assert_whole(&pool, &control).await;
}

/// A connection returned dirty (say, mid-transaction) is reset by upkeep without
/// waiting for its next checkout, so it does not sit idle holding locks.
#[tokio::test]
async fn upkeep_resets_a_dirty_idle_connection_without_a_checkout() {
    let (pool, control) = pool(2);
    let upkeep = pool.spawn_upkeep();
    let mut conn = pool.get().await.unwrap();
    conn.set_dirty();
    drop(conn);
    let mut turns = 0;
    while control.resets() == 0 {
        assert!(turns < 10_000, "upkeep never reset the dirty connection");
        turns += 1;
        tokio::task::yield_now().await;
    }
    let status = pool.status();
    assert_eq!(
        (status.idle, status.in_use),
        (1, 0),
        "back in the pool: {status}"
    );
    let conn = pool.get().await.unwrap();
    assert!(!conn.is_dirty(), "handed out clean");
    assert_eq!(control.resets(), 1, "reset once, not again at checkout");
    drop(conn);
    upkeep.abort();
    assert_whole(&pool, &control).await;
}

/// Upkeep dropped while it resets dirty idle connections (its task aborted at
/// shutdown, say) leaves the pool whole: the connections it had not reached yet go back
/// to the idle list, still dirty, and the one it was resetting is closed. Found by the
/// chaos run (a slot counted in use that no connection held).
#[tokio::test]
async fn upkeep_dropped_mid_reset_leaves_the_pool_whole() {
    let (pool, control) = pool(3);
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.get().await.unwrap();
        conn.set_dirty();
        conns.push(conn);
    }
    drop(conns);
    control.pause_recycles();
    let upkeep = pool.spawn_upkeep();
    let mut turns = 0;
    while control.recycles_waiting() == 0 {
        assert!(turns < 10_000, "upkeep never started resetting");
        turns += 1;
        tokio::task::yield_now().await;
    }
    upkeep.abort();
    assert!(upkeep.await.unwrap_err().is_cancelled());
    control.resume_recycles();
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use),
        (2, 2, 0),
        "the two not yet reset are idle, the one being reset is closed: {status}"
    );
    for _ in 0..2 {
        let conn = pool.get().await.unwrap();
        assert!(!conn.is_dirty(), "reset at checkout instead");
    }
    assert_whole(&pool, &control).await;
}

/// A caller whose connect is under way is also in line: a connection returned
/// meanwhile goes to it at once, and its connect finishes into the pool, idle.
#[tokio::test]
async fn a_caller_opening_a_connection_takes_one_returned_meanwhile() {
    let (pool, control) = pool(2);
    let first = pool.get().await.unwrap();
    let first_id = first.info().id();
    control.pause_connects();
    let mut get = pin!(pool.get());
    assert!(poll_once(get.as_mut()).is_pending());
    assert_eq!(control.connects_waiting(), 1, "its connect is in flight");
    assert_eq!(pool.status().waiting, 1, "and it is in line");

    drop(first);
    let Poll::Ready(Ok(taken)) = poll_once(get.as_mut()) else {
        panic!("the returned connection did not go to the connecting caller");
    };
    assert_eq!(taken.info().id(), first_id);
    assert_eq!(
        control.connects_waiting(),
        1,
        "the connect goes on without it"
    );

    control.resume_connects();
    core_common::yield_until("the new connection to go idle", 100, || {
        pool.status().idle == 1
    })
    .await;
    let status = pool.status();
    assert_eq!(
        (status.size, status.in_use, status.connecting),
        (2, 1, 0),
        "{status}"
    );
    assert_eq!(
        control.connects_succeeded(),
        2,
        "the first connection's, and the one finished without its caller"
    );
    drop(taken);
    assert_whole(&pool, &control).await;
}

/// Room to open granted to a caller whose own connect is still under way is passed on
/// to the next caller: never two connects for one caller.
#[tokio::test]
async fn room_granted_to_a_caller_already_connecting_goes_to_the_next() {
    let (pool, control) = pool(2);
    let mut first = pool.get().await.unwrap();
    control.pause_connects();
    let mut connecting = pin!(pool.get());
    assert!(poll_once(connecting.as_mut()).is_pending());
    let mut behind = pin!(pool.get());
    assert!(poll_once(behind.as_mut()).is_pending());
    assert_eq!(
        (control.connects_waiting(), pool.status().waiting),
        (1, 2),
        "the pool is full: one connect, two in line"
    );

    // Closing the held connection frees room; the first in line is the caller
    // already connecting, which passes it to the one behind.
    first.mark_broken();
    drop(first);
    assert!(poll_once(connecting.as_mut()).is_pending());
    assert!(poll_once(behind.as_mut()).is_pending());
    let status = pool.status();
    assert_eq!(
        control.connects_waiting(),
        2,
        "the caller behind connects: {status}"
    );
    assert_eq!((status.size, status.connecting), (2, 2), "{status}");

    control.resume_connects();
    let (mut a, mut b) = (None, None);
    for _ in 0..100 {
        if a.is_none() {
            if let Poll::Ready(got) = poll_once(connecting.as_mut()) {
                a = Some(got.unwrap());
            }
        }
        if b.is_none() {
            if let Poll::Ready(got) = poll_once(behind.as_mut()) {
                b = Some(got.unwrap());
            }
        }
        if a.is_some() && b.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let (Some(a), Some(b)) = (a, b) else {
        panic!("both callers are served by the two new connections");
    };
    assert_ne!(a.info().id(), b.info().id());
    assert_eq!(
        control.connects_succeeded(),
        3,
        "the first, and one per caller"
    );
    drop((a, b));
    assert_whole(&pool, &control).await;
}

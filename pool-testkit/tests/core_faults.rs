//! pool-core on the mock manager: driver and hook code that panics or rejects
//! connections, and every connection killed at once under load. The pool's counts stay
//! consistent and its room is never lost.

mod core_common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use core_common::pool;
use pool_core::{HookError, Pool, PoolError};
use pool_testkit::mock::{MockControl, MockManager};

/// Asserts the pool holds nothing and every one of its `max_size` slots can be taken
/// at once.
async fn assert_whole(pool: &Pool<MockManager>, control: &MockControl) {
    let status = pool.status();
    assert_eq!(
        (
            status.size,
            status.connecting,
            status.in_use,
            status.waiting
        ),
        (status.idle, 0, 0, 0),
        "inconsistent after the panic: {status:?}"
    );
    assert_eq!(control.live(), status.size, "pool and server disagree");
    let mut conns = Vec::new();
    for _ in 0..status.max_size {
        conns.push(pool.try_get().await.expect("every slot can be taken"));
    }
    assert_eq!(pool.status().in_use, status.max_size);
    assert!(conns.iter().all(|c| !c.is_killed()));
}

/// Runs one `get` in a task of its own; returns whether it panicked.
async fn get_in_task(pool: &Pool<MockManager>) -> bool {
    let pool = pool.clone();
    let task = tokio::spawn(async move { pool.get().await.map(drop) });
    match task.await {
        Ok(_) => false,
        Err(e) => e.is_panic(),
    }
}

/// A connect that panics fails its own task only; its slot is freed.
#[tokio::test]
async fn panicking_connect_frees_its_slot() {
    let (pool, control) = pool(|b| b.max_size(2));
    control.panic_next_connects(1);
    assert!(
        get_in_task(&pool).await,
        "the connect's panic reaches its caller"
    );
    let status = pool.status();
    assert_eq!((status.size, status.connecting), (0, 0), "{status:?}");
    assert_whole(&pool, &control).await;
}

/// A check that panics fails its own task only; the connection is discarded.
#[tokio::test]
async fn panicking_recycle_discards_the_connection() {
    let (pool, control) = pool(|b| b.max_size(2).check_interval(Duration::ZERO));
    drop(pool.get().await.unwrap());
    control.panic_next_recycles(1);
    assert!(get_in_task(&pool).await);
    assert_eq!(control.live(), 0, "the connection being checked was closed");
    assert_eq!(pool.status().size, 0);
    assert_whole(&pool, &control).await;
}

/// `has_broken` panicking on return does not escape the drop; the connection is
/// discarded.
#[tokio::test]
async fn panicking_has_broken_discards_on_return() {
    let (pool, control) = pool(|b| b.max_size(2));
    let conn = pool.get().await.unwrap();
    control.panic_next_has_broken(1);
    drop(conn); // must not panic
    assert_eq!(control.has_broken_calls(), 1);
    assert_eq!(control.live(), 0);
    assert_eq!(pool.status().size, 0);
    assert_whole(&pool, &control).await;
}

/// `has_broken` panicking when an idle connection is about to be handed out counts as
/// broken: the connection is closed, never handed out, and `has_broken` is asked once
/// for it (a second asking could answer differently and hand it out).
#[tokio::test]
async fn panicking_has_broken_at_checkout_closes_the_connection() {
    let (pool, control) = pool(|b| b.max_size(2));
    let first_id = pool.get().await.unwrap().id();
    let calls_before = control.has_broken_calls();
    control.panic_next_has_broken(1);
    let conn = pool.get().await.unwrap();
    assert_ne!(
        conn.id(),
        first_id,
        "the connection judged broken was handed out"
    );
    assert_eq!(
        control.has_broken_calls() - calls_before,
        1,
        "has_broken is asked once for the idle connection (the new one is not asked)"
    );
    drop(conn);
    assert_eq!(control.live(), 1);
    assert_whole(&pool, &control).await;
}

/// Builds a flag that is `true` exactly once.
fn once() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(true))
}

/// An `after_return` hook panicking does not escape the drop; the connection is
/// discarded.
#[tokio::test]
async fn panicking_after_return_hook_discards_on_return() {
    let armed = once();
    let (pool, control) = pool(|b| {
        let armed = armed.clone();
        b.max_size(2).after_return(move |_conn, _info| {
            if armed.swap(false, Ordering::SeqCst) {
                panic!("after_return hook panics");
            }
            Ok(())
        })
    });
    let conn = pool.get().await.unwrap();
    drop(conn); // must not panic
    assert_eq!(control.live(), 0);
    assert_eq!(pool.status().size, 0);
    assert_whole(&pool, &control).await;
}

/// A `before_checkout` hook panicking fails its own task; the connection is discarded.
#[tokio::test]
async fn panicking_before_checkout_hook_discards_the_connection() {
    let armed = Arc::new(AtomicBool::new(false));
    let (pool, control) = pool(|b| {
        let armed = armed.clone();
        b.max_size(2).before_checkout(move |_conn, _info| {
            let fire = armed.swap(false, Ordering::SeqCst);
            Box::pin(async move {
                if fire {
                    panic!("before_checkout hook panics");
                }
                Ok(())
            })
        })
    });
    drop(pool.get().await.unwrap());
    armed.store(true, Ordering::SeqCst);
    assert!(get_in_task(&pool).await);
    assert_eq!(control.live(), 0);
    assert_eq!(pool.status().size, 0);
    assert_whole(&pool, &control).await;
}

/// An `after_connect` hook panicking fails its own task; the new connection is closed.
#[tokio::test]
async fn panicking_after_connect_hook_closes_the_connection() {
    let armed = once();
    let (pool, control) = pool(|b| {
        let armed = armed.clone();
        b.max_size(2).after_connect(move |_conn, _info| {
            let fire = armed.swap(false, Ordering::SeqCst);
            Box::pin(async move {
                if fire {
                    panic!("after_connect hook panics");
                }
                Ok(())
            })
        })
    });
    assert!(get_in_task(&pool).await);
    assert_eq!(control.connects_succeeded(), 1);
    assert_eq!(control.live(), 0);
    assert_whole(&pool, &control).await;
}

/// `after_connect` rejecting fails the `get` with `PoolError::Hook` carrying the
/// hook's message, and closes the new connection.
#[tokio::test]
async fn after_connect_rejection_fails_the_get() {
    let (pool, control) = pool(|b| {
        b.max_size(1).after_connect(|conn, _info| {
            let id = conn.id();
            Box::pin(async move {
                if id == 1 {
                    Err(HookError::new("search_path could not be set"))
                } else {
                    Ok(())
                }
            })
        })
    });
    let err = pool.get().await.unwrap_err();
    let PoolError::Hook(hook) = &err else {
        panic!("expected a hook error, got {err:?}");
    };
    assert_eq!(hook.to_string(), "search_path could not be set");
    assert!(
        err.to_string().contains("search_path could not be set"),
        "{err}"
    );
    assert_eq!(control.live(), 0);
    assert_eq!(pool.status().size, 0);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 2);
}

/// `before_checkout` rejecting closes that connection, and the `get` still succeeds
/// with another.
#[tokio::test]
async fn before_checkout_rejection_closes_it_and_serves_another() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (pool, control) = pool(|b| {
        let calls = calls.clone();
        b.max_size(2).before_checkout(move |conn, _info| {
            calls.fetch_add(1, Ordering::SeqCst);
            let id = conn.id();
            Box::pin(async move {
                if id == 1 {
                    Err(HookError::new("not this one"))
                } else {
                    Ok(())
                }
            })
        })
    });
    drop(pool.get().await.unwrap());
    assert_eq!(control.live(), 1);

    let conn = pool.get().await.expect("another connection is served");
    assert_eq!(conn.id(), 2);
    assert!(calls.load(Ordering::SeqCst) >= 1, "the hook ran");
    assert_eq!(control.live_ids(), [2], "the rejected one was closed");
    assert_eq!(pool.status().size, 1);
}

/// `after_return` rejecting closes the connection instead of keeping it.
#[tokio::test]
async fn after_return_rejection_closes_the_connection() {
    let (pool, control) = pool(|b| {
        b.max_size(1).after_return(|conn, _info| {
            if conn.is_dirty() {
                Err(HookError::new("left in a transaction"))
            } else {
                Ok(())
            }
        })
    });
    drop(pool.get().await.unwrap());
    assert_eq!(control.live(), 1, "a clean one is kept");

    let mut conn = pool.get().await.unwrap();
    conn.set_dirty();
    drop(conn);
    assert_eq!(control.live(), 0, "the rejected one was closed");
    assert_eq!(pool.status().size, 0);
    assert_eq!(pool.get().await.unwrap().id(), 2);
}

/// A connect that panics inside upkeep does not end upkeep: `min_idle` is still kept
/// afterwards.
#[tokio::test(start_paused = true)]
async fn upkeep_survives_a_panicking_connect() {
    let (pool, control) = pool(|b| b.max_size(3).min_idle(2));
    control.panic_next_connects(1);
    let upkeep = pool.spawn_upkeep();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        core_common::settle(10).await;
    }
    assert!(
        !upkeep.is_finished(),
        "upkeep ended with the connect's panic"
    );
    assert_eq!(control.live(), 2, "min_idle is kept after the panic");
    let status = pool.status();
    assert_eq!((status.size, status.connecting), (2, 0), "{status:?}");
    upkeep.abort();
}

/// Every connection killed at once under load, the clients noticing only when they
/// use them (as with a server's resets): only users of the killed connections get
/// errors, every `get` is served, users go on working on new connections, and no room
/// is lost. The mock's side of the conformance case
/// `reset_of_every_connection_under_load_fails_only_their_users`.
#[tokio::test(start_paused = true)]
async fn every_connection_killed_under_load_fails_only_their_users() {
    const MAX: usize = 4;
    const TASKS: usize = 8;
    let (pool, control) = pool(|b| b.max_size(MAX).wait_timeout(Duration::from_secs(10)));
    control.query_delay(Duration::from_millis(5));
    // Connections with an id up to this one were killed (none until the kill).
    let killed_up_to = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let ok_on_new = Arc::new(AtomicUsize::new(0));
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (pool, killed_up_to, stop) = (pool.clone(), killed_up_to.clone(), stop.clone());
        let (errors, ok_on_new) = (errors.clone(), ok_on_new.clone());
        users.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut conn = pool.get().await.expect("every get is served");
                let id = conn.id();
                match conn.query().await {
                    Ok(()) => {
                        let killed = killed_up_to.load(Ordering::SeqCst);
                        if killed > 0 && id > killed {
                            ok_on_new.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => errors.lock().unwrap().push(id),
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(errors.lock().unwrap().is_empty(), "errors before the kill");
    let killed = control.live_ids();
    assert_eq!(killed.len(), MAX, "the pool is full under this load");
    killed_up_to.store(*killed.iter().max().unwrap(), Ordering::SeqCst);
    assert_eq!(control.kill_all_unnoticed(), MAX);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(joined) = users.join_next().await {
        joined.expect("a user task");
    }

    let errors = errors.lock().unwrap().clone();
    assert!(!errors.is_empty(), "no user of a killed connection noticed");
    assert!(
        errors.iter().all(|id| killed.contains(id)),
        "users of new connections got errors: {errors:?} (killed: {killed:?})"
    );
    assert!(
        ok_on_new.load(Ordering::SeqCst) >= TASKS,
        "users did not go on"
    );
    assert_whole(&pool, &control).await;
    assert!(
        control.live_ids().iter().all(|id| !killed.contains(id)),
        "a killed connection is still open"
    );
}

/// A `keep` that panics in `retain` closes the connection it was given (in a state
/// nobody knows) and frees its room; the unvisited ones stay.
#[tokio::test(start_paused = true)]
async fn a_panicking_retain_closes_the_visited_connection_and_frees_its_room() {
    let (pool, control) = pool(|b| b.max_size(2));
    let conns = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(conns);
    let mut visited = 0;
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.retain(|_, _| {
            visited += 1;
            panic!("keep panics")
        })
    }));
    assert!(unwound.is_err());
    assert_eq!(visited, 1);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, control.live()),
        (1, 1, 1),
        "the visited one closed, its room freed: {status:?}"
    );
    let both = (pool.get().await.unwrap(), pool.try_get().await.unwrap());
    assert_eq!(pool.status().size, 2, "the room is usable again");
    assert_eq!(
        control.recycles(),
        0,
        "a closure's panic does not make the idle peers suspect"
    );
    drop(both);
}

/// A waiter whose connection fails its check waits again where it stood, not behind
/// those who came after it: after a restart, a caller unlucky enough to be handed a
/// dead connection is not sent to the back of the line.
#[tokio::test(start_paused = true)]
async fn a_waiter_whose_connection_fails_its_check_keeps_its_place() {
    let (pool, control) = pool(|b| b.max_size(1).check_interval(Duration::ZERO));
    let held = pool.get().await.unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        let (waiter, served) = (pool.clone(), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            let conn = waiter.get().await.unwrap();
            served.lock().unwrap().push(name);
            drop(conn);
        }));
        let waiting = tasks.len();
        core_common::yield_until("in line", 100, || pool.status().waiting == waiting).await;
    }
    control.fail_next_recycles(1);
    // To `a`, whose check fails: the room goes to `b`, who opens a connection, and `a`
    // waits again, ahead of `c`.
    drop(held);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*served.lock().unwrap(), ["b", "a", "c"]);
    assert_eq!(control.recycles_failed(), 1);
}

//! pool-core on the mock manager: a connection's life in the pool. Lifetimes with
//! jitter, idle reaping, `min_idle`, checks only when due, resets of dirty connections,
//! broken connections making their idle peers suspect, leak reports, and bursts of
//! callers beyond `max_connecting`.
//!
//! Time is tokio's paused clock (the pool's clock is tokio's), so lifetimes of minutes
//! pass without waiting.

mod core_common;

use std::time::Duration;

use core_common::{check_out, poll_once, pool, settle, yield_until, Capture};
use pool_core::Reuse;
use tokio::time::Instant;
use tracing::Level;

const MS: Duration = Duration::from_millis(1);

/// 100 connections opened at once get `max_lifetime` less a random jitter each, and
/// upkeep closes them as they expire, not all at the first expiry.
#[tokio::test(start_paused = true)]
async fn lifetimes_are_jittered_so_a_batch_does_not_expire_together() {
    let lifetime = Duration::from_secs(30 * 60);
    let (pool, control) = pool(|b| {
        b.max_size(100)
            .max_connecting(100)
            .max_lifetime(lifetime)
            .idle_timeout(None)
            .check_interval(None)
    });
    let created = Instant::now().into_std();
    let takers: Vec<_> = (0..100)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await })
        })
        .collect();
    let mut conns = Vec::new();
    for taker in takers {
        conns.push(taker.await.unwrap().unwrap());
    }
    assert_eq!(control.live(), 100);
    assert_eq!(
        Instant::now().into_std(),
        created,
        "all made at one instant"
    );

    let mut expiries: Vec<_> = conns
        .iter()
        .map(|c| c.info().expires_at().expect("max_lifetime is set"))
        .collect();
    expiries.sort();
    for at in &expiries {
        let left = at.duration_since(created);
        assert!(left <= lifetime, "expires after max_lifetime: {left:?}");
        assert!(left >= lifetime * 9 / 10, "jitter above a tenth: {left:?}");
    }
    let (first, last) = (expiries[0], expiries[99]);
    let mut distinct = expiries.clone();
    distinct.dedup();
    assert!(distinct.len() >= 90, "{} distinct expiries", distinct.len());
    assert!(
        last - first >= lifetime / 100,
        "expiries spread over only {:?}",
        last - first
    );

    drop(conns);
    assert_eq!(pool.status().idle, 100);
    let upkeep = pool.spawn_upkeep();

    // Half-way between the first and the last expiry some, not all, are closed.
    let mid = first + (last - first) / 2;
    tokio::time::sleep_until(mid.into()).await;
    settle(10).await;
    let live = control.live();
    let after_mid = expiries.iter().filter(|at| **at > mid).count();
    let after_pass = expiries.iter().filter(|at| **at > mid - MS * 1000).count();
    assert!(0 < live && live < 100, "{live} live half-way");
    assert!(
        (after_mid..=after_pass).contains(&live),
        "{live} live, expected those expiring after upkeep's last pass ({after_mid}..={after_pass})"
    );
    assert_eq!(pool.status().size, live);

    tokio::time::sleep_until((last + Duration::from_secs(1)).into()).await;
    settle(10).await;
    assert_eq!(control.live(), 0, "all closed once the last one expired");
    assert_eq!(pool.status().size, 0);
    upkeep.abort();
}

/// Upkeep closes connections idle longer than `idle_timeout`, keeping `min_idle`.
#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_idle_connections_beyond_min_idle() {
    let (pool, control) = pool(|b| {
        b.max_size(5)
            .min_idle(1)
            .idle_timeout(Duration::from_secs(10))
            .max_lifetime(None)
    });
    let conns = check_out(&pool, 5).await;
    drop(conns);
    let upkeep = pool.spawn_upkeep();
    settle(10).await;

    tokio::time::sleep(Duration::from_secs(9)).await;
    settle(10).await;
    assert_eq!(control.live(), 5, "none idle for 10 s yet");

    tokio::time::sleep(Duration::from_secs(2)).await;
    settle(10).await;
    assert_eq!(control.live(), 1, "idle ones beyond min_idle closed");
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status:?}");
    assert_eq!(control.connects_started(), 5, "min_idle kept, not reopened");
    upkeep.abort();
}

/// A connection returned while upkeep sleeps (returns do not wake it) is still closed
/// within a quarter of `idle_timeout` after it expires, not at upkeep's 1 s ceiling.
#[tokio::test(start_paused = true)]
async fn idle_timeout_is_enforced_within_a_quarter_of_itself() {
    let (pool, control) = pool(|b| b.max_size(2).idle_timeout(400 * MS).max_lifetime(None));
    let upkeep = pool.spawn_upkeep();
    settle(10).await; // upkeep ran once with nothing idle and went to sleep
    tokio::time::sleep(30 * MS).await;
    // Returned at t = 30 ms; upkeep, asleep until 100 ms, first sees it idle then, so
    // it may close at 500 ms (never before 430 ms).
    drop(pool.get().await.unwrap());
    tokio::time::sleep(390 * MS).await; // t = 420 ms
    settle(10).await;
    assert_eq!(control.live(), 1, "not idle for 400 ms yet");
    tokio::time::sleep(110 * MS).await; // t = 530 ms: past 430 ms + a quarter of 400 ms
    settle(10).await;
    assert_eq!(
        control.live(),
        0,
        "closed within idle_timeout / 4 of expiring"
    );
    upkeep.abort();
}

/// Upkeep counts idle time from the first pass that finds a connection idle; a checkout
/// and return starts the count again, so a connection idle for a while, reused, and
/// returned is not closed on the earlier spell's count.
#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_the_latest_return() {
    let (pool, control) = pool(|b| b.max_size(1).idle_timeout(400 * MS).max_lifetime(None));
    let upkeep = pool.spawn_upkeep();
    settle(10).await;
    drop(pool.get().await.unwrap()); // idle from t = 0; a pass sees it by t = 100 ms
    tokio::time::sleep(250 * MS).await;
    let held = pool.get().await.unwrap(); // t = 250 ms
    tokio::time::sleep(50 * MS).await;
    drop(held); // idle again from t = 300 ms: closes no earlier than 700 ms
    tokio::time::sleep(350 * MS).await; // t = 650 ms, past the first spell's 500 ms
    settle(10).await;
    assert_eq!(control.live(), 1, "closed on the first idle spell's count");
    tokio::time::sleep(160 * MS).await; // t = 810 ms: 700 ms + a quarter of 400 ms
    settle(10).await;
    assert_eq!(
        control.live(),
        0,
        "closed within idle_timeout / 4 of expiring"
    );
    upkeep.abort();
}

/// A connection given back to the idle list unused (here by `retain`, while another
/// is returned) rejoins behind a newer one; upkeep still closes it on its own count,
/// not after the newer one's.
#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_a_connection_behind_a_newer_one_on_time() {
    let (pool, control) = pool(|b| b.max_size(2).idle_timeout(400 * MS).max_lifetime(None));
    let upkeep = pool.spawn_upkeep();
    settle(10).await;
    let older = pool.get().await.unwrap();
    let mut newer = Some(pool.get().await.unwrap());
    drop(older); // idle from t = 0; the pass at 100 ms marks it: closes at 500 ms
    tokio::time::sleep(150 * MS).await;
    // While `retain` holds the older one, the newer one comes back: the list becomes
    // [newer, older].
    let closed = pool.retain(|_, _| {
        drop(newer.take());
        true
    });
    assert_eq!(closed, 0);
    assert_eq!(pool.status().idle, 2);
    tokio::time::sleep(400 * MS).await; // t = 550 ms; the newer one closes at 600 ms+
    settle(10).await;
    assert_eq!(
        control.live(),
        1,
        "the older one waited behind the newer one"
    );
    tokio::time::sleep(300 * MS).await; // t = 850 ms
    settle(10).await;
    assert_eq!(control.live(), 0);
    upkeep.abort();
}

/// Without upkeep, a connection past `max_lifetime` is closed when it is returned, and
/// an expired idle one is closed (and replaced) at checkout.
#[tokio::test(start_paused = true)]
async fn max_lifetime_closes_at_return_and_at_checkout() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .max_lifetime(Duration::from_secs(60))
            .idle_timeout(None)
    });
    let held = pool.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    drop(held);
    assert_eq!(control.live(), 0, "closed at return");
    assert_eq!(pool.status().size, 0);

    drop(pool.get().await.unwrap());
    assert_eq!(control.live(), 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 3, "the expired idle one was replaced");
    assert_eq!(control.live(), 1);
    assert_eq!(control.recycles(), 0, "closed without a check");
}

/// Upkeep closes an idle connection past `max_lifetime` with nobody calling `get`.
#[tokio::test(start_paused = true)]
async fn max_lifetime_closes_idle_connections_by_upkeep() {
    let (pool, control) = pool(|b| {
        b.max_size(2)
            .max_lifetime(Duration::from_secs(60))
            .idle_timeout(None)
    });
    drop(pool.get().await.unwrap());
    let upkeep = pool.spawn_upkeep();
    tokio::time::sleep(Duration::from_secs(50)).await;
    settle(10).await;
    assert_eq!(control.live(), 1, "not expired yet (jitter is at most 6 s)");
    tokio::time::sleep(Duration::from_secs(11)).await;
    settle(10).await;
    assert_eq!(control.live(), 0);
    assert_eq!(pool.status().size, 0);
    upkeep.abort();
}

/// Upkeep opens `min_idle` connections with no `get`, and refills them after they are
/// found broken.
#[tokio::test(start_paused = true)]
async fn min_idle_is_warmed_up_and_refilled() {
    let (pool, control) = pool(|b| b.max_size(5).min_idle(3));
    assert_eq!(control.live(), 0, "build opens nothing");
    let upkeep = pool.spawn_upkeep();
    yield_until("upkeep to open min_idle", 100, || control.live() == 3).await;
    let status = pool.status();
    assert_eq!((status.size, status.idle), (3, 3), "{status:?}");

    // Killed server-side before the client noticed: handed out, found broken on return.
    assert_eq!(control.kill_all_unnoticed(), 3);
    let mut conns = check_out(&pool, 3).await;
    for conn in &mut conns {
        assert!(conn.query().await.is_err(), "its user finds it dead");
    }
    drop(conns); // now the client knows: broken on return, closed
    yield_until("upkeep to refill min_idle", 100, || {
        control.live_ids() == [4, 5, 6]
    })
    .await;
    assert_eq!(pool.status().idle, 3);
    upkeep.abort();
}

/// With `check_interval` 1 s, quick reuse runs no check; after 1 s idle the next
/// checkout runs exactly one.
#[tokio::test(start_paused = true)]
async fn checks_run_only_when_due() {
    let (pool, control) = pool(|b| b.max_size(2).check_interval(Duration::from_secs(1)));
    for _ in 0..10 {
        let conn = pool.get().await.unwrap();
        assert_eq!(conn.id(), 1);
    }
    assert_eq!(control.recycles(), 0, "no check on quick reuse");

    tokio::time::advance(1001 * MS).await;
    drop(pool.get().await.unwrap());
    assert_eq!(control.recycles(), 1, "one check after 1 s idle");
    drop(pool.get().await.unwrap());
    assert_eq!(control.recycles(), 1, "just returned: not due again");
    assert_eq!(control.resets(), 0, "a due check is not a reset");
}

/// A connection handed to a waiter only after it sat idle (given up by another waiter)
/// is checked if its idle time made a check due, although it went idle in the same
/// tick the waiter joined the line.
#[tokio::test(start_paused = true)]
async fn a_connection_idle_since_the_join_is_checked_when_due() {
    let (pool, control) = pool(|b| b.max_size(1).check_interval(Duration::from_secs(1)));
    let held = pool.get().await.unwrap();
    let mut first = Box::pin(pool.get());
    let mut second = Box::pin(pool.get());
    assert!(poll_once(first.as_mut()).is_pending());
    assert!(poll_once(second.as_mut()).is_pending());
    drop(held);
    assert_eq!(pool.status().waiting, 1, "handed to the first waiter");

    tokio::time::advance(1001 * MS).await;
    drop(first);
    let conn = match poll_once(second.as_mut()) {
        std::task::Poll::Ready(conn) => conn.unwrap(),
        // Checking it: the mock's recycle is immediate.
        std::task::Poll::Pending => second.await.unwrap(),
    };
    assert_eq!(control.recycles(), 1, "idle 1 s: checked before use");
    drop(conn);
}

/// A connection returned dirty is reset (not replaced) before the next checkout, and
/// the next user sees it clean.
#[tokio::test(start_paused = true)]
async fn dirty_connection_is_reset_before_reuse() {
    let (pool, control) = pool(|b| b.max_size(1).check_interval(Duration::from_secs(60)));
    let mut conn = pool.get().await.unwrap();
    conn.set_dirty();
    drop(conn);
    assert_eq!(control.resets(), 0, "reset at checkout, not at return");

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 1, "reset, not replaced");
    assert!(!conn.is_dirty());
    assert_eq!((control.recycles(), control.resets()), (1, 1));
    drop(conn);
    drop(pool.get().await.unwrap());
    assert_eq!(control.recycles(), 1, "clean again: no further check");
}

/// With `check_interval(None)` idle connections are never checked, however long they
/// sat; dirty ones are still reset.
#[tokio::test(start_paused = true)]
async fn no_check_interval_means_no_idle_checks() {
    let (pool, control) = pool(|b| {
        b.max_size(1)
            .check_interval(None)
            .max_lifetime(None)
            .idle_timeout(None)
    });
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_secs(3600)).await;
    let mut conn = pool.get().await.unwrap();
    assert_eq!(control.recycles(), 0, "no check after an hour idle");

    conn.set_dirty();
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert!(!conn.is_dirty());
    assert_eq!((control.recycles(), control.resets()), (1, 1));
}

/// A connection dropped while its holder panics is reset before anyone reuses it.
#[tokio::test(start_paused = true)]
async fn connection_dropped_in_a_panic_is_reset_before_reuse() {
    let (pool, control) = pool(|b| b.max_size(1).check_interval(None));
    let holder = tokio::spawn({
        let pool = pool.clone();
        async move {
            let _conn = pool.get().await.unwrap();
            panic!("the holder panics while holding a connection");
        }
    });
    assert!(holder.await.unwrap_err().is_panic());
    let status = pool.status();
    assert_eq!((status.size, status.idle), (1, 1), "{status:?}");

    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id(), 1);
    assert_eq!(control.resets(), 1, "reset before reuse");
}

/// When one connection is found broken, the idle connections made before are checked
/// at their next checkout; users never get a dead one after the first.
#[tokio::test(start_paused = true)]
async fn a_broken_connection_makes_idle_peers_due_for_a_check() {
    let (pool, control) = pool(|b| b.max_size(4).check_interval(Duration::from_secs(3600)));
    let conns = check_out(&pool, 4).await;
    drop(conns);
    assert_eq!(pool.status().idle, 4);
    tokio::time::advance(MS).await;

    // The server restarts: every connection dies server-side, before the client
    // has read its sockets (so `has_broken` cannot see it yet).
    assert_eq!(control.kill_all_unnoticed(), 4);
    let mut first = pool.get().await.unwrap();
    assert_eq!(control.recycles(), 0, "not due: handed out unchecked");
    assert!(first.query().await.is_err(), "the user finds it dead");
    first.mark_broken();
    drop(first);

    let mut served = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.get().await.expect("every later get succeeds");
        assert!(!conn.is_killed(), "a dead connection was handed out");
        conn.query().await.unwrap();
        served.push(conn);
    }
    assert_eq!(control.recycles(), 3, "each idle peer was checked once");
    assert_eq!(control.recycles_failed(), 3);
    assert_eq!(control.live(), 3);
    assert!(served.iter().all(|c| c.id() > 4), "all replaced");
}

/// The same for the connection returned last, which waits for its next user outside
/// the idle list (in the pool's hand-back cell): a peer found broken after its return
/// makes it due for a check as well.
#[tokio::test(start_paused = true)]
async fn a_broken_connection_makes_the_latest_returned_due_for_a_check() {
    let (pool, control) = pool(|b| b.max_size(2).check_interval(Duration::from_secs(3600)));
    let parked = pool.get().await.unwrap();
    let mut other = pool.get().await.unwrap();
    let parked_id = parked.id();
    drop(parked);
    tokio::time::advance(MS).await;

    assert_eq!(control.kill_all_unnoticed(), 2);
    assert!(other.query().await.is_err(), "the user finds it dead");
    other.mark_broken();
    drop(other);

    let mut conn = pool.get().await.expect("the get succeeds");
    assert_eq!(control.recycles(), 1, "the returned one was checked");
    assert_eq!(control.recycles_failed(), 1);
    assert!(!conn.is_killed(), "a dead connection was handed out");
    assert_ne!(conn.id(), parked_id);
    conn.query().await.unwrap();
}

/// An idle connection the driver already knows is dead (its `has_broken` says so) is
/// never handed out, not even once, and no check is spent on finding out; its idle
/// peers become due for a check.
#[tokio::test(start_paused = true)]
async fn an_idle_connection_known_broken_is_never_handed_out() {
    let (pool, control) = pool(|b| b.max_size(3).check_interval(Duration::from_secs(3600)));
    let conns: Vec<_> = [(); 3].map(|()| pool.get()).into_iter().collect();
    let mut held = Vec::new();
    for get in conns {
        held.push(get.await.unwrap());
    }
    drop(held);
    tokio::time::advance(MS).await;
    assert!(
        control.kill(3),
        "the most recently returned one, reused first"
    );

    let mut conn = pool.get().await.expect("a get succeeds");
    assert!(!conn.is_killed(), "the dead connection was not handed out");
    conn.query().await.unwrap();
    assert_eq!(
        control.recycles(),
        1,
        "only the peer it fell back on was checked"
    );
    assert_eq!(control.live(), 2);
}

/// A connection held past `leak_threshold` is reported once at WARN with where it was
/// taken; held further, it is not reported again.
#[tokio::test(start_paused = true)]
async fn leak_is_reported_once_with_the_call_site() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let leaks = || {
        capture
            .events()
            .into_iter()
            .filter(|e| e.text.contains("leak_threshold"))
            .collect::<Vec<_>>()
    };
    let (pool, _control) = pool(|b| b.max_size(2).leak_threshold(100 * MS));
    let upkeep = pool.spawn_upkeep();

    let conn = pool.get().await.unwrap();
    let taken_line = line!() - 1;
    tokio::time::sleep(50 * MS).await;
    settle(10).await;
    assert!(leaks().is_empty(), "reported before the threshold");

    tokio::time::sleep(100 * MS).await;
    settle(10).await;
    let reported = leaks();
    assert_eq!(reported.len(), 1, "{reported:#?}");
    let event = &reported[0];
    assert_eq!(event.level, Level::WARN);
    let site = format!("core_lifecycle.rs:{taken_line}");
    assert!(
        event.text.contains(&site),
        "no call site {site}: {}",
        event.text
    );

    tokio::time::sleep(Duration::from_secs(10)).await;
    settle(10).await;
    assert_eq!(leaks().len(), 1, "reported again: {:#?}", leaks());

    // A connection returned in time is not reported.
    drop(conn);
    drop(pool.get().await.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle(10).await;
    assert_eq!(leaks().len(), 1);
    upkeep.abort();
}

/// A burst of callers larger than `max_connecting` opens every connection it needs,
/// `max_connecting` at a time, without any connection being returned.
#[tokio::test(start_paused = true)]
async fn burst_beyond_max_connecting_is_served_without_returns() {
    let (pool, control) = pool(|b| {
        b.max_size(10)
            .max_connecting(2)
            .wait_timeout(Duration::from_secs(5))
    });
    control.connect_delay(10 * MS);
    let started = Instant::now();
    let takers: Vec<_> = (0..10)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await })
        })
        .collect();
    let mut conns = Vec::new();
    for taker in takers {
        conns.push(taker.await.unwrap().expect("each caller gets a connection"));
    }
    let elapsed = started.elapsed();
    assert_eq!(control.live(), 10);
    assert!(
        elapsed < Duration::from_secs(1),
        "took {elapsed:?}: callers waited for a return or their timeout"
    );
    assert!(control.peak_live() <= 10);
}

/// Idle connections are reused most recently returned first by default, and longest
/// idle first with `Reuse::Fifo`.
#[tokio::test(start_paused = true)]
async fn idle_reuse_order_is_mru_by_default_and_fifo_on_request() {
    for (reuse, expected) in [
        (None, 3),
        (Some(Reuse::MostRecent), 3),
        (Some(Reuse::Fifo), 1),
    ] {
        let (pool, _control) = pool(|b| match reuse {
            Some(reuse) => b.max_size(3).reuse(reuse),
            None => b.max_size(3),
        });
        let (a, b, c) = (
            pool.get().await.unwrap(),
            pool.get().await.unwrap(),
            pool.get().await.unwrap(),
        );
        drop(a);
        drop(b);
        drop(c);
        assert_eq!(pool.get().await.unwrap().id(), expected, "{reuse:?}");
    }
}

/// With most-recent-first reuse, a pool grown by a burst shrinks back through
/// `idle_timeout` under a light steady load: the one connection in use stays warm.
#[tokio::test(start_paused = true)]
async fn mru_reuse_lets_an_oversized_pool_shrink() {
    let (pool, control) = pool(|b| {
        b.max_size(5)
            .idle_timeout(Duration::from_secs(10))
            .max_lifetime(None)
            .check_interval(None)
    });
    let burst = check_out(&pool, 5).await;
    drop(burst);
    let upkeep = pool.spawn_upkeep();
    for _ in 0..30 {
        drop(pool.get().await.unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle(5).await;
    }
    assert_eq!(
        control.live(),
        1,
        "only the connection in steady use is left"
    );
    assert_eq!(control.connects_started(), 5);
    upkeep.abort();
}

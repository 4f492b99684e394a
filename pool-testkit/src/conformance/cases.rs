//! The cases, generic over the [`Backend`]. Each builds its own pool, states in its doc
//! what it proves, and returns `Err(reason)` on a failure.
//!
//! Cases that count server-side connections first wait until the server shows none
//! left from earlier cases. Time-based cases use short real durations and poll for the
//! outcome with a bounded deadline ([`SETTLE`]): against a real server time must pass.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::{Builder, Manager, Pool, PoolError, Pooled, TimeoutKind};

use super::Backend;

/// What a case returns: `Err` holds the reason it failed.
pub(crate) type Outcome = Result<(), String>;

type CaseFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A named case, ready to run against a backend.
pub(crate) struct Case<B> {
    /// The case's name, as the matrix shows it.
    pub(crate) name: &'static str,
    /// Starts the case.
    pub(crate) run: fn(Arc<B>) -> CaseFuture,
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$(Case::<B> {
            name: stringify!($name),
            run: |backend| Box::pin($name(backend)),
        }),*]
    };
}

/// Every case, in the order they run.
pub(crate) fn all<B: Backend>() -> Vec<Case<B>> {
    cases![
        reuses_the_same_server_connection,
        max_size_honoured_server_side_under_concurrency,
        wait_timeout_fires_with_pool_counts,
        dirty_session_is_reset_before_reuse,
        killed_while_idle_is_never_handed_out,
        killed_while_in_use_fails_only_that_user,
        max_lifetime_rotates_connections,
        idle_timeout_rotates_connections,
        min_idle_opens_connections_up_front,
        close_leaves_no_server_connection,
        wrong_credentials_fail_fast_with_the_server_error,
        server_restart_is_recovered_by_itself,
        blackhole_during_connect_fails_with_the_connect_timeout,
        blackhole_while_idle_times_out_due_checks_and_replaces_them,
        reset_of_every_connection_under_load_fails_only_their_users,
        latency_of_50ms_completes_every_operation_without_a_timeout,
        refused_connects_back_off_and_recover_by_themselves,
    ]
}

/// How long a case polls for something that must happen by itself.
const SETTLE: Duration = Duration::from_secs(10);

/// Fails the case with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return Err(format!($($reason)+));
        }
    };
}

// After `ensure!`, which the fault cases use too.
mod faults;

use faults::{
    blackhole_during_connect_fails_with_the_connect_timeout,
    blackhole_while_idle_times_out_due_checks_and_replaces_them,
    latency_of_50ms_completes_every_operation_without_a_timeout,
    refused_connects_back_off_and_recover_by_themselves,
    reset_of_every_connection_under_load_fails_only_their_users,
};

fn build<M: Manager>(builder: Builder<M>) -> Result<Pool<M>, String> {
    builder
        .build()
        .map_err(|e| format!("building the pool: {e}"))
}

async fn get<M: Manager>(pool: &Pool<M>) -> Result<Pooled<M>, String> {
    pool.get().await.map_err(|e| format!("get: {e}"))
}

/// Prefixes an error with what was being done.
fn doing(what: &'static str) -> impl Fn(String) -> String {
    move |e| format!("{what}: {e}")
}

/// Checks out a connection, makes a round trip on it and returns its server-side id.
async fn checkout_id<B: Backend>(backend: &B, pool: &Pool<B::Manager>) -> Result<u64, String> {
    let mut conn = get(pool).await?;
    backend
        .round_trip(&mut conn)
        .await
        .map_err(doing("round trip"))?;
    backend
        .server_id(&mut conn)
        .await
        .map_err(doing("server id"))
}

/// Polls `check` (which answers whether the condition holds and what it saw) every
/// 20 ms until it holds, failing after [`SETTLE`] with the last observation.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(bool, String), String>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        let seen = match check().await {
            Ok((true, _)) => return Ok(()),
            Ok((false, seen)) => seen,
            Err(e) => format!("error: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(format!("waited {SETTLE:?} for {what}; last seen: {seen}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server shows no connection left over from earlier cases.
async fn settle<B: Backend>(backend: &B) -> Outcome {
    eventually(
        "no server connections left from earlier cases",
        || async move {
            let n = backend.server_connections().await?;
            Ok((n == 0, format!("{n} server connections")))
        },
    )
    .await
}

/// Aborts a spawned upkeep task when the case ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Proves the pool pools: connections returned are handed out again, the same
/// server-side session each time, with no connect per `get`.
async fn reuses_the_same_server_connection<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    settle(b).await?;
    let pool = build(Pool::builder(b.manager().await).max_size(4))?;
    let first = checkout_id(b, &pool).await?;
    for round in 1..=3 {
        let id = checkout_id(b, &pool).await?;
        ensure!(
            id == first,
            "checkout {round} got server connection {id}, not {first} again"
        );
    }
    let status = pool.status();
    ensure!(
        status.size == 1,
        "the pool opened more than one connection for one user at a time: {status}"
    );
    let on_server = b.server_connections().await?;
    ensure!(
        on_server == 1,
        "the server sees {on_server} connections, expected 1"
    );
    Ok(())
}

/// Proves `max_size` bounds the connections the server sees while many tasks contend
/// for few connections, and that contention is served (every task gets its turns).
async fn max_size_honoured_server_side_under_concurrency<B: Backend>(backend: Arc<B>) -> Outcome {
    const MAX: usize = 3;
    const TASKS: usize = 12;
    const ROUNDS: usize = 5;
    settle(&*backend).await?;
    let pool = build(
        Pool::builder(backend.manager().await)
            .max_size(MAX)
            .wait_timeout(Duration::from_secs(30)),
    )?;
    let peak_server = Arc::new(AtomicUsize::new(0));
    let peak_pool = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (pool, b) = (pool.clone(), Arc::clone(&backend));
        let (peak_server, peak_pool) = (Arc::clone(&peak_server), Arc::clone(&peak_pool));
        tasks.spawn(async move {
            for _ in 0..ROUNDS {
                let mut conn = get(&pool).await?;
                b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
                peak_pool.fetch_max(pool.status().size, Ordering::SeqCst);
                let on_server = b.server_connections().await?;
                peak_server.fetch_max(on_server, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| format!("user task: {e}"))??;
    }
    let (peak_server, peak_pool) = (
        peak_server.load(Ordering::SeqCst),
        peak_pool.load(Ordering::SeqCst),
    );
    ensure!(
        peak_server <= MAX,
        "the server saw {peak_server} connections at once with max_size {MAX}"
    );
    ensure!(
        peak_pool <= MAX,
        "the pool reported size {peak_pool} with max_size {MAX}"
    );
    ensure!(
        peak_server >= 2,
        "{TASKS} concurrent users never had more than one connection: nothing was tested"
    );
    let on_server = backend.server_connections().await?;
    ensure!(
        on_server <= MAX,
        "{on_server} server connections after the run, max_size {MAX}"
    );
    Ok(())
}

/// Proves a `get` that cannot be served fails after `wait_timeout` (not sooner, not
/// much later) as a wait timeout whose error carries the pool's counts, and that the
/// timed-out waiter leaves no trace: the next `get` is served once a connection is back.
async fn wait_timeout_fires_with_pool_counts<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    let wait = Duration::from_millis(200);
    let pool = build(
        Pool::builder(b.manager().await)
            .max_size(1)
            .wait_timeout(wait),
    )?;
    let mut held = get(&pool).await?;
    b.round_trip(&mut held).await.map_err(doing("round trip"))?;

    let started = Instant::now();
    let result = pool.get().await;
    let elapsed = started.elapsed();
    let err = match result {
        Ok(_) => return Err("a second get succeeded while the only connection was held".into()),
        Err(err) => err,
    };
    let PoolError::Timeout(TimeoutKind::Wait, ctx) = &err else {
        return Err(format!("expected a wait timeout, got: {err}"));
    };
    ensure!(
        elapsed + Duration::from_millis(5) >= wait,
        "the wait timed out after {elapsed:?}, before wait_timeout {wait:?}"
    );
    ensure!(
        elapsed < wait + Duration::from_secs(5),
        "the wait timed out only after {elapsed:?} (wait_timeout {wait:?})"
    );
    ensure!(
        ctx.after == wait,
        "the error says it waited {:?}, not {wait:?}",
        ctx.after
    );
    let s = ctx.status;
    ensure!(
        s.max_size == 1 && s.size == 1 && s.in_use == 1 && s.idle == 0,
        "the error's counts do not match the pool (1 of 1 in use): {s}"
    );
    let message = err.to_string();
    ensure!(
        message.contains(&s.to_string()),
        "the error's message does not show the pool's counts ({s}): {message}"
    );

    drop(held);
    let mut conn = get(&pool).await.map_err(doing("after the timeout"))?;
    b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
    let status = pool.status();
    ensure!(
        status.waiting == 0 && status.size == 1,
        "the timed-out waiter left a trace: {status}"
    );
    Ok(())
}

/// Proves a connection returned with session state left behind is reset before it is
/// handed out again: the next user gets the same server connection, clean.
async fn dirty_session_is_reset_before_reuse<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    let pool = build(Pool::builder(b.manager().await).max_size(1))?;
    let first = {
        let mut conn = get(&pool).await?;
        b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
        b.dirty_session(&mut conn)
            .await
            .map_err(doing("dirtying the session"))?;
        let clean = b.is_clean(&mut conn).await.map_err(doing("is_clean"))?;
        ensure!(
            !clean,
            "dirty_session left the session clean: the case would prove nothing"
        );
        b.server_id(&mut conn).await.map_err(doing("server id"))?
    };
    let mut conn = get(&pool).await?;
    let clean = b.is_clean(&mut conn).await.map_err(doing("is_clean"))?;
    ensure!(clean, "the next user got the session dirty");
    b.round_trip(&mut conn)
        .await
        .map_err(doing("round trip after reset"))?;
    let id = b.server_id(&mut conn).await.map_err(doing("server id"))?;
    ensure!(
        id == first,
        "the dirty connection {first} was replaced by {id}, not reset"
    );
    Ok(())
}

/// Proves idle connections killed server-side are never handed out: once they have
/// been idle past `check_interval` the pool checks them at checkout, drops the dead
/// ones and serves every user a live connection.
async fn killed_while_idle_is_never_handed_out<B: Backend>(backend: Arc<B>) -> Outcome {
    const SIZE: usize = 3;
    let b = &*backend;
    let check_interval = Duration::from_millis(50);
    let pool = build(
        Pool::builder(b.manager().await)
            .max_size(SIZE)
            .check_interval(check_interval),
    )?;
    let mut killed = Vec::new();
    {
        let mut held = Vec::new();
        for _ in 0..SIZE {
            let mut conn = get(&pool).await?;
            b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
            killed.push(b.server_id(&mut conn).await.map_err(doing("server id"))?);
            held.push(conn);
        }
    }
    let status = pool.status();
    ensure!(
        status.idle == SIZE,
        "expected {SIZE} idle connections: {status}"
    );
    for &id in &killed {
        b.kill(id).await.map_err(doing("killing a connection"))?;
    }
    tokio::time::sleep(check_interval * 3).await;

    let mut held = Vec::new();
    for i in 1..=SIZE {
        let mut conn = get(&pool)
            .await
            .map_err(|e| format!("checkout {i} after the kills: {e}"))?;
        b.round_trip(&mut conn)
            .await
            .map_err(|e| format!("checkout {i} was handed a dead connection: {e}"))?;
        let id = b.server_id(&mut conn).await.map_err(doing("server id"))?;
        ensure!(
            !killed.contains(&id),
            "checkout {i} was handed killed server connection {id}"
        );
        held.push(conn);
    }
    let status = pool.status();
    ensure!(
        status.size <= SIZE,
        "more than max_size connections: {status}"
    );
    Ok(())
}

/// Proves a connection killed while checked out fails only its holder: another user's
/// connection keeps working, the dead one is discarded on return, and later users get
/// live connections.
async fn killed_while_in_use_fails_only_that_user<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    let pool = build(Pool::builder(b.manager().await).max_size(2))?;
    let mut victim = get(&pool).await?;
    let mut other = get(&pool).await?;
    b.round_trip(&mut victim)
        .await
        .map_err(doing("round trip"))?;
    b.round_trip(&mut other)
        .await
        .map_err(doing("round trip"))?;
    let victim_id = b.server_id(&mut victim).await.map_err(doing("server id"))?;
    let other_id = b.server_id(&mut other).await.map_err(doing("server id"))?;
    ensure!(
        victim_id != other_id,
        "two checkouts share server connection {victim_id}"
    );

    b.kill(victim_id)
        .await
        .map_err(doing("killing a connection"))?;
    ensure!(
        b.round_trip(&mut victim).await.is_err(),
        "a round trip on a connection killed server-side succeeded: the case would prove nothing"
    );
    b.round_trip(&mut other)
        .await
        .map_err(|e| format!("the other user's connection failed too: {e}"))?;
    drop(victim);
    drop(other);

    let mut held = Vec::new();
    for i in 1..=2 {
        let mut conn = get(&pool)
            .await
            .map_err(|e| format!("checkout {i} after the kill: {e}"))?;
        b.round_trip(&mut conn)
            .await
            .map_err(|e| format!("checkout {i} was handed a dead connection: {e}"))?;
        let id = b.server_id(&mut conn).await.map_err(doing("server id"))?;
        ensure!(
            id != victim_id,
            "checkout {i} was handed the killed connection {victim_id}"
        );
        held.push(conn);
    }
    let status = pool.status();
    ensure!(status.size <= 2, "more than max_size connections: {status}");
    Ok(())
}

/// Proves `max_lifetime` retires a connection (not before its lifetime less the
/// jitter) and that the retired one is closed on the server, not leaked.
async fn max_lifetime_rotates_connections<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    let lifetime = Duration::from_millis(300);
    settle(b).await?;
    let started = Instant::now();
    let pool = build(
        Pool::builder(b.manager().await)
            .max_size(1)
            .max_lifetime(lifetime),
    )?;
    let _upkeep = AbortOnDrop(pool.spawn_upkeep());
    let first = checkout_id(b, &pool).await?;
    let pool = &pool;
    eventually(
        "a connection other than the first to be handed out",
        || async move {
            let id = checkout_id(b, pool).await?;
            Ok((id != first, format!("server connection {id}")))
        },
    )
    .await?;
    let elapsed = started.elapsed();
    // The jitter takes up to a tenth off the lifetime.
    ensure!(
        elapsed >= lifetime - lifetime / 10,
        "the connection was replaced after {elapsed:?}, before its lifetime {lifetime:?}"
    );
    eventually(
        "the retired connection to close on the server",
        || async move {
            let n = b.server_connections().await?;
            Ok((
                n <= 1,
                format!("{n} server connections, pool {}", pool.status()),
            ))
        },
    )
    .await
}

/// Proves `idle_timeout` closes a connection left unused (in the pool and on the
/// server) and that the next user gets a fresh one.
async fn idle_timeout_rotates_connections<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    let idle_timeout = Duration::from_millis(300);
    settle(b).await?;
    let pool = build(
        Pool::builder(b.manager().await)
            .max_size(2)
            .idle_timeout(idle_timeout),
    )?;
    let _upkeep = AbortOnDrop(pool.spawn_upkeep());
    let first = checkout_id(b, &pool).await?;
    let returned = Instant::now();
    let pool = &pool;
    eventually(
        "the idle connection to close in the pool and on the server",
        || async move {
            let status = pool.status();
            let n = b.server_connections().await?;
            Ok((
                status.size == 0 && n == 0,
                format!("pool {status}, {n} server connections"),
            ))
        },
    )
    .await?;
    let elapsed = returned.elapsed();
    ensure!(
        elapsed >= idle_timeout,
        "the connection was closed after {elapsed:?} idle, before idle_timeout {idle_timeout:?}"
    );
    let id = checkout_id(b, pool).await?;
    ensure!(
        id != first,
        "the reaped connection {first} was handed out again"
    );
    Ok(())
}

/// Proves `min_idle` connections are opened by upkeep before anyone asks, and no more
/// than that.
async fn min_idle_opens_connections_up_front<B: Backend>(backend: Arc<B>) -> Outcome {
    const MIN_IDLE: usize = 2;
    let b = &*backend;
    settle(b).await?;
    let pool = build(
        Pool::builder(b.manager().await)
            .max_size(4)
            .min_idle(MIN_IDLE),
    )?;
    let _upkeep = AbortOnDrop(pool.spawn_upkeep());
    let pool = &pool;
    eventually(
        "min_idle connections to open before any get",
        || async move {
            let status = pool.status();
            let n = b.server_connections().await?;
            Ok((
                status.idle == MIN_IDLE && n == MIN_IDLE,
                format!("pool {status}, {n} server connections"),
            ))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = pool.status();
    let n = b.server_connections().await?;
    ensure!(
        status.size == MIN_IDLE && n == MIN_IDLE,
        "upkeep opened more than min_idle {MIN_IDLE}: pool {status}, {n} server connections"
    );
    let mut conn = get(pool).await?;
    b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
    Ok(())
}

/// Proves `close` stops new checkouts with `Closed`, closes idle connections at once,
/// waits for the one in use, and leaves nothing open on the server.
async fn close_leaves_no_server_connection<B: Backend>(backend: Arc<B>) -> Outcome {
    const SIZE: usize = 3;
    let b = &*backend;
    settle(b).await?;
    let pool = build(Pool::builder(b.manager().await).max_size(SIZE))?;
    let mut held = Vec::new();
    for _ in 0..SIZE {
        let mut conn = get(&pool).await?;
        b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
        held.push(conn);
    }
    let in_use = held.pop();
    drop(held);
    let status = pool.status();
    ensure!(
        status.idle == SIZE - 1 && status.in_use == 1,
        "expected {} idle and 1 in use: {status}",
        SIZE - 1
    );

    let mut closer = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.close(Duration::from_secs(20)).await })
    };
    let pool = &pool;
    eventually("the pool to say it is closed", || async move {
        Ok((pool.is_closed(), format!("pool {}", pool.status())))
    })
    .await?;
    match pool.get().await {
        Err(PoolError::Closed) => {}
        Ok(_) => return Err("get succeeded on a closed pool".into()),
        Err(other) => {
            return Err(format!(
                "get on a closed pool: expected Closed, got: {other}"
            ))
        }
    }
    eventually(
        "idle connections to close on the server at once",
        || async move {
            let n = b.server_connections().await?;
            Ok((
                n == 1,
                format!("{n} server connections, pool {}", pool.status()),
            ))
        },
    )
    .await?;
    ensure!(
        !closer.is_finished(),
        "close returned while a connection was still in use"
    );

    drop(in_use);
    match tokio::time::timeout(Duration::from_secs(5), &mut closer).await {
        Err(_) => {
            closer.abort();
            return Err("close did not return after the last connection came back".into());
        }
        Ok(Err(join)) => return Err(format!("close panicked or was cancelled: {join}")),
        Ok(Ok(Err(e))) => return Err(format!("close: {e}")),
        Ok(Ok(Ok(()))) => {}
    }
    eventually(
        "no connection left in the pool or on the server",
        || async move {
            let status = pool.status();
            let n = b.server_connections().await?;
            Ok((
                status.size == 0 && n == 0,
                format!("pool {status}, {n} server connections"),
            ))
        },
    )
    .await
}

/// Proves a connect refused for wrong credentials fails the caller at once (not after
/// the 30 s `wait_timeout`) with the backend's own error, whose message shows the
/// server's words; and that a second caller also fails fast, naming the cause.
async fn wrong_credentials_fail_fast_with_the_server_error<B: Backend>(backend: Arc<B>) -> Outcome {
    let b = &*backend;
    let fast = Duration::from_secs(5);
    let expected = b.wrong_credentials_message();
    let pool = build(
        Pool::builder(b.manager_with_wrong_credentials().await)
            .max_size(2)
            .wait_timeout(Duration::from_secs(30)),
    )?;
    for attempt in 1..=2 {
        let started = Instant::now();
        let err = match pool.get().await {
            Ok(_) => {
                return Err(format!(
                    "attempt {attempt} connected with wrong credentials"
                ))
            }
            Err(err) => err,
        };
        let elapsed = started.elapsed();
        ensure!(
            elapsed < fast,
            "attempt {attempt} took {elapsed:?} to fail (wait_timeout 30s): {err}"
        );
        if attempt == 1 {
            ensure!(
                matches!(err, PoolError::Backend(_)),
                "expected the backend's own error, got: {err}"
            );
        }
        let message = err.to_string();
        ensure!(
            message.contains(expected.as_str()),
            "attempt {attempt}'s error does not show the server's words {expected:?}: {message}"
        );
    }
    Ok(())
}

/// What one caller saw while the server was down: how long it took, and how it ended.
type DownOutcome = (Duration, Result<(), String>);

/// Proves a server restart needs no help from anyone: while the server is down every
/// caller finishes, with an error or a connection whose round trip fails, within its
/// bounds (`wait_timeout` + `connect_timeout` + 1 s: no waiter hangs past its timeout);
/// once the server is back the pool connects again by itself within its back-off
/// (`connect_backoff_max` + 2 s of the start); and then every connection it hands out
/// is live, so each dead one was replaced and none handed out. Runs on the backend's
/// restartable server, never the shared one.
async fn server_restart_is_recovered_by_itself<B: Backend>(backend: Arc<B>) -> Outcome {
    const SIZE: usize = 3;
    const CALLERS: usize = 5;
    let wait = Duration::from_secs(2);
    let connect = Duration::from_secs(1);
    let backoff_max = Duration::from_millis(500);
    let down_bound = wait + connect + Duration::from_secs(1);
    let recovery_bound = backoff_max + Duration::from_secs(2);
    let b = &*backend;
    let manager = b
        .restartable_manager()
        .await
        .map_err(doing("the restartable server"))?;
    let pool = build(
        Pool::builder(manager)
            .max_size(SIZE)
            .wait_timeout(wait)
            .connect_timeout(connect)
            .connect_backoff(Duration::from_millis(50))
            .connect_backoff_max(backoff_max),
    )?;
    {
        let mut held = Vec::new();
        for _ in 0..SIZE {
            let mut conn = get(&pool).await?;
            b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
            held.push(conn);
        }
    }

    b.stop_restartable()
        .await
        .map_err(doing("stopping the server"))?;
    let down = callers_while_down(&backend, &pool, CALLERS, down_bound).await;
    // Start the server again whatever the callers saw, so it is left running.
    let start = b.start_restartable().await;
    let restarted = Instant::now();
    start.map_err(doing("starting the server again"))?;
    let down = down?;
    let slowest = down.iter().map(|(took, _)| *took).max().unwrap_or_default();
    let seen = describe_down(&down);
    for (i, (took, outcome)) in down.iter().enumerate() {
        ensure!(
            *took <= down_bound,
            "caller {i} took {took:?} while the server was down, past its bound \
             {down_bound:?} (wait {wait:?} + connect {connect:?} + 1s); callers: {seen}"
        );
        ensure!(
            outcome.is_err(),
            "caller {i} made a round trip while the server was stopped: stopping it did \
             not, and the case would prove nothing; callers: {seen}"
        );
    }

    // Back up: poll until a get and a round trip succeed, then measure.
    let mut last = String::from("(no attempt)");
    let recovered = loop {
        let outcome = match pool.get().await {
            Ok(mut conn) => b
                .round_trip(&mut conn)
                .await
                .map_err(|e| format!("round trip: {e}")),
            Err(e) => Err(format!("get: {e}")),
        };
        match outcome {
            Ok(()) => break restarted.elapsed(),
            Err(e) => last = e,
        }
        if restarted.elapsed() >= SETTLE {
            return Err(format!(
                "the pool had not recovered {:?} after the server started (bound \
                 {recovery_bound:?}); last error: {last}; pool {}; while down: {seen}",
                restarted.elapsed(),
                pool.status()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "{}: server_restart_is_recovered_by_itself: recovered {recovered:?} after the \
         server started (bound {recovery_bound:?}); slowest caller while down \
         {slowest:?} (bound {down_bound:?})",
        b.name()
    );
    ensure!(
        recovered <= recovery_bound,
        "the pool recovered only {recovered:?} after the server started, past \
         connect_backoff_max {backoff_max:?} + 2s; last error before: {last}"
    );

    // Every connection handed out now is live: three at once, three server sessions.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SIZE {
        let (pool, backend) = (pool.clone(), Arc::clone(&backend));
        tasks.spawn(async move {
            let mut conn = get(&pool).await?;
            backend
                .round_trip(&mut conn)
                .await
                .map_err(|e| format!("handed a dead connection: {e}"))?;
            let id = backend
                .server_id(&mut conn)
                .await
                .map_err(doing("server id"))?;
            Ok::<_, String>((id, conn))
        });
    }
    let mut held = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, conn) = joined
            .map_err(|e| format!("user task after recovery: {e}"))?
            .map_err(|e| {
                format!("a get after recovery (recovered {recovered:?} after the start): {e}")
            })?;
        ensure!(
            !held.iter().any(|(other, _)| *other == id),
            "two users after recovery share server connection {id}"
        );
        held.push((id, conn));
    }
    let status = pool.status();
    ensure!(
        status.size <= SIZE,
        "more than max_size connections after recovery: {status}"
    );
    Ok(())
}

/// Runs `callers` concurrent callers, each a `get` and a round trip, and returns what
/// each saw and how long it took. A caller still running well past `bound` is given up
/// on and counted as having taken that long.
async fn callers_while_down<B: Backend>(
    backend: &Arc<B>,
    pool: &Pool<B::Manager>,
    callers: usize,
    bound: Duration,
) -> Result<Vec<DownOutcome>, String> {
    let give_up = bound + Duration::from_secs(5);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (pool, backend) = (pool.clone(), Arc::clone(backend));
        tasks.spawn(async move {
            let started = Instant::now();
            let attempt = async {
                match pool.get().await {
                    Ok(mut conn) => backend
                        .round_trip(&mut conn)
                        .await
                        .map_err(|e| format!("round trip: {e}")),
                    Err(e) => Err(format!("get: {e}")),
                }
            };
            let outcome = tokio::time::timeout(give_up, attempt)
                .await
                .unwrap_or_else(|_| Err("still running: given up on".to_owned()));
            (started.elapsed(), outcome)
        });
    }
    let mut seen = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        seen.push(joined.map_err(|e| format!("a caller while down: {e}"))?);
    }
    Ok(seen)
}

/// The callers' times and outcomes, for failure messages.
fn describe_down(down: &[DownOutcome]) -> String {
    down.iter()
        .map(|(took, outcome)| match outcome {
            Ok(()) => format!("[{took:?}: ok]"),
            Err(e) => format!("[{took:?}: {e}]"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

//! The network fault cases: each puts a [`FaultProxy`] in front of the backend's server
//! ([`Backend::server_address`]), builds its own pool on a manager that connects
//! through it ([`Backend::manager_at`]), and injects one fault.
//!
//! Bounds are generous ([`MARGIN`] past the timeout that must fire, the back-off
//! computed with its full jitter): the machine running them may be loaded, and what
//! the cases prove is which timeout fires and whether the pool recovers, not how fast.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pool_core::{Builder, Pool, PoolError, TimeoutKind};

use super::{build, doing, eventually, get, settle, AbortOnDrop, Outcome};
use crate::conformance::Backend;
use crate::proxy::FaultProxy;

/// How much later than its bound a timeout may fire on a loaded machine before the case
/// calls it late.
const MARGIN: Duration = Duration::from_secs(3);

/// How much earlier than its bound a timeout may be seen to fire (the pool's timer and
/// the case's clock are read at slightly different moments).
const EARLY: Duration = Duration::from_millis(5);

/// A fault proxy in front of the backend's server, and a pool builder on a manager
/// that connects through it.
async fn proxied<B: Backend>(backend: &B) -> Result<(FaultProxy, Builder<B::Manager>), String> {
    let upstream = backend
        .server_address()
        .map_err(doing("the server's TCP address"))?;
    let proxy = FaultProxy::start(upstream)
        .await
        .map_err(|e| format!("starting a fault proxy in front of {upstream}: {e}"))?;
    let manager = backend
        .manager_at(proxy.address())
        .await
        .map_err(doing("a manager connecting through the fault proxy"))?;
    Ok((proxy, Pool::builder(manager)))
}

/// Proves a connect that gets no answer (the server's address accepts the connection
/// and then says nothing) fails its caller with the connect timeout, naming where it
/// was going, at `connect_timeout`: not later, and not at the much longer
/// `wait_timeout`. A caller queued behind those connects (the pool is full of them)
/// fails as soon as they have, with the pool's "unavailable" carrying their timeout,
/// not after its own wait. The connects give their room back, and once the network
/// heals the pool connects again.
pub(super) async fn blackhole_during_connect_fails_with_the_connect_timeout<B: Backend>(
    backend: Arc<B>,
) -> Outcome {
    const MAX: usize = 2;
    const CALLERS: usize = MAX + 1;
    let b = &*backend;
    let connect = Duration::from_secs(1);
    let wait = Duration::from_secs(30);
    let (proxy, builder) = proxied(b).await?;
    let pool = build(
        builder
            .max_size(MAX)
            .max_connecting(MAX)
            .wait_timeout(wait)
            .connect_timeout(connect)
            .connect_backoff(Duration::from_millis(100))
            .connect_backoff_max(Duration::from_millis(500)),
    )?;
    proxy.blackhole();

    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let pool = pool.clone();
        callers.spawn(async move {
            let started = Instant::now();
            let result = pool.get().await.map(drop);
            (started.elapsed(), result)
        });
    }
    let port = proxy.address().port().to_string();
    let mut connect_timeouts = Vec::new();
    while let Some(joined) = callers.join_next().await {
        let (elapsed, result) = joined.map_err(|e| format!("a caller: {e}"))?;
        let err = match result {
            Ok(()) => return Err("a get was served through a blackhole".into()),
            Err(err) => err,
        };
        ensure!(
            elapsed <= connect + MARGIN,
            "a caller failed only after {elapsed:?} (connect_timeout {connect:?}, \
             wait_timeout {wait:?}): {err}"
        );
        match &err {
            PoolError::Timeout(TimeoutKind::Connect, ctx) => {
                ensure!(
                    elapsed + EARLY >= connect,
                    "a connect timed out after {elapsed:?}, before connect_timeout {connect:?}"
                );
                ensure!(
                    ctx.after == connect,
                    "the error says {:?}, not connect_timeout {connect:?}",
                    ctx.after
                );
                ensure!(
                    ctx.target.as_deref().is_some_and(|t| t.contains(&port)),
                    "the error does not name where the connect went (port {port}): {err}"
                );
                connect_timeouts.push(elapsed);
            }
            PoolError::Unavailable { last_error, .. } => ensure!(
                last_error.contains("timed out"),
                "a caller was told the pool is unavailable without the connect timeout \
                 as the reason: {err}"
            ),
            _ => {
                return Err(format!(
                    "expected the connect timeout after {elapsed:?}, got: {err}"
                ))
            }
        }
    }
    ensure!(
        !connect_timeouts.is_empty(),
        "no caller saw the connect timeout"
    );
    ensure!(
        proxy.accepted() >= 1,
        "no connect reached the proxy: the case proved nothing"
    );
    let status = pool.status();
    ensure!(
        status.size == 0 && status.connecting == 0 && status.waiting == 0,
        "the timed-out connects kept their room: {status}"
    );
    eprintln!(
        "{}: blackhole during connect: {CALLERS} callers; connects timed out after \
         {connect_timeouts:?} (connect_timeout {connect:?})",
        b.name()
    );

    proxy.heal();
    let pool = &pool;
    eventually("a get and a round trip once healed", || async move {
        let mut conn = get(pool).await?;
        b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
        Ok((true, String::new()))
    })
    .await
}

/// Proves idle connections cut off by a blackhole are not handed out: once they are
/// due for a check (idle past `check_interval`), each check times out at
/// `recycle_timeout` (not later) and fails its caller with the recycle timeout, the
/// connection is discarded, and once healed the pool serves every user from new
/// connections while the old sessions leave the server.
pub(super) async fn blackhole_while_idle_times_out_due_checks_and_replaces_them<B: Backend>(
    backend: Arc<B>,
) -> Outcome {
    const SIZE: usize = 3;
    let b = &*backend;
    let check_interval = Duration::from_millis(100);
    let recycle = Duration::from_secs(1);
    settle(b).await?;
    let (proxy, builder) = proxied(b).await?;
    let pool = build(
        builder
            .max_size(SIZE)
            .check_interval(check_interval)
            .recycle_timeout(recycle)
            .connect_timeout(Duration::from_secs(5))
            .wait_timeout(Duration::from_secs(10)),
    )?;
    let mut old = Vec::new();
    {
        let mut held = Vec::new();
        for _ in 0..SIZE {
            let mut conn = get(&pool).await?;
            b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
            old.push(b.server_id(&mut conn).await.map_err(doing("server id"))?);
            held.push(conn);
        }
    }
    let status = pool.status();
    ensure!(
        status.idle == SIZE,
        "expected {SIZE} idle connections: {status}"
    );

    proxy.blackhole();
    // Idle past check_interval, every connection is due for a check.
    tokio::time::sleep(check_interval * 3).await;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..SIZE {
        let pool = pool.clone();
        callers.spawn(async move {
            let started = Instant::now();
            let result = pool.get().await.map(drop);
            (started.elapsed(), result)
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(joined) = callers.join_next().await {
        let (elapsed, result) = joined.map_err(|e| format!("a caller: {e}"))?;
        slowest = slowest.max(elapsed);
        let err = match result {
            Ok(()) => return Err("a connection was handed out through the blackhole".into()),
            Err(err) => err,
        };
        ensure!(
            err.timeout_kind() == Some(TimeoutKind::Recycle),
            "expected the recycle timeout after {elapsed:?}, got: {err}"
        );
        ensure!(
            elapsed + EARLY >= recycle,
            "a check timed out after {elapsed:?}, before recycle_timeout {recycle:?}"
        );
        ensure!(
            elapsed <= recycle + MARGIN,
            "a check timed out only after {elapsed:?} (recycle_timeout {recycle:?})"
        );
    }
    let status = pool.status();
    ensure!(
        status.size == 0,
        "connections whose check timed out were kept: {status}"
    );
    eprintln!(
        "{}: blackhole while idle: {SIZE} due checks timed out, the slowest after \
         {slowest:?} (recycle_timeout {recycle:?})",
        b.name()
    );

    proxy.heal();
    let mut held = Vec::new();
    for i in 1..=SIZE {
        let mut conn = get(&pool)
            .await
            .map_err(|e| format!("checkout {i} once healed: {e}"))?;
        b.round_trip(&mut conn)
            .await
            .map_err(|e| format!("checkout {i} once healed was handed a dead connection: {e}"))?;
        let id = b.server_id(&mut conn).await.map_err(doing("server id"))?;
        ensure!(
            !old.contains(&id),
            "checkout {i} once healed got old server connection {id}"
        );
        held.push(conn);
    }
    let pool = &pool;
    eventually(
        "the old sessions to leave the server once healed",
        || async move {
            let n = b.server_connections().await?;
            Ok((
                n == SIZE,
                format!("{n} server connections, pool {}", pool.status()),
            ))
        },
    )
    .await
}

/// What the users saw while every connection was reset.
#[derive(Default)]
struct Tally {
    /// Round trips that succeeded on connections opened before the reset.
    ok_old: AtomicUsize,
    /// Round trips that succeeded on connections opened after it.
    ok_new: AtomicUsize,
    /// Failures: the pool's connection id, whether it was opened before the reset, and
    /// the error.
    errors: Mutex<Vec<(u64, bool, String)>>,
    stop: AtomicBool,
}

impl Tally {
    fn record(&self, id: u64, old: bool, outcome: Result<(), String>) {
        let succeeded = match outcome {
            Ok(()) if old => &self.ok_old,
            Ok(()) => &self.ok_new,
            Err(e) => {
                let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
                errors.push((id, old, e));
                return;
            }
        };
        succeeded.fetch_add(1, Ordering::SeqCst);
    }

    fn errors(&self) -> Vec<(u64, bool, String)> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Proves a reset of every connection at once, under load, fails only the users of the
/// reset connections: a user holding one gets an error, every error is on a connection
/// opened before the reset, every `get` succeeds, and users go on working on new
/// connections. Afterwards no room is leaked: the pool's counts add up, `max_size`
/// connections can be held at once, all new, and the server sees no more than
/// `max_size` (the reset sessions are gone).
pub(super) async fn reset_of_every_connection_under_load_fails_only_their_users<B: Backend>(
    backend: Arc<B>,
) -> Outcome {
    const MAX: usize = 4;
    const TASKS: usize = 8;
    let b = &*backend;
    settle(b).await?;
    let (proxy, builder) = proxied(b).await?;
    let pool = build(
        builder
            .max_size(MAX)
            .wait_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .recycle_timeout(Duration::from_secs(5)),
    )?;
    // Every connection open up front, so none is being opened when the reset comes.
    let mut held = Vec::new();
    for _ in 0..MAX {
        let mut conn = get(&pool).await?;
        b.round_trip(&mut conn).await.map_err(doing("round trip"))?;
        held.push(conn);
    }
    let newest_old = held.iter().map(|conn| conn.info().id()).max().unwrap_or(0);
    // One user holds a connection through the reset; the others share the rest.
    let mut victim = held.pop().expect("MAX is not zero");
    drop(held);

    let tally = Arc::new(Tally::default());
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (pool, backend, tally) = (pool.clone(), Arc::clone(&backend), Arc::clone(&tally));
        users.spawn(async move {
            while !tally.stop.load(Ordering::SeqCst) {
                let mut conn = pool.get().await.map_err(|e| format!("a get failed: {e}"))?;
                let id = conn.info().id();
                let old = id <= newest_old;
                let outcome = backend.round_trip(&mut conn).await;
                drop(conn);
                tally.record(id, old, outcome);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok::<(), String>(())
        });
    }
    let load = async {
        let t = &*tally;
        eventually("the load to run on the first connections", || async move {
            let ok = t.ok_old.load(Ordering::SeqCst);
            Ok((ok >= 2 * TASKS, format!("{ok} round trips")))
        })
        .await?;
        proxy.reset_all();
        eventually(
            "the users to go on working on new connections",
            || async move {
                let ok = t.ok_new.load(Ordering::SeqCst);
                Ok((
                    ok >= 4 * TASKS,
                    format!("{ok} round trips on new connections"),
                ))
            },
        )
        .await
    };
    let loaded = load.await;
    tally.stop.store(true, Ordering::SeqCst);
    while let Some(joined) = users.join_next().await {
        joined.map_err(|e| format!("a user task: {e}"))??;
    }
    loaded.map_err(|e| format!("{e}; errors seen: {:?}", tally.errors()))?;

    let errors = tally.errors();
    eprintln!(
        "{}: reset under load: {} round trips before the reset, {} on new connections \
         after it, {} errors, all on reset connections",
        b.name(),
        tally.ok_old.load(Ordering::SeqCst),
        tally.ok_new.load(Ordering::SeqCst),
        errors.len()
    );
    let not_reset: Vec<_> = errors.iter().filter(|(_, old, _)| !old).collect();
    ensure!(
        not_reset.is_empty(),
        "users of connections opened after the reset got errors: {not_reset:?}"
    );
    ensure!(
        b.round_trip(&mut victim).await.is_err(),
        "a round trip on a connection held through the reset succeeded"
    );
    drop(victim);

    let status = pool.status();
    ensure!(
        status.in_use == 0 && status.connecting == 0 && status.waiting == 0 && status.size <= MAX,
        "the pool's counts do not add up after the load: {status}"
    );
    let mut held = Vec::new();
    for i in 1..=MAX {
        let mut conn = get(&pool)
            .await
            .map_err(|e| format!("checkout {i} of {MAX} after the reset: {e}"))?;
        b.round_trip(&mut conn).await.map_err(|e| {
            format!("checkout {i} after the reset was handed a dead connection: {e}")
        })?;
        ensure!(
            conn.info().id() > newest_old,
            "checkout {i} after the reset was handed reset connection {}",
            conn.info().id()
        );
        held.push(conn);
    }
    let pool = &pool;
    eventually("the reset sessions to leave the server", || async move {
        let n = b.server_connections().await?;
        Ok((
            n <= MAX,
            format!("{n} server connections, pool {}", pool.status()),
        ))
    })
    .await
}

/// Proves 50 ms of added latency (each way, plus up to 10 ms of jitter) only slows the
/// pool down: with timeouts well above the slower round trips, every connect, check
/// (every checkout is checked) and query completes, and no timeout fires.
pub(super) async fn latency_of_50ms_completes_every_operation_without_a_timeout<B: Backend>(
    backend: Arc<B>,
) -> Outcome {
    const MAX: usize = 3;
    const TASKS: usize = 6;
    const ROUNDS: usize = 4;
    let latency = Duration::from_millis(50);
    let (proxy, builder) = proxied(&*backend).await?;
    proxy.add_latency(latency, Duration::from_millis(10));
    let pool = build(
        builder
            .max_size(MAX)
            .check_interval(Duration::ZERO)
            .connect_timeout(Duration::from_secs(10))
            .recycle_timeout(Duration::from_secs(5))
            .wait_timeout(Duration::from_secs(40)),
    )?;
    let mut users = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let (pool, backend) = (pool.clone(), Arc::clone(&backend));
        users.spawn(async move {
            let mut fastest = Duration::MAX;
            for round in 1..=ROUNDS {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| format!("get in round {round}: {e}"))?;
                let started = Instant::now();
                backend
                    .round_trip(&mut conn)
                    .await
                    .map_err(|e| format!("round trip in round {round}: {e}"))?;
                fastest = fastest.min(started.elapsed());
                backend
                    .server_id(&mut conn)
                    .await
                    .map_err(|e| format!("server id in round {round}: {e}"))?;
            }
            Ok::<Duration, String>(fastest)
        });
    }
    let mut fastest = Duration::MAX;
    while let Some(joined) = users.join_next().await {
        let user = joined.map_err(|e| format!("a user task: {e}"))??;
        fastest = fastest.min(user);
    }
    ensure!(
        fastest >= 2 * latency,
        "a round trip took {fastest:?}, less than the latency both ways: the latency was \
         not applied and the case proved nothing"
    );
    let status = pool.status();
    ensure!(
        status.in_use == 0 && status.size <= MAX,
        "the pool's counts after the run: {status}"
    );
    eprintln!(
        "{}: latency: {} operations completed, the fastest round trip {fastest:?}",
        backend.name(),
        TASKS * ROUNDS * 3
    );
    Ok(())
}

/// The most connect attempts a pool may make while every connect fails at once for
/// `window`: a first burst of up to `max_connecting`, then one attempt at a time, each
/// after a back-off that starts at `initial` and doubles up to `max`, less up to 20%
/// jitter (pool-core's schedule; counted from the shortest delays, so an upper bound),
/// plus one for an attempt under way as the window closes.
fn most_attempts(window: Duration, initial: Duration, max: Duration, max_connecting: u64) -> u64 {
    let mut attempts = max_connecting + 1;
    let mut delay = initial;
    let mut elapsed = Duration::ZERO;
    loop {
        elapsed += delay * 4 / 5;
        if elapsed > window {
            return attempts;
        }
        attempts += 1;
        delay = (delay * 2).min(max);
    }
}

/// Proves a pool whose connects are refused (the server resets each one at once) does
/// not hammer it: while the outage lasts, with callers asking all the time and upkeep
/// keeping `min_idle`, its connect attempts stay within its back-off schedule (from
/// `connect_backoff` doubling to `connect_backoff_max`), every caller finishes within
/// its bounds; and once the refusals stop it reconnects by itself (upkeep, no caller
/// needed) within `connect_backoff_max` and a margin.
pub(super) async fn refused_connects_back_off_and_recover_by_themselves<B: Backend>(
    backend: Arc<B>,
) -> Outcome {
    const CALLERS: usize = 3;
    let b = &*backend;
    let backoff = Duration::from_millis(100);
    let backoff_max = Duration::from_millis(400);
    let outage = Duration::from_secs(3);
    let wait = Duration::from_secs(2);
    let connect = Duration::from_secs(2);
    settle(b).await?;
    let (proxy, builder) = proxied(b).await?;
    let pool = build(
        builder
            .max_size(3)
            .min_idle(1)
            .wait_timeout(wait)
            .connect_timeout(connect)
            .connect_backoff(backoff)
            .connect_backoff_max(backoff_max),
    )?;
    let max_connecting = pool.config().max_connecting as u64;
    proxy.refuse();
    let refused_at = Instant::now();
    let _upkeep = AbortOnDrop(pool.spawn_upkeep());

    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let (pool, stop) = (pool.clone(), Arc::clone(&stop));
        callers.spawn(async move {
            let mut failures = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let result = pool.get().await;
                let took = started.elapsed();
                if let Ok(conn) = result {
                    return Err(format!(
                        "a get was served while every connect was refused: connection {}",
                        conn.info().id()
                    ));
                }
                if took > wait + connect + MARGIN {
                    return Err(format!(
                        "a get took {took:?} to fail (wait {wait:?}, connect {connect:?})"
                    ));
                }
                failures += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<usize, String>(failures)
        });
    }
    // The outage itself: the refusals last this long whatever the pool does.
    tokio::time::sleep(outage).await;
    stop.store(true, Ordering::SeqCst);
    let mut failed_gets = 0;
    while let Some(joined) = callers.join_next().await {
        failed_gets += joined.map_err(|e| format!("a caller: {e}"))??;
    }
    let attempts = proxy.accepted();
    let window = refused_at.elapsed();
    let bound = most_attempts(window, backoff, backoff_max, max_connecting);
    proxy.heal();
    let healed_at = Instant::now();
    ensure!(
        attempts >= 2,
        "{attempts} connect attempts in {window:?} of refusals: the pool stopped trying"
    );
    ensure!(
        attempts <= bound,
        "{attempts} connect attempts in {window:?} of refusals ({failed_gets} failed gets), \
         more than the back-off allows ({bound}: {backoff:?} doubling to {backoff_max:?}, \
         max_connecting {max_connecting})"
    );

    let pool = &pool;
    eventually(
        "the pool to reconnect by itself once healed",
        || async move {
            let status = pool.status();
            let n = b.server_connections().await?;
            Ok((
                status.idle >= 1 && n >= 1,
                format!("pool {status}, {n} server connections"),
            ))
        },
    )
    .await?;
    let recovered = healed_at.elapsed();
    eprintln!(
        "{}: refused connects: {attempts} attempts in {window:?} (bound {bound}), \
         {failed_gets} failed gets; reconnected by itself {recovered:?} after the heal",
        b.name()
    );
    ensure!(
        recovered <= backoff_max + MARGIN,
        "the pool reconnected only {recovered:?} after the heal (connect_backoff_max \
         {backoff_max:?})"
    );
    let mut conn = get(pool).await.map_err(doing("after recovery"))?;
    b.round_trip(&mut conn)
        .await
        .map_err(doing("round trip after recovery"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::most_attempts;
    use std::time::Duration;

    #[test]
    fn most_attempts_follows_the_backoff_with_full_jitter() {
        let ms = Duration::from_millis;
        // Delays of 80, 160, 320, 320 ... ms: due at 80, 240, 560, 880, 1200 ms.
        assert_eq!(most_attempts(ms(0), ms(100), ms(400), 2), 3);
        assert_eq!(most_attempts(ms(79), ms(100), ms(400), 2), 3);
        assert_eq!(most_attempts(ms(80), ms(100), ms(400), 2), 4);
        assert_eq!(most_attempts(ms(1000), ms(100), ms(400), 2), 7);
        assert_eq!(most_attempts(ms(3000), ms(100), ms(400), 1), 12);
    }
}

//! The load: tasks that take a connection, check it is clean, write a row with a
//! fresh id in a short transaction, sometimes leave the session dirty, and give the
//! connection back, timing every `get`: in all, and its waiting (the time outside the
//! driver's connects and checks, which the pool bounds by `wait_timeout`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pool_core::{PoolError, Pooled, TimeoutKind};

use super::counting::{driver_time, Counting};
use super::run::Run;
use super::tally::ErrorTally;
use super::victims::{Victim, Victims};
use super::ChaosBackend;

/// How long a task pauses after a failed `get` or transaction, in milliseconds (a
/// random time between the two): the pool fails at once while it backs off, and tasks
/// that retried at once would only spin.
const PAUSE_AFTER_ERROR_MS: (u64, u64) = (5, 25);

/// What the load did, counted as it goes.
#[derive(Debug, Default)]
pub(crate) struct LoadStats {
    /// `get` calls that returned (either way).
    pub(crate) gets: AtomicU64,
    /// `get` calls that returned a connection.
    pub(crate) checkouts: AtomicU64,
    /// Transactions committed.
    pub(crate) operations: AtomicU64,
    /// Sessions left dirty on purpose.
    pub(crate) dirtied: AtomicU64,
    /// Checkouts whose session was not clean.
    pub(crate) dirty_handed_out: AtomicU64,
    /// `get` calls that waited longer than the wait timeout plus the margin, by how
    /// they ended.
    pub(crate) late_gets: ErrorTally,
    /// The longest any `get` took, in all.
    pub(crate) longest_get: Mutex<Duration>,
    /// The longest any `get` waited (its time outside the driver's connects and
    /// checks).
    pub(crate) longest_wait: Mutex<Duration>,
    /// Errors by kind.
    pub(crate) errors: ErrorTally,
    /// Ids whose transaction committed.
    pub(crate) acknowledged: Mutex<Vec<u64>>,
    /// The next row id (ids are handed out once, acknowledged or not).
    pub(crate) next_row: AtomicU64,
    /// The server id of each pool connection, asked once per connection.
    server_ids: Mutex<HashMap<u64, u64>>,
}

impl LoadStats {
    /// Times one `get` that took `took` in all, `driver` of it in the driver's
    /// connects and checks; `outcome` names how it ended (a kind, and a message).
    fn record_get(
        &self,
        took: Duration,
        driver: Duration,
        limit: Duration,
        outcome: impl FnOnce() -> (&'static str, String),
    ) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let waited = took.saturating_sub(driver);
        for (longest, this) in [(&self.longest_get, took), (&self.longest_wait, waited)] {
            let mut longest = longest.lock().unwrap_or_else(PoisonError::into_inner);
            *longest = (*longest).max(this);
        }
        if waited > limit {
            let (kind, message) = outcome();
            self.late_gets.add(kind, || {
                format!("a get waited {waited:?} ({took:?} in all) and ended: {message}")
            });
        }
    }
}

/// The kind of a failed `get`, as the report counts it.
pub(crate) fn get_error_kind<E>(error: &PoolError<E>) -> &'static str {
    match error {
        PoolError::Timeout(TimeoutKind::Wait, _) => "get: wait timeout",
        PoolError::Timeout(TimeoutKind::Connect, _) => "get: connect timeout",
        PoolError::Timeout(TimeoutKind::Recycle, _) => "get: check timeout",
        PoolError::Backend(_) => "get: driver error",
        PoolError::Unavailable { .. } => "get: unavailable (backing off)",
        PoolError::Closed => "get: pool closed",
        PoolError::Hook(_) => "get: hook",
        _ => "get: other",
    }
}

/// One task of the load, running until the run says stop.
pub(crate) async fn task<B: ChaosBackend>(run: &Run<B>, mut rng: fastrand::Rng) {
    let config = &run.config;
    let limit = config.wait_timeout + config.scheduling_margin;
    while !run.load_stopped() {
        let asked = Instant::now();
        let (got, driver) = driver_time(run.pool.get()).await;
        let got_at = Instant::now();
        run.load
            .record_get(got_at - asked, driver, limit, || match &got {
                Ok(_) => ("returned a connection", "a connection".to_owned()),
                Err(e) => (get_error_kind(e), e.to_string()),
            });
        match got {
            Ok(mut conn) => {
                run.load.checkouts.fetch_add(1, Ordering::Relaxed);
                let committed = tokio::time::timeout(
                    config.operation_limit,
                    transaction(run, &mut conn, &mut rng),
                )
                .await
                .unwrap_or_else(|_| {
                    run.load.errors.add("transaction hung", || {
                        format!("no answer within {:?}", config.operation_limit)
                    });
                    false
                });
                drop(conn);
                if committed {
                    run.recovery.served(got_at);
                } else {
                    pause_after_error(&mut rng).await;
                }
            }
            Err(e) => {
                run.load.errors.add(get_error_kind(&e), || e.to_string());
                pause_after_error(&mut rng).await;
            }
        }
    }
}

async fn pause_after_error(rng: &mut fastrand::Rng) {
    let (shortest, longest) = PAUSE_AFTER_ERROR_MS;
    tokio::time::sleep(Duration::from_millis(rng.u64(shortest..=longest))).await;
}

/// Gives a held connection's entry back when the transaction ends, however it ends.
struct Held<'a> {
    victims: &'a Victims,
    pool_id: u64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.victims.released(self.pool_id);
    }
}

/// One checkout's work; `true` if its transaction committed.
async fn transaction<B: ChaosBackend>(
    run: &Run<B>,
    conn: &mut Pooled<Counting<B::Manager>>,
    rng: &mut fastrand::Rng,
) -> bool {
    let backend = &*run.backend;
    let load = &run.load;
    let pool_id = conn.info().id();
    match backend.is_clean(conn).await {
        Ok(true) => {}
        Ok(false) => {
            load.dirty_handed_out.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        Err(e) => {
            load.errors.add("clean check", || e);
            return false;
        }
    }

    let known = load
        .server_ids
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&pool_id)
        .copied();
    let server_id = match known {
        Some(id) => id,
        None => match backend.server_id(conn).await {
            Ok(id) => {
                load.server_ids
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(pool_id, id);
                id
            }
            Err(e) => {
                load.errors.add("server id", || e);
                return false;
            }
        },
    };
    run.victims.held(Victim { pool_id, server_id });
    let _held = Held {
        victims: &run.victims,
        pool_id,
    };

    let id = load.next_row.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = backend.write_row(conn, &run.table, id).await {
        load.errors.add("transaction", || e);
        return false;
    }
    load.acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(id);
    load.operations.fetch_add(1, Ordering::Relaxed);

    if rng.u32(..run.config.dirty_one_in) == 0 {
        match backend.dirty_session(conn).await {
            Ok(()) => {
                load.dirtied.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => load.errors.add("dirtying the session", || e),
        }
    }
    true
}

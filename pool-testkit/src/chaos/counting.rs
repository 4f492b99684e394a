//! A manager wrapper that counts the connections alive on the client side, so the pool's
//! own count (`Status::size`) can be compared with the connections that really exist;
//! and times the driver's work inside each `get`, so the time a `get` spent waiting
//! can be told from the time it spent connecting and checking.
//!
//! The pool bounds those separately (`wait_timeout` the waiting, `connect_timeout`
//! each connect, `recycle_timeout` each check), so a `get` whose wait ends in a
//! connect may rightly take longer than `wait_timeout` in all; its waiting may not.

use std::cell::Cell;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

// tokio's clock (the real one, except in tests that pause it).
use tokio::time::Instant;

use pool_core::{ConnectionInfo, Manager, ReturnState};

/// How many connections made through a [`Counting`] manager exist now, and the most
/// that ever existed at once.
#[derive(Debug, Default)]
pub(crate) struct Census {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Census {
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

tokio::task_local! {
    /// Time spent in the driver's `connect` and `recycle` by the `get` running in
    /// this task (see [`driver_time`]).
    static DRIVER_TIME: Cell<Duration>;
}

/// Runs `get` and returns its output with the time it spent in the manager's
/// `connect` and `recycle` (the pool runs those inside the `get` that needs them;
/// upkeep's run elsewhere and are not counted).
pub(crate) async fn driver_time<F: Future>(get: F) -> (F::Output, Duration) {
    DRIVER_TIME
        .scope(Cell::new(Duration::ZERO), async {
            let output = get.await;
            (output, DRIVER_TIME.with(Cell::get))
        })
        .await
}

/// Adds the time from its creation to its drop to the current `get`'s driver time,
/// when dropped: also when the call is cut short by a timeout (which drops it).
struct DriverCall(Instant);

impl Drop for DriverCall {
    fn drop(&mut self) {
        let spent = self.0.elapsed();
        // Outside `driver_time` (upkeep's own connects and checks) there is no
        // `get` to charge.
        let _ = DRIVER_TIME.try_with(|total| total.set(total.get() + spent));
    }
}

/// Wraps a manager; every method is the inner manager's, on the inner connection.
///
/// Every method of [`Manager`] is forwarded, including those with defaults, so the
/// pool behaves exactly as it does with the inner manager.
pub(crate) struct Counting<M> {
    inner: M,
    census: Arc<Census>,
}

impl<M> Counting<M> {
    pub(crate) fn new(inner: M) -> Self {
        Counting {
            inner,
            census: Arc::default(),
        }
    }

    pub(crate) fn census(&self) -> Arc<Census> {
        Arc::clone(&self.census)
    }
}

/// A connection counted in its [`Census`] from when it is opened until it is dropped.
pub(crate) struct Counted<C> {
    conn: C,
    census: Arc<Census>,
}

impl<C> Deref for Counted<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Counted<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C> Drop for Counted<C> {
    fn drop(&mut self) {
        self.census.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl<M: Manager> Manager for Counting<M> {
    type Connection = Counted<M::Connection>;
    type Error = M::Error;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let call = DriverCall(Instant::now());
        let conn = self.inner.connect().await;
        drop(call);
        let conn = conn?;
        let live = self.census.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.census.peak.fetch_max(live, Ordering::SeqCst);
        Ok(Counted {
            conn,
            census: Arc::clone(&self.census),
        })
    }

    async fn recycle(
        &self,
        conn: &mut Self::Connection,
        info: &ConnectionInfo,
    ) -> Result<(), Self::Error> {
        let _call = DriverCall(Instant::now());
        self.inner.recycle(&mut conn.conn, info).await
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        self.inner.has_broken(&mut conn.conn)
    }

    fn target(&self) -> Option<String> {
        self.inner.target()
    }

    fn return_state(&self, conn: &mut Self::Connection) -> ReturnState {
        self.inner.return_state(&mut conn.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockManager;

    #[tokio::test]
    async fn counts_connections_from_connect_to_drop() {
        let manager = Counting::new(MockManager::new());
        let census = manager.census();
        let a = manager.connect().await.unwrap();
        let b = manager.connect().await.unwrap();
        assert_eq!((census.live(), census.peak()), (2, 2));
        drop(a);
        assert_eq!((census.live(), census.peak()), (1, 2));
        drop(b);
        assert_eq!(census.live(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn charges_connects_and_checks_to_the_get_that_ran_them() {
        let inner = MockManager::new();
        let control = inner.control();
        control.connect_delay(Duration::from_millis(300));
        control.recycle_delay(Duration::from_millis(200));
        let pool = pool_core::Pool::builder(Counting::new(inner))
            .check_interval(Duration::ZERO)
            .build()
            .unwrap();
        let ((), waited) = driver_time(tokio::time::sleep(Duration::from_secs(1))).await;
        assert_eq!(waited, Duration::ZERO, "a plain wait is no driver work");
        let (first, spent) = driver_time(pool.get()).await;
        assert_eq!(spent, Duration::from_millis(300), "the connect");
        drop(first.unwrap());
        let (second, spent) = driver_time(pool.get()).await;
        assert_eq!(
            spent,
            Duration::from_millis(200),
            "the check before checkout"
        );
        drop(second.unwrap());
        // A connect cut short by a timeout is charged up to the cut.
        control.hang_connects(true);
        let manager = Counting::new(control.manager());
        let (timed_out, spent) = driver_time(tokio::time::timeout(
            Duration::from_millis(700),
            manager.connect(),
        ))
        .await;
        assert!(timed_out.is_err());
        assert_eq!(spent, Duration::from_millis(700));
        control.hang_connects(false);
    }

    #[tokio::test]
    async fn forwards_to_the_inner_manager() {
        let inner = MockManager::new();
        let control = inner.control();
        let manager = Counting::new(inner);
        let mut conn = manager.connect().await.unwrap();
        assert_eq!(manager.return_state(&mut conn), ReturnState::Clean);
        conn.set_dirty();
        assert_eq!(manager.return_state(&mut conn), ReturnState::Dirty);
        assert!(!manager.has_broken(&mut conn));
        control.kill(conn.id());
        assert!(manager.has_broken(&mut conn));
    }
}

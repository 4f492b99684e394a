//! A manager wrapper that counts the connections alive on the client side, so the pool's
//! own count (`Status::size`) can be compared with the connections that really exist.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
        let conn = self.inner.connect().await?;
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

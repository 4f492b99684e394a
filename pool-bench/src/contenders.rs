//! The pools of the scenarios without I/O (checkout and scale), behind one trait:
//! pool-core, deadpool 0.13, bb8 0.9, qp 0.2 and a floor (a tokio `Semaphore` plus a
//! locked `Vec`). Every manager's connect returns a small struct at once and its checks
//! do nothing; every pool is filled to its full size before anything is timed.

use std::convert::Infallible;
use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The contenders, ours first.
pub const NAMES: [&str; 5] = ["pool-core", "deadpool", "bb8", "qp", "floor"];

/// Contenders whose time-outs are results, not failures of the run: qp deadlocks when
/// tasks hold a connection across an await (it registers a waiter's waker only once).
pub const KNOWN_TO_DEADLOCK: [&str; 1] = ["qp"];

/// How each contender is set up, for the report.
pub const SETTINGS: &str = "pool-core: `wait_timeout(None)`, other settings default \
    (a no-op `recycle` that is never due); deadpool: managed, defaults (no timeouts, its \
    no-op `recycle` runs on every get); bb8: `test_on_check_out(false)`, its \
    `connection_timeout` (30 s) always wraps a get; qp: defaults; floor: a tokio \
    `Semaphore` (FIFO) plus a `Mutex<Vec<_>>`, the least a fair async pool must do.";

/// The "connection" every pool hands out.
#[derive(Debug)]
pub struct Conn(pub u64);

/// A pool under test: a cheap handle that can be moved into tasks.
pub trait Contender: Clone + Send + Sync + 'static {
    type Guard<'a>: Deref<Target = Conn> + Send
    where
        Self: 'a;
    fn get(&self) -> impl Future<Output = Result<Self::Guard<'_>, String>> + Send;
}

/// Something to do with a contender of any type (Rust has no generic closures).
pub trait Visit {
    type Output;
    fn visit<C: Contender>(self, pool: &C) -> Self::Output;
}

/// One of the contenders, built.
pub enum Pool {
    Core(Core),
    Dead(Dead),
    Bb8(Bb8),
    Qp(Qp),
    Floor(Floor),
}

impl Pool {
    /// Builds the contender `name` with `size` connections, all opened and idle.
    pub async fn build(name: &str, size: usize) -> Result<Pool, String> {
        Ok(match name {
            "pool-core" => Pool::Core(Core::new(size).await?),
            "deadpool" => Pool::Dead(Dead::new(size).await?),
            "bb8" => Pool::Bb8(Bb8::new(size).await?),
            "qp" => Pool::Qp(Qp::new(size).await?),
            "floor" => Pool::Floor(Floor::new(size)),
            other => return Err(format!("unknown contender {other}")),
        })
    }

    pub fn visit<V: Visit>(&self, visitor: V) -> V::Output {
        match self {
            Pool::Core(p) => visitor.visit(p),
            Pool::Dead(p) => visitor.visit(p),
            Pool::Bb8(p) => visitor.visit(p),
            Pool::Qp(p) => visitor.visit(p),
            Pool::Floor(p) => visitor.visit(p),
        }
    }
}

/// Checks out `size` connections at once and returns them, so the pool opens them all.
async fn fill<C: Contender>(pool: &C, size: usize) -> Result<(), String> {
    let mut held = Vec::with_capacity(size);
    for _ in 0..size {
        held.push(pool.get().await?);
    }
    Ok(())
}

// pool-core ------------------------------------------------------------------------

pub struct CoreManager;

#[async_trait::async_trait]
impl pool_core::Manager for CoreManager {
    type Connection = Conn;
    type Error = Infallible;
    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(Conn(0))
    }
    async fn recycle(
        &self,
        _conn: &mut Conn,
        _info: &pool_core::ConnectionInfo,
    ) -> Result<(), Infallible> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct Core(pool_core::Pool<CoreManager>);

impl Core {
    async fn new(size: usize) -> Result<Self, String> {
        let pool = pool_core::Pool::builder(CoreManager)
            .max_size(size)
            .wait_timeout(None)
            .build()
            .map_err(|e| e.to_string())?;
        let core = Core(pool);
        fill(&core, size).await?;
        let status = core.0.status();
        if (status.size, status.idle) != (size, size) {
            return Err(format!("pool-core not filled: {status}"));
        }
        Ok(core)
    }
}

impl Contender for Core {
    type Guard<'a> = pool_core::Pooled<CoreManager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.get().await.map_err(|e| e.to_string())
    }
}

// deadpool -------------------------------------------------------------------------

pub struct DeadManager;

impl deadpool::managed::Manager for DeadManager {
    type Type = Conn;
    type Error = Infallible;
    async fn create(&self) -> Result<Conn, Infallible> {
        Ok(Conn(0))
    }
    async fn recycle(
        &self,
        _conn: &mut Conn,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct Dead(deadpool::managed::Pool<DeadManager>);

impl Dead {
    async fn new(size: usize) -> Result<Self, String> {
        // The default has no timeouts (and so needs no runtime).
        let pool = deadpool::managed::Pool::builder(DeadManager)
            .max_size(size)
            .build()
            .map_err(|e| e.to_string())?;
        let dead = Dead(pool);
        fill(&dead, size).await?;
        let status = dead.0.status();
        if (status.size, status.available) != (size, size) {
            return Err(format!("deadpool not filled: {status:?}"));
        }
        Ok(dead)
    }
}

impl Contender for Dead {
    type Guard<'a> = deadpool::managed::Object<DeadManager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.get().await.map_err(|e| format!("{e:?}"))
    }
}

// bb8 ------------------------------------------------------------------------------

pub struct Bb8Manager;

impl bb8::ManageConnection for Bb8Manager {
    type Connection = Conn;
    type Error = Infallible;
    async fn connect(&self) -> Result<Conn, Infallible> {
        Ok(Conn(0))
    }
    async fn is_valid(&self, _conn: &mut Conn) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _conn: &mut Conn) -> bool {
        false
    }
}

#[derive(Clone)]
pub struct Bb8(bb8::Pool<Bb8Manager>);

impl Bb8 {
    async fn new(size: usize) -> Result<Self, String> {
        // bb8 always bounds a get by `connection_timeout` (30 s by default): each get
        // sets up a tokio timeout. There is no way to switch it off.
        let pool = bb8::Pool::builder()
            .max_size(size as u32)
            .test_on_check_out(false)
            .build(Bb8Manager)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let bb8 = Bb8(pool);
        fill(&bb8, size).await?;
        let state = bb8.0.state();
        if (state.connections, state.idle_connections) != (size as u32, size as u32) {
            return Err(format!("bb8 not filled: {state:?}"));
        }
        Ok(bb8)
    }
}

impl Contender for Bb8 {
    type Guard<'a> = bb8::PooledConnection<'a, Bb8Manager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.get().await.map_err(|e| format!("{e:?}"))
    }
}

// qp -------------------------------------------------------------------------------

pub struct QpManager;

#[qp::async_trait]
impl qp::resource::Manage for QpManager {
    type Output = Conn;
    type Error = Infallible;
    async fn try_create(&self) -> Result<Conn, Infallible> {
        Ok(Conn(0))
    }
}

#[derive(Clone)]
pub struct Qp(qp::Pool<QpManager>);

impl Qp {
    async fn new(size: usize) -> Result<Self, String> {
        let pool = qp::Pool::new(QpManager, size);
        pool.reserve(size).await.map_err(|e| format!("{e:?}"))?;
        if pool.size() != size {
            return Err(format!("qp not filled: {} of {size}", pool.size()));
        }
        Ok(Qp(pool))
    }
}

impl Contender for Qp {
    type Guard<'a> = qp::Pooled<'a, QpManager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.acquire().await.map_err(|e| format!("{e:?}"))
    }
}

// floor: a semaphore and a locked Vec ------------------------------------------------

/// The least a fair async pool must do: a FIFO semaphore for the waiting and a
/// locked stack for the connections.
#[derive(Clone)]
pub struct Floor(Arc<FloorInner>);

pub struct FloorInner {
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

pub struct FloorGuard<'a> {
    pool: &'a FloorInner,
    conn: Option<Conn>,
    // Dropped after `drop` has put the connection back.
    _permit: SemaphorePermit<'a>,
}

impl Deref for FloorGuard<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl Drop for FloorGuard<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

impl Floor {
    fn new(size: usize) -> Self {
        Floor(Arc::new(FloorInner {
            permits: Semaphore::new(size),
            idle: Mutex::new((0..size).map(|_| Conn(0)).collect()),
        }))
    }
}

impl Contender for Floor {
    type Guard<'a> = FloorGuard<'a>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        let permit = self.0.permits.acquire().await.map_err(|e| e.to_string())?;
        let conn = self
            .0
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or("floor: a permit without an idle connection")?;
        Ok(FloorGuard {
            pool: &self.0,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

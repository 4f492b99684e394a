//! A [`Manager`] without a database, with scripted faults and counters, so the pool's
//! state machine can be tested on its own.
//!
//! [`MockManager`] goes into the pool; the test keeps its [`MockControl`] (from
//! [`MockManager::control`]) to script faults and read counters while the pool runs:
//!
//! ```
//! use pool_testkit::mock::MockManager;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let manager = MockManager::new();
//! let control = manager.control();
//! let pool = pool_core::Pool::builder(manager).max_size(2).build().unwrap();
//!
//! let mut conn = pool.get().await.unwrap();
//! conn.query().await.unwrap();
//! assert_eq!((conn.id(), control.live()), (1, 1));
//!
//! control.kill(conn.id()); // the server drops it
//! assert!(conn.query().await.is_err());
//! drop(conn); // `has_broken` says so: the pool discards it
//! assert_eq!(control.live(), 0);
//!
//! control.set_down(true); // every connect fails, with the scripted message
//! let err = pool.get().await.unwrap_err();
//! assert_eq!(err.to_string(), "mock: connection refused");
//! assert_eq!((control.connects_succeeded(), control.connects_failed()), (1, 1));
//! # }
//! ```
//!
//! Everything is runtime-agnostic except the delays (`connect_delay`, `recycle_delay`,
//! `query_delay`), which sleep with `tokio::time::sleep` so tests with paused time
//! see them pass instantly.
//!
//! Connects run the script in this order: a scripted panic
//! ([`MockControl::panic_next_connects`]), the down flag ([`MockControl::set_down`]),
//! scripted failures ([`MockControl::fail_next_connects`]), the pause gate
//! ([`MockControl::pause_connects`]), a hang ([`MockControl::hang_connects`]), then the
//! delay ([`MockControl::connect_delay`]). Recycles: a scripted panic, the pause gate,
//! a hang, the delay, then failure if the connection was killed or a failure is
//! scripted.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pool_core::{ConnectionInfo, Manager, ReturnState};
use tokio::sync::watch;

/// The message of scripted connect failures unless [`MockControl::set_error_message`]
/// says otherwise.
pub const DEFAULT_ERROR_MESSAGE: &str = "mock: connection refused";

/// Where the mock "connects", as [`Manager::target`]
/// names it in connect timeouts.
pub const MOCK_TARGET: &str = "mock://127.0.0.1:0/test";

/// The message of a query or recycle on a connection killed server-side.
pub const KILLED_MESSAGE: &str = "mock: connection killed";

/// The message of a scripted recycle failure.
pub const RECYCLE_FAILED_MESSAGE: &str = "mock: recycle failed";

/// The mock's error: its `Display` is the scripted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockError {
    message: String,
}

impl MockError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        MockError {
            message: message.into(),
        }
    }

    /// The message, as `Display` shows it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MockError {}

/// A gate that async callers park at while it is closed; it needs no runtime.
struct Gate {
    closed: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            closed: watch::Sender::new(false),
        }
    }

    fn set_closed(&self, closed: bool) {
        self.closed.send_replace(closed);
    }

    /// Waits while the gate is closed, counted in `waiting` (also if cancelled).
    async fn pass(&self, waiting: &AtomicUsize) {
        let mut rx = self.closed.subscribe();
        if !*rx.borrow_and_update() {
            return;
        }
        let _parked = Counted::new(waiting);
        // The sender lives in the shared state, which outlives this call.
        let _ = rx.wait_for(|closed| !closed).await;
    }
}

/// Counts one parked caller for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes one from a scripted count; `true` if there was one to take.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn delay(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// Reads a duration setting (the guard is gone before any await).
fn read(setting: &Mutex<Duration>) -> Duration {
    *lock(setting)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Server-side state of one connection.
#[derive(Default)]
struct ServerSide {
    killed: AtomicBool,
    /// Killed without the client noticing (its socket not read yet): `has_broken`
    /// does not see it; only a round trip (a query or a recycle) does.
    unnoticed: AtomicBool,
}

/// The "server": everything managers and controls sharing it see.
struct Shared {
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<ServerSide>>>,

    connects_started: AtomicUsize,
    connects_succeeded: AtomicUsize,
    connects_failed: AtomicUsize,
    recycles: AtomicUsize,
    recycles_failed: AtomicUsize,
    resets: AtomicUsize,
    has_broken_calls: AtomicUsize,
    live: AtomicUsize,
    peak_live: AtomicUsize,

    error_message: Mutex<String>,
    down: AtomicBool,
    panic_connects: AtomicUsize,
    fail_connects: AtomicUsize,
    connect_gate: Gate,
    connect_hang: Gate,
    connects_waiting: AtomicUsize,
    connect_delay: Mutex<Duration>,

    panic_recycles: AtomicUsize,
    fail_recycles: AtomicUsize,
    recycle_gate: Gate,
    recycle_hang: Gate,
    recycles_waiting: AtomicUsize,
    recycle_delay: Mutex<Duration>,

    break_on_return: AtomicBool,
    panic_has_broken: AtomicUsize,
    query_delay: Mutex<Duration>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            next_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            connects_started: AtomicUsize::new(0),
            connects_succeeded: AtomicUsize::new(0),
            connects_failed: AtomicUsize::new(0),
            recycles: AtomicUsize::new(0),
            recycles_failed: AtomicUsize::new(0),
            resets: AtomicUsize::new(0),
            has_broken_calls: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            peak_live: AtomicUsize::new(0),
            error_message: Mutex::new(DEFAULT_ERROR_MESSAGE.to_owned()),
            down: AtomicBool::new(false),
            panic_connects: AtomicUsize::new(0),
            fail_connects: AtomicUsize::new(0),
            connect_gate: Gate::new(),
            connect_hang: Gate::new(),
            connects_waiting: AtomicUsize::new(0),
            connect_delay: Mutex::new(Duration::ZERO),
            panic_recycles: AtomicUsize::new(0),
            fail_recycles: AtomicUsize::new(0),
            recycle_gate: Gate::new(),
            recycle_hang: Gate::new(),
            recycles_waiting: AtomicUsize::new(0),
            recycle_delay: Mutex::new(Duration::ZERO),
            break_on_return: AtomicBool::new(false),
            panic_has_broken: AtomicUsize::new(0),
            query_delay: Mutex::new(Duration::ZERO),
        }
    }

    fn connect_error(&self) -> MockError {
        self.connects_failed.fetch_add(1, Ordering::SeqCst);
        MockError::new(lock(&self.error_message).clone())
    }

    fn open(self: &Arc<Self>) -> MockConnection {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let server = Arc::new(ServerSide::default());
        lock(&self.connections).insert(id, Arc::clone(&server));
        let live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_live.fetch_max(live, Ordering::SeqCst);
        self.connects_succeeded.fetch_add(1, Ordering::SeqCst);
        MockConnection {
            id,
            dirty: false,
            server,
            shared: Arc::clone(self),
        }
    }
}

/// A [`Manager`] with scripted faults and counters; see the [module docs](self).
pub struct MockManager {
    control: MockControl,
}

impl MockManager {
    /// A manager for a fresh mock server with no faults scripted.
    pub fn new() -> Self {
        MockManager {
            control: MockControl {
                shared: Arc::new(Shared::new()),
            },
        }
    }

    /// The handle a test keeps to script faults and read counters after the manager
    /// has moved into a pool.
    pub fn control(&self) -> MockControl {
        self.control.clone()
    }
}

impl Default for MockManager {
    fn default() -> Self {
        MockManager::new()
    }
}

impl fmt::Debug for MockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockManager")
            .field("live", &self.control.live())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Manager for MockManager {
    type Connection = MockConnection;
    type Error = MockError;

    async fn connect(&self) -> Result<MockConnection, MockError> {
        let s = &self.control.shared;
        s.connects_started.fetch_add(1, Ordering::SeqCst);
        if take_one(&s.panic_connects) {
            panic!("mock: scripted panic in connect");
        }
        if s.down.load(Ordering::SeqCst) || take_one(&s.fail_connects) {
            return Err(s.connect_error());
        }
        s.connect_gate.pass(&s.connects_waiting).await;
        s.connect_hang.pass(&s.connects_waiting).await;
        delay(read(&s.connect_delay)).await;
        Ok(s.open())
    }

    async fn recycle(
        &self,
        conn: &mut MockConnection,
        info: &ConnectionInfo,
    ) -> Result<(), MockError> {
        let s = &self.control.shared;
        s.recycles.fetch_add(1, Ordering::SeqCst);
        if info.needs_reset() {
            s.resets.fetch_add(1, Ordering::SeqCst);
        }
        if take_one(&s.panic_recycles) {
            panic!("mock: scripted panic in recycle");
        }
        s.recycle_gate.pass(&s.recycles_waiting).await;
        s.recycle_hang.pass(&s.recycles_waiting).await;
        delay(read(&s.recycle_delay)).await;
        let error = if conn.fail_if_killed().is_err() {
            Some(KILLED_MESSAGE)
        } else if take_one(&s.fail_recycles) {
            Some(RECYCLE_FAILED_MESSAGE)
        } else {
            None
        };
        if let Some(message) = error {
            s.recycles_failed.fetch_add(1, Ordering::SeqCst);
            return Err(MockError::new(message));
        }
        if info.needs_reset() {
            conn.dirty = false;
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut MockConnection) -> bool {
        let s = &self.control.shared;
        s.has_broken_calls.fetch_add(1, Ordering::SeqCst);
        if take_one(&s.panic_has_broken) {
            panic!("mock: scripted panic in has_broken");
        }
        let noticed_kill = conn.is_killed() && !conn.server.unnoticed.load(Ordering::SeqCst);
        noticed_kill || s.break_on_return.load(Ordering::SeqCst)
    }

    fn target(&self) -> Option<String> {
        Some(MOCK_TARGET.to_owned())
    }

    fn return_state(&self, conn: &mut MockConnection) -> ReturnState {
        if conn.is_dirty() {
            ReturnState::Dirty
        } else {
            ReturnState::Clean
        }
    }
}

/// A connection to the mock server.
pub struct MockConnection {
    id: u64,
    dirty: bool,
    server: Arc<ServerSide>,
    shared: Arc<Shared>,
}

impl MockConnection {
    /// The server-side id: unique on its mock server, counting from 1.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A round trip: fails with [`KILLED_MESSAGE`] if the connection was killed
    /// server-side; takes [`MockControl::query_delay`].
    pub async fn query(&mut self) -> Result<(), MockError> {
        self.fail_if_killed()?;
        delay(read(&self.shared.query_delay)).await;
        self.fail_if_killed()
    }

    /// A round trip on a killed connection fails, and from then on the client knows
    /// (as a driver does once it reads the closed socket).
    fn fail_if_killed(&self) -> Result<(), MockError> {
        if self.is_killed() {
            self.server.unnoticed.store(false, Ordering::SeqCst);
            return Err(MockError::new(KILLED_MESSAGE));
        }
        Ok(())
    }

    /// Leaves session state behind (as an open transaction would): the manager reports
    /// the connection [`ReturnState::Dirty`] until a reset clears it.
    pub fn set_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether session state was left behind and not yet reset.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether the server killed this connection.
    pub fn is_killed(&self) -> bool {
        self.server.killed.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for MockConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConnection")
            .field("id", &self.id)
            .field("dirty", &self.dirty)
            .field("killed", &self.is_killed())
            .finish()
    }
}

impl Drop for MockConnection {
    fn drop(&mut self) {
        lock(&self.shared.connections).remove(&self.id);
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Scripts a mock server's faults and reads its counters; cheap to clone (all clones
/// and the managers made from them share one server).
#[derive(Clone)]
pub struct MockControl {
    shared: Arc<Shared>,
}

impl fmt::Debug for MockControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockControl")
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl MockControl {
    /// Another manager for the same mock server: same ids, faults and counters.
    pub fn manager(&self) -> MockManager {
        MockManager {
            control: self.clone(),
        }
    }

    // ----- connect -----

    /// The message of every scripted connect failure from now on.
    pub fn set_error_message(&self, message: impl Into<String>) {
        *lock(&self.shared.error_message) = message.into();
    }

    /// While `true`, every connect fails at once with the error message.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The next `n` connects fail with the error message (added to any still
    /// scripted).
    pub fn fail_next_connects(&self, n: usize) {
        self.shared.fail_connects.fetch_add(n, Ordering::SeqCst);
    }

    /// The next `n` connects panic.
    pub fn panic_next_connects(&self, n: usize) {
        self.shared.panic_connects.fetch_add(n, Ordering::SeqCst);
    }

    /// Connects wait from now on until [`resume_connects`](Self::resume_connects).
    pub fn pause_connects(&self) {
        self.shared.connect_gate.set_closed(true);
    }

    /// Lets paused connects go on.
    pub fn resume_connects(&self) {
        self.shared.connect_gate.set_closed(false);
    }

    /// While `true`, connects never complete (they are parked until set `false`).
    pub fn hang_connects(&self, hang: bool) {
        self.shared.connect_hang.set_closed(hang);
    }

    /// How many connects are parked by [`pause_connects`](Self::pause_connects) or
    /// [`hang_connects`](Self::hang_connects) now.
    pub fn connects_waiting(&self) -> usize {
        self.shared.connects_waiting.load(Ordering::SeqCst)
    }

    /// Each successful connect takes this long (a tokio sleep).
    pub fn connect_delay(&self, delay: Duration) {
        *lock(&self.shared.connect_delay) = delay;
    }

    // ----- recycle -----

    /// The next `n` recycles fail with [`RECYCLE_FAILED_MESSAGE`].
    pub fn fail_next_recycles(&self, n: usize) {
        self.shared.fail_recycles.fetch_add(n, Ordering::SeqCst);
    }

    /// The next `n` recycles panic.
    pub fn panic_next_recycles(&self, n: usize) {
        self.shared.panic_recycles.fetch_add(n, Ordering::SeqCst);
    }

    /// Recycles wait from now on until [`resume_recycles`](Self::resume_recycles).
    pub fn pause_recycles(&self) {
        self.shared.recycle_gate.set_closed(true);
    }

    /// Lets paused recycles go on.
    pub fn resume_recycles(&self) {
        self.shared.recycle_gate.set_closed(false);
    }

    /// While `true`, recycles never complete (they are parked until set `false`).
    pub fn hang_recycles(&self, hang: bool) {
        self.shared.recycle_hang.set_closed(hang);
    }

    /// How many recycles are parked by [`pause_recycles`](Self::pause_recycles) or
    /// [`hang_recycles`](Self::hang_recycles) now.
    pub fn recycles_waiting(&self) -> usize {
        self.shared.recycles_waiting.load(Ordering::SeqCst)
    }

    /// Each recycle takes this long (a tokio sleep).
    pub fn recycle_delay(&self, delay: Duration) {
        *lock(&self.shared.recycle_delay) = delay;
    }

    // ----- return -----

    /// While `true`, `has_broken` says every returned connection is broken.
    pub fn break_on_return(&self, broken: bool) {
        self.shared.break_on_return.store(broken, Ordering::SeqCst);
    }

    /// The next `n` calls of `has_broken` panic.
    pub fn panic_next_has_broken(&self, n: usize) {
        self.shared.panic_has_broken.fetch_add(n, Ordering::SeqCst);
    }

    // ----- connections -----

    /// Each [`MockConnection::query`] takes this long (a tokio sleep).
    pub fn query_delay(&self, delay: Duration) {
        *lock(&self.shared.query_delay) = delay;
    }

    /// Kills connection `id` server-side: its queries and recycles fail and
    /// `has_broken` says so. `false` if no live connection has that id.
    pub fn kill(&self, id: u64) -> bool {
        match lock(&self.shared.connections).get(&id) {
            Some(server) => {
                server.killed.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Kills connection `id` server-side without the client noticing: `has_broken`
    /// still says it is fine, but its queries and recycles fail (a socket the server
    /// closed that the driver has not read yet). `false` if no live connection has
    /// that id.
    pub fn kill_unnoticed(&self, id: u64) -> bool {
        match lock(&self.shared.connections).get(&id) {
            Some(server) => {
                server.unnoticed.store(true, Ordering::SeqCst);
                server.killed.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Kills every live connection server-side without the client noticing (see
    /// [`kill_unnoticed`](Self::kill_unnoticed)); returns how many.
    pub fn kill_all_unnoticed(&self) -> usize {
        let connections = lock(&self.shared.connections);
        for server in connections.values() {
            server.unnoticed.store(true, Ordering::SeqCst);
            server.killed.store(true, Ordering::SeqCst);
        }
        connections.len()
    }

    /// Kills every live connection server-side; returns how many.
    pub fn kill_all(&self) -> usize {
        let connections = lock(&self.shared.connections);
        for server in connections.values() {
            server.killed.store(true, Ordering::SeqCst);
        }
        connections.len()
    }

    /// The ids of the live connections, in ascending order.
    pub fn live_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = lock(&self.shared.connections).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    // ----- counters -----

    /// Connects begun (including those that failed, panicked or are still running).
    pub fn connects_started(&self) -> usize {
        self.shared.connects_started.load(Ordering::SeqCst)
    }

    /// Connects that returned a connection.
    pub fn connects_succeeded(&self) -> usize {
        self.shared.connects_succeeded.load(Ordering::SeqCst)
    }

    /// Connects that returned an error (not counting panics).
    pub fn connects_failed(&self) -> usize {
        self.shared.connects_failed.load(Ordering::SeqCst)
    }

    /// Recycles begun.
    pub fn recycles(&self) -> usize {
        self.shared.recycles.load(Ordering::SeqCst)
    }

    /// Recycles that returned an error (not counting panics).
    pub fn recycles_failed(&self) -> usize {
        self.shared.recycles_failed.load(Ordering::SeqCst)
    }

    /// Recycles asked to reset the session ([`ConnectionInfo::needs_reset`]).
    pub fn resets(&self) -> usize {
        self.shared.resets.load(Ordering::SeqCst)
    }

    /// Calls of `has_broken`.
    pub fn has_broken_calls(&self) -> usize {
        self.shared.has_broken_calls.load(Ordering::SeqCst)
    }

    /// Connections open now (made and not yet dropped).
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// The most connections open at once since the start or the last
    /// [`reset_peak`](Self::reset_peak).
    pub fn peak_live(&self) -> usize {
        self.shared.peak_live.load(Ordering::SeqCst)
    }

    /// Starts measuring the peak again from the connections open now.
    pub fn reset_peak(&self) {
        self.shared.peak_live.store(self.live(), Ordering::SeqCst);
    }
}

/// The conformance suite's [`Backend`](crate::conformance::Backend) on the mock: every
/// manager it makes shares one mock server, so kills and connection counts work as
/// they do against a real one. The restart case gets a second mock server of its own
/// ([`restartable_control`](Self::restartable_control)): stopping it kills every
/// connection without the clients noticing (as a server's shutdown does to sockets no
/// one has read yet) and refuses new connects; starting it lets connects through again.
#[derive(Clone, Debug)]
pub struct MockBackend {
    server: MockControl,
    restartable: MockControl,
}

impl MockBackend {
    /// A backend on a fresh mock server.
    pub fn new() -> Self {
        MockBackend {
            server: MockManager::new().control(),
            restartable: MockManager::new().control(),
        }
    }

    /// The mock server the backend's managers connect to.
    pub fn control(&self) -> MockControl {
        self.server.clone()
    }

    /// The separate mock server that the restart case stops and starts.
    pub fn restartable_control(&self) -> MockControl {
        self.restartable.clone()
    }
}

impl Default for MockBackend {
    fn default() -> Self {
        MockBackend::new()
    }
}

/// What a mock manager with wrong credentials fails with.
pub const WRONG_CREDENTIALS_MESSAGE: &str = "password authentication failed for user \"mock\"";

#[async_trait::async_trait]
impl crate::conformance::Backend for MockBackend {
    type Manager = MockManager;

    fn name(&self) -> &'static str {
        "mock"
    }

    fn wrong_credentials_message(&self) -> String {
        "password authentication failed".to_owned()
    }

    async fn manager(&self) -> MockManager {
        self.server.manager()
    }

    async fn manager_with_wrong_credentials(&self) -> MockManager {
        let manager = MockManager::new();
        let control = manager.control();
        control.set_error_message(WRONG_CREDENTIALS_MESSAGE);
        control.set_down(true);
        manager
    }

    async fn round_trip(&self, conn: &mut MockConnection) -> Result<(), String> {
        conn.query().await.map_err(|e| e.to_string())
    }

    async fn dirty_session(&self, conn: &mut MockConnection) -> Result<(), String> {
        conn.set_dirty();
        Ok(())
    }

    async fn is_clean(&self, conn: &mut MockConnection) -> Result<bool, String> {
        Ok(!conn.is_dirty())
    }

    async fn server_id(&self, conn: &mut MockConnection) -> Result<u64, String> {
        Ok(conn.id())
    }

    async fn kill(&self, server_id: u64) -> Result<(), String> {
        if self.server.kill(server_id) {
            Ok(())
        } else {
            Err(format!("no live mock connection with id {server_id}"))
        }
    }

    async fn server_connections(&self) -> Result<usize, String> {
        Ok(self.server.live())
    }

    async fn restartable_manager(&self) -> Result<MockManager, String> {
        Ok(self.restartable.manager())
    }

    async fn stop_restartable(&self) -> Result<(), String> {
        // Refuse first, so no connect slips in after the kills.
        self.restartable.set_down(true);
        self.restartable.kill_all_unnoticed();
        Ok(())
    }

    async fn start_restartable(&self) -> Result<(), String> {
        self.restartable.set_down(false);
        Ok(())
    }

    /// The network fault cases need a TCP server to put the fault proxy in front of;
    /// the mock has none. pool-core's own tests put the same faults to the pool with
    /// the mock's scripted faults instead.
    fn not_applicable(&self, case: &str) -> Option<String> {
        let covered_by = match case {
            "blackhole_during_connect_fails_with_the_connect_timeout" => {
                "core_timeouts.rs: connect_timeout_fires_and_frees_the_slot (hung connects)"
            }
            "blackhole_while_idle_times_out_due_checks_and_replaces_them" => {
                "core_timeouts.rs: recycle_timeout_fires_and_discards_the_connection (hung checks)"
            }
            "reset_of_every_connection_under_load_fails_only_their_users" => {
                "core_faults.rs: every_connection_killed_under_load_fails_only_their_users"
            }
            "latency_of_50ms_completes_every_operation_without_a_timeout" => {
                "core_timeouts.rs: slow_operations_within_their_timeouts_all_complete"
            }
            "refused_connects_back_off_and_recover_by_themselves" => {
                "core_timeouts.rs: backend_down_connects_back_off_and_recover"
            }
            _ => return None,
        };
        Some(format!(
            "no socket to put the fault proxy in front of; pool-testkit/tests/{covered_by}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Polls `fut` once with a no-op waker.
    fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn connects_count_and_ids_start_at_one() {
        let manager = MockManager::new();
        let control = manager.control();
        let a = manager.connect().await.unwrap();
        let b = manager.connect().await.unwrap();
        assert_eq!((a.id(), b.id()), (1, 2));
        assert_eq!(control.live(), 2);
        assert_eq!(control.live_ids(), vec![1, 2]);
        drop(a);
        assert_eq!(control.live(), 1);
        assert_eq!(control.peak_live(), 2);
        control.reset_peak();
        assert_eq!(control.peak_live(), 1);
        assert_eq!(control.connects_started(), 2);
        assert_eq!(control.connects_succeeded(), 2);
        drop(b);
    }

    #[tokio::test]
    async fn scripted_failures_and_down_flag() {
        let manager = MockManager::new();
        let control = manager.control();
        control.fail_next_connects(2);
        for _ in 0..2 {
            let err = manager.connect().await.unwrap_err();
            assert_eq!(err.to_string(), DEFAULT_ERROR_MESSAGE);
        }
        assert!(manager.connect().await.is_ok());

        control.set_error_message("boom");
        control.set_down(true);
        for _ in 0..3 {
            assert_eq!(manager.connect().await.unwrap_err().message(), "boom");
        }
        control.set_down(false);
        assert!(manager.connect().await.is_ok());
        assert_eq!(control.connects_failed(), 5);
        assert_eq!(control.connects_started(), 7);
        assert_eq!(control.connects_succeeded(), 2);
        assert_eq!(control.live(), 0, "connections were dropped");
    }

    #[test]
    fn paused_connects_wait_without_a_runtime() {
        let manager = MockManager::new();
        let control = manager.control();
        control.pause_connects();
        let mut connect = pin!(manager.connect());
        assert!(poll_once(connect.as_mut()).is_pending());
        assert_eq!(control.connects_waiting(), 1);
        control.resume_connects();
        let Poll::Ready(Ok(conn)) = poll_once(connect.as_mut()) else {
            panic!("connect did not finish after resume");
        };
        assert_eq!(control.connects_waiting(), 0);
        assert_eq!(conn.id(), 1);
    }

    #[test]
    fn a_cancelled_parked_connect_is_no_longer_counted() {
        let manager = MockManager::new();
        let control = manager.control();
        control.hang_connects(true);
        {
            let mut connect = pin!(manager.connect());
            assert!(poll_once(connect.as_mut()).is_pending());
            assert_eq!(control.connects_waiting(), 1);
        }
        assert_eq!(control.connects_waiting(), 0);
        assert_eq!(control.live(), 0);
    }

    #[test]
    #[should_panic(expected = "scripted panic in connect")]
    fn scripted_connect_panic() {
        let manager = MockManager::new();
        manager.control().panic_next_connects(1);
        let _ = poll_once(pin!(manager.connect()));
    }

    #[tokio::test]
    async fn killed_connections_fail_queries_and_look_broken() {
        let manager = MockManager::new();
        let control = manager.control();
        let mut a = manager.connect().await.unwrap();
        let mut b = manager.connect().await.unwrap();
        assert!(control.kill(a.id()));
        assert!(!control.kill(99));
        assert_eq!(a.query().await.unwrap_err().message(), KILLED_MESSAGE);
        assert!(b.query().await.is_ok());
        assert!(manager.has_broken(&mut a));
        assert!(!manager.has_broken(&mut b));
        control.break_on_return(true);
        assert!(manager.has_broken(&mut b));
        assert_eq!(control.has_broken_calls(), 3);
        assert_eq!(control.kill_all(), 2);
        assert!(b.is_killed());
    }

    #[tokio::test]
    async fn dirty_connections_say_so_on_return() {
        let manager = MockManager::new();
        let mut conn = manager.connect().await.unwrap();
        assert_eq!(manager.return_state(&mut conn), ReturnState::Clean);
        conn.set_dirty();
        assert!(conn.is_dirty());
        assert_eq!(manager.return_state(&mut conn), ReturnState::Dirty);
    }

    /// A pool that checks every checkout, so each `get` of an idle connection recycles.
    fn checking_pool(manager: MockManager) -> pool_core::Pool<MockManager> {
        pool_core::Pool::builder(manager)
            .max_size(1)
            .check_interval(Duration::ZERO)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_reset_recycle_clears_dirty() {
        let manager = MockManager::new();
        let control = manager.control();
        let pool = checking_pool(manager);
        let mut conn = pool.get().await.unwrap();
        conn.set_dirty();
        drop(conn);
        let conn = pool.get().await.unwrap();
        assert!(!conn.is_dirty());
        assert_eq!((control.recycles(), control.resets()), (1, 1));
        assert_eq!(conn.id(), 1, "reset, not replaced");
    }

    #[tokio::test]
    async fn failed_recycles_discard_the_connection() {
        let manager = MockManager::new();
        let control = manager.control();
        let pool = checking_pool(manager);
        drop(pool.get().await.unwrap());
        control.fail_next_recycles(1);
        let conn = pool.get().await.unwrap();
        assert_eq!(conn.id(), 2);
        assert_eq!(control.recycles_failed(), 1);
        drop(conn);

        assert!(control.kill_unnoticed(2));
        let conn = pool.get().await.unwrap();
        assert_eq!(conn.id(), 3, "the killed connection failed its recycle");
        assert_eq!(control.recycles_failed(), 2);
        assert_eq!(control.live(), 1);
        drop(conn);

        assert!(control.kill(3));
        let conn = pool.get().await.unwrap();
        assert_eq!(
            conn.id(),
            4,
            "a kill the client noticed is seen before any check"
        );
        assert_eq!(
            control.recycles_failed(),
            2,
            "no recycle was needed to see it"
        );
    }

    #[tokio::test]
    async fn paused_recycles_are_counted() {
        let manager = MockManager::new();
        let control = manager.control();
        let pool = checking_pool(manager);
        let Poll::Ready(Ok(conn)) = poll_once(pin!(pool.try_get())) else {
            panic!("first checkout did not complete at once");
        };
        drop(conn);
        control.pause_recycles();
        let mut get = pin!(pool.try_get());
        assert!(poll_once(get.as_mut()).is_pending());
        assert_eq!(control.recycles_waiting(), 1);
        control.resume_recycles();
        let Poll::Ready(Ok(conn)) = poll_once(get.as_mut()) else {
            panic!("checkout did not finish after resume");
        };
        assert_eq!(control.recycles_waiting(), 0);
        assert_eq!(conn.id(), 1);
    }
}

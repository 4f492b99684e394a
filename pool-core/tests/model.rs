//! Model check of pool-core's bookkeeping (checkout, return, cancellation, close, an
//! upkeep pass, `resize` below the pool's size and `retain`) over every interleaving of
//! a few tasks, with loom.
//!
//! Built only with `--cfg pool_model`, which swaps the pool's mutex and atomics for
//! loom's (`src/sync.rs`). `cargo xtask test` runs it in its own target directory;
//! alone:
//!
//! ```text
//! RUSTFLAGS="--cfg pool_model" CARGO_TARGET_DIR=target/model \
//!     cargo test -p pool-core --release --test model -- --nocapture --test-threads 1
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS=N` overrides each configuration's preemption bound.
//!
//! # Why loom and not shuttle
//! - The core synchronises with `std` only: one `Mutex<State>`, an `AtomicU64` for
//!   connection ids, and the `Waker`s parked callers leave in the wait queue. Nothing
//!   comes from `tokio::sync`, and timers are used only when a runtime is configured.
//!   So loom's restriction (it models only its own primitives) costs a seam of four
//!   re-exports, while shuttle-tokio's draw (driving tokio code) would buy nothing.
//! - loom is exhaustive: with partial-order reduction it runs every interleaving up to
//!   a preemption bound, so a pass proves the invariants for that configuration and
//!   bound. Shuttle samples schedules (random, PCT); a pass there is evidence, not
//!   proof, and its scalability is not needed for configurations this small.
//! - loom fails a run in which every thread is blocked. The model has no timers, so
//!   a waiter never served while a connection is free, or a `close` never told that
//!   the last connection left, blocks for ever: a lost wake-up is reported as a
//!   deadlock, on the schedule that causes it.
//! - Accepted costs: loom's `Arc` has no `Weak` (upkeep needs one), so `Arc` stays
//!   `std`'s (reference counts are not bookkeeping); and the model pool has no runtime,
//!   so timeouts are not modelled (pool-testkit tests them on tokio's paused clock).
//!
//! # Reading a failure
//! A broken invariant panics with its message, on the first schedule that breaks it.
//! A task blocked for ever shows as loom's `deadlock; threads = [...]`; when loom
//! notices it inside a task's `block_on`, unwinding from there panics again and the
//! test binary aborts (SIGABRT) right after printing it: still a failure.
//!
//! # Invariants checked, on every explored schedule
//! 1. **Never more than `max_size` connections**: when the manager creates a
//!    connection, the connections alive (created and not yet dropped) are at most
//!    the configured `max_size`; whenever a task holds a checkout, `status()` has
//!    `size` at most that and counts at least that checkout as in use; and once
//!    everything is back, `size` is within the pool's current `max_size` (lowered by a
//!    `Shrink`).
//! 2. **Every counted connection has exactly one owner** (idle list, checked-out
//!    `Pooled`, a `SlotGuard` opening it, or a waiter's grant): `in_use`
//!    (`size - idle - connecting`) never underflows (the run has overflow checks on), and
//!    once every task has finished or been cancelled nothing is in use, connecting
//!    or waiting, every counted connection is in the idle list, and the pool counts
//!    exactly the connections that are alive. A unit stranded with a cancelled owner
//!    (a grant nobody takes, a slot nobody frees) breaks one of these.
//! 3. **Close drains to zero**: `close` returns once every connection is gone (in
//!    this build it waits without a deadline, see `Pool::close`); then
//!    `size`, `idle`, `in_use`, `connecting` and `waiting` are 0, and every
//!    connection the manager created was dropped exactly once.
//! 4. **No lost waiter**: every `get` that is not cancelled finishes (the model has no
//!    timeouts, so a waiter passed over while a connection or room is free blocks
//!    for ever, which loom reports as a deadlock); and it finishes with a connection
//!    unless the configuration allows an error (`Closed` once close is in the
//!    script, the connect failure or `Unavailable` when connects fail).
//! 5. **FIFO hand-off** (the crate promises first come, first served): callers that
//!    joined the line in a known order are served in that order, and a caller that
//!    comes later cannot barge in and take a returned connection first
//!    ([`fifo_queue_order`], [`fifo_no_barging`]).
//!
//! # Bugs it was shown to catch
//! Each injected by hand into the core, one at a time, and caught (then removed):
//! skipping the slot release when a waiter holding room to connect is cancelled
//! (`two_slots_one_connect_at_a_time`), or when a connect is cancelled
//! (`one_slot_cancel_while_connecting`, deadlock); a hand-off that does not wake its
//! waiter (seven configurations, deadlock); `close` never woken by the last connection
//! (three, deadlock); a LIFO wait queue (both FIFO checks); a connection returned to
//! a closed pool parked instead of closed (three); freeing a closed connection's room
//! before dropping it (`one_slot_cancel_while_checking`: two alive, `max_size` 1);
//! and the real bug it found, fixed in `WaitTurn`'s drop
//! (`one_slot_close_with_waiter_and_cancel`).

#![cfg(pool_model)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use loom::future::block_on;
use pool_core::{ConnectionInfo, Manager, Pool, PoolError, ReturnState};

/// What a task does with the pool.
#[derive(Clone, Copy, Debug)]
enum Task {
    /// `get`, hold the connection while looking at the pool's counts, return it.
    Use,
    /// Poll a `get` this many times (without being woken), then drop it wherever it
    /// got to: in line, holding a grant, opening or checking a connection, or done.
    Cancel { polls: usize },
    /// `close`, which waits until every connection is gone.
    Close,
    /// One upkeep pass (with no runtime, upkeep makes one pass and ends): opens
    /// connections up to `min_idle` and resets idle connections returned dirty.
    Upkeep,
    /// `get`, then lose the connection without returning it (`mem::forget`): the
    /// bookkeeping error the checks must catch ([`the_checker_catches_a_lost_checkout`]).
    Forget,
    /// `resize` to one connection fewer than the configuration's `max_size`.
    Shrink,
    /// `retain`, keeping every idle connection or none.
    Retain { keep: bool },
}

/// One configuration to explore.
#[derive(Clone, Copy, Debug)]
struct Config {
    name: &'static str,
    max_size: usize,
    min_idle: usize,
    max_connecting: usize,
    /// `connect` and `recycle` return `Pending` once, so other tasks run (and a
    /// cancellation can land) while a connection is being opened or checked.
    slow_io: bool,
    /// How many connects fail before they start succeeding.
    failing_connects: usize,
    /// Every connection comes back dirty, so reusing it means a check first.
    dirty_returns: bool,
    tasks: &'static [Task],
    /// loom's preemption bound: the schedules explored are all those that switch
    /// threads at most this many times where a thread could have gone on.
    preemptions: usize,
}

const BASE: Config = Config {
    name: "",
    max_size: 1,
    min_idle: 0,
    max_connecting: 2,
    slow_io: false,
    failing_connects: 0,
    dirty_returns: false,
    tasks: &[],
    // At 2, `one_slot_close_with_waiter_and_cancel` runs 363 schedules and misses the
    // close-versus-cancel bug this check found; at 3 it fails within 0.2 s. All
    // configurations run in about 20 s at 3, and also pass at 4 (1.27 million
    // schedules, about 4 minutes).
    preemptions: 3,
};

// ---------------------------------------------------------------------------------
// A manager without I/O that counts what it creates and what gets dropped.

/// What the manager saw, shared with the connections it made. Plain `std` types: the
/// test's own accounting is not part of the model and never blocks.
struct Ledger {
    max_size: usize,
    created: AtomicUsize,
    dropped: AtomicUsize,
    /// How many times each connection (by creation index) was dropped.
    drops: Mutex<Vec<u32>>,
    failures_left: AtomicUsize,
}

impl Ledger {
    fn new(config: &Config) -> Arc<Self> {
        Arc::new(Ledger {
            max_size: config.max_size,
            created: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            drops: Mutex::new(Vec::new()),
            failures_left: AtomicUsize::new(config.failing_connects),
        })
    }

    fn alive(&self) -> usize {
        self.created.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }
}

struct Tracked {
    index: usize,
    ledger: Arc<Ledger>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut drops = self.ledger.drops.lock().unwrap();
        drops[self.index] += 1;
        assert_eq!(
            drops[self.index], 1,
            "connection {} dropped twice",
            self.index
        );
        self.ledger.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct ConnectRefused;

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused (scripted)")
    }
}

impl std::error::Error for ConnectRefused {}

struct Counting {
    ledger: Arc<Ledger>,
    slow_io: bool,
    dirty_returns: bool,
}

/// Returns `Pending` once (waking itself at once), then `Ready`: an I/O wait that the
/// scheduler may interleave other tasks into, or a cancellation may cut short.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[async_trait::async_trait]
impl Manager for Counting {
    type Connection = Tracked;
    type Error = ConnectRefused;

    async fn connect(&self) -> Result<Tracked, ConnectRefused> {
        if self.slow_io {
            YieldOnce(false).await;
        }
        let ledger = &self.ledger;
        let failing = ledger
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(ConnectRefused);
        }
        let index = ledger.created.fetch_add(1, Ordering::SeqCst);
        ledger.drops.lock().unwrap().push(0);
        let conn = Tracked {
            index,
            ledger: Arc::clone(ledger),
        };
        // Invariant 1: the server never sees more than max_size connections.
        assert!(
            ledger.alive() <= ledger.max_size,
            "{} connections alive, max_size {}",
            ledger.alive(),
            ledger.max_size
        );
        Ok(conn)
    }

    async fn recycle(
        &self,
        _conn: &mut Tracked,
        _info: &ConnectionInfo,
    ) -> Result<(), ConnectRefused> {
        if self.slow_io {
            YieldOnce(false).await;
        }
        Ok(())
    }

    fn return_state(&self, _conn: &mut Tracked) -> ReturnState {
        if self.dirty_returns {
            ReturnState::Dirty
        } else {
            ReturnState::Clean
        }
    }
}

// ---------------------------------------------------------------------------------
// Running one configuration.

fn build_pool(config: &Config, ledger: &Arc<Ledger>) -> Pool<Counting> {
    let far = Duration::from_secs(3600);
    Pool::builder(Counting {
        ledger: Arc::clone(ledger),
        slow_io: config.slow_io,
        dirty_returns: config.dirty_returns,
    })
    .name(config.name)
    .max_size(config.max_size)
    .min_idle(config.min_idle)
    .max_connecting(config.max_connecting)
    // No runtime, so no timers: nothing times out, and every wait ends by a hand-off.
    .runtime(None)
    .wait_timeout(None)
    .connect_timeout(None)
    .recycle_timeout(None)
    .max_lifetime(None)
    .idle_timeout(None)
    .check_interval(None)
    // A back-off longer than any run: after a failure the next attempt is never due,
    // so the schedule alone decides what happens.
    .connect_backoff(far)
    .connect_backoff_max(far)
    .build()
    .expect("the model's configuration is valid")
}

/// Whether a `get` may end in this error in this configuration (invariant 4).
fn allowed(config: &Config, error: &PoolError<ConnectRefused>) -> bool {
    let closes = config.tasks.iter().any(|t| matches!(t, Task::Close));
    match error {
        PoolError::Closed => closes,
        PoolError::Backend(ConnectRefused) | PoolError::Unavailable { .. } => {
            config.failing_connects > 0
        }
        _ => false,
    }
}

/// Invariants 1 and 2 while the caller holds one checkout.
fn check_while_held(config: &Config, pool: &Pool<Counting>) {
    let status = pool.status();
    // After a `Shrink` the pool may be above its new size until connections come back.
    assert!(status.size <= config.max_size, "{status}");
    assert!(
        status.in_use >= 1,
        "a held checkout is not counted: {status}"
    );
}

fn run_task(task: Task, config: &Config, pool: &Pool<Counting>) {
    match task {
        Task::Use => match block_on(pool.get()) {
            Ok(conn) => {
                check_while_held(config, pool);
                drop(conn);
            }
            Err(e) => assert!(allowed(config, &e), "get failed: {e}"),
        },
        Task::Cancel { polls } => {
            let mut get = std::pin::pin!(pool.get());
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..polls {
                if let Poll::Ready(result) = get.as_mut().poll(&mut cx) {
                    match result {
                        Ok(conn) => {
                            check_while_held(config, pool);
                            drop(conn);
                        }
                        Err(e) => assert!(allowed(config, &e), "get failed: {e}"),
                    }
                    return;
                }
            }
            // Dropped here: cancelled wherever it got to.
        }
        Task::Close => {
            block_on(pool.close(Duration::from_secs(3600))).expect("close waits for all");
        }
        Task::Upkeep => block_on(pool.upkeep()),
        Task::Forget => {
            if let Ok(conn) = block_on(pool.get()) {
                std::mem::forget(conn);
            }
        }
        Task::Shrink => pool
            .resize(config.max_size - 1)
            .expect("the model shrinks to a valid size"),
        Task::Retain { keep } => {
            pool.retain(|_, _| keep);
        }
    }
}

/// One execution of `config`: the tasks on their own threads, then the checks at rest.
fn run_once(config: &Config) {
    let ledger = Ledger::new(config);
    let pool = build_pool(config, &ledger);
    let config = *config;
    let threads: Vec<_> = config
        .tasks
        .iter()
        .map(|&task| {
            let pool = pool.clone();
            loom::thread::spawn(move || run_task(task, &config, &pool))
        })
        .collect();
    for thread in threads {
        thread.join().expect("a task panicked");
    }

    // Invariant 2: every task finished or was cancelled; whatever the pool counts is
    // idle and alive.
    let status = pool.status();
    assert_eq!(
        (status.in_use, status.connecting, status.waiting),
        (0, 0, 0),
        "nothing is in use, opening or waiting once all tasks are done: {status}"
    );
    assert_eq!(
        status.size,
        ledger.alive(),
        "the pool counts exactly the connections alive: {status}"
    );
    assert!(status.size <= config.max_size, "{status}");
    // Everything came back, so a pool resized below its size is back within it.
    assert!(
        status.size <= status.max_size,
        "above max_size with nothing out: {status}"
    );

    // Invariant 3.
    block_on(pool.close(Duration::from_secs(3600))).expect("nothing is out");
    let status = pool.status();
    assert_eq!(
        (
            status.size,
            status.idle,
            status.in_use,
            status.connecting,
            status.waiting
        ),
        (0, 0, 0, 0, 0),
        "a closed pool with nothing out counts nothing: {status}"
    );
    let drops = ledger.drops.lock().unwrap().clone();
    assert!(
        drops.iter().all(|&n| n == 1),
        "every connection dropped exactly once (drops by connection: {drops:?})"
    );
    assert_eq!(ledger.alive(), 0);
    drop(pool);
}

/// The bound to explore with: the configuration's, unless `LOOM_MAX_PREEMPTIONS` says.
fn builder(preemptions: usize) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(preemptions);
    builder
}

/// Explores every schedule of `config` within its preemption bound; prints how many.
fn explore(config: Config) {
    let explored = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&explored);
    let builder = builder(config.preemptions);
    let bound = builder.preemption_bound;
    let started = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        run_once(&config);
    });
    let explored = explored.load(Ordering::Relaxed);
    println!(
        "model {}: {explored} schedules explored (preemption bound {bound:?}) in {:.1?}",
        config.name,
        started.elapsed()
    );
    assert!(explored > 1, "loom explored more than one schedule");
}

// ---------------------------------------------------------------------------------
// The configurations.

/// Two callers share one connection; one gives up at its first await point (in line,
/// or holding a grant it has not taken yet).
#[test]
fn one_slot_use_and_cancel() {
    explore(Config {
        name: "one_slot_use_and_cancel",
        tasks: &[Task::Use, Task::Cancel { polls: 1 }, Task::Use],
        ..BASE
    });
}

/// Cancellation part-way through opening a connection: the slot it reserved must go
/// to the caller in line.
#[test]
fn one_slot_cancel_while_connecting() {
    explore(Config {
        name: "one_slot_cancel_while_connecting",
        slow_io: true,
        tasks: &[Task::Cancel { polls: 1 }, Task::Use, Task::Use],
        ..BASE
    });
}

/// Connections come back dirty, so the next checkout checks first; a caller cancelled
/// during that check must close the connection, and the caller in line opens a new
/// one only once the old one is gone (`max_size` holds for the server too).
#[test]
fn one_slot_cancel_while_checking() {
    explore(Config {
        name: "one_slot_cancel_while_checking",
        slow_io: true,
        dirty_returns: true,
        tasks: &[Task::Use, Task::Cancel { polls: 1 }, Task::Use],
        ..BASE
    });
}

/// Close while a caller holds the connection, one waits for it and one gives up.
///
/// Found a bug: a connection handed to a waiter just before `close`, whose `get` was
/// then dropped, went back to the idle list of the closed pool, so `close` waited for
/// it until its deadline and the connection stayed open until the pool was dropped.
/// `WaitTurn`'s drop now closes it (regression test in
/// pool-testkit/tests/core_close_race.rs).
#[test]
fn one_slot_close_with_waiter_and_cancel() {
    explore(Config {
        name: "one_slot_close_with_waiter_and_cancel",
        tasks: &[Task::Use, Task::Cancel { polls: 1 }, Task::Close],
        ..BASE
    });
}

/// Two slots, three callers (one cancelling after two polls), opening one at a time
/// (`max_connecting` 1), so a finished connect must let the next caller open.
#[test]
fn two_slots_one_connect_at_a_time() {
    explore(Config {
        name: "two_slots_one_connect_at_a_time",
        max_size: 2,
        max_connecting: 1,
        slow_io: true,
        tasks: &[Task::Use, Task::Use, Task::Cancel { polls: 2 }],
        ..BASE
    });
}

/// Two slots, two callers (one cancelled part-way through opening or waiting) and a
/// close racing them.
#[test]
fn two_slots_close_interleaved() {
    explore(Config {
        name: "two_slots_close_interleaved",
        max_size: 2,
        slow_io: true,
        tasks: &[Task::Use, Task::Cancel { polls: 2 }, Task::Close],
        ..BASE
    });
}

/// Upkeep opening `min_idle` while a caller takes a connection and the pool closes:
/// a connection opened after the close must be closed, not parked.
#[test]
fn two_slots_upkeep_and_close() {
    explore(Config {
        name: "two_slots_upkeep_and_close",
        max_size: 2,
        min_idle: 1,
        slow_io: true,
        tasks: &[Task::Upkeep, Task::Use, Task::Close],
        ..BASE
    });
}

/// A return parks its connection in the hand-back cell just as a caller joins the line
/// and an upkeep pass looks at the idle connections: the connection must reach the
/// caller. (Upkeep once drained the barred cell into the idle list, where nothing
/// handed it over: the caller waited for ever.)
#[test]
fn one_slot_upkeep_during_a_return_to_a_waiter() {
    explore(Config {
        name: "one_slot_upkeep_during_a_return_to_a_waiter",
        tasks: &[Task::Use, Task::Use, Task::Upkeep],
        ..BASE
    });
}

/// The pool shrinks below its size while both connections are in use and returns
/// race the hand-back cell: whatever comes back beyond the new size is closed.
#[test]
fn two_slots_shrink_while_in_use() {
    explore(Config {
        name: "two_slots_shrink_while_in_use",
        max_size: 2,
        tasks: &[Task::Use, Task::Use, Task::Shrink],
        ..BASE
    });
}

/// The pool shrinks while a caller waits for a connection and gives up holding it
/// (a grant it had not taken): the grant is closed, not kept above the new size.
#[test]
fn two_slots_shrink_with_a_cancelled_waiter() {
    explore(Config {
        name: "two_slots_shrink_with_a_cancelled_waiter",
        max_size: 2,
        tasks: &[
            Task::Use,
            Task::Use,
            Task::Cancel { polls: 1 },
            Task::Shrink,
        ],
        preemptions: 2,
        ..BASE
    });
}

/// `retain` takes the idle connections out and puts back those it keeps while a
/// return and a caller about to wait race it through the hand-back cell.
#[test]
fn one_slot_retain_during_a_return_to_a_waiter() {
    explore(Config {
        name: "one_slot_retain_during_a_return_to_a_waiter",
        tasks: &[Task::Use, Task::Use, Task::Retain { keep: true }],
        ..BASE
    });
}

/// `retain` closes every idle connection while callers use and return them.
#[test]
fn two_slots_retain_none_during_use() {
    explore(Config {
        name: "two_slots_retain_none_during_use",
        max_size: 2,
        tasks: &[Task::Use, Task::Use, Task::Retain { keep: false }],
        ..BASE
    });
}

/// Connections come back dirty, so reuse means a check (which can be cancelled, and
/// must then close the connection); upkeep resets idle dirty ones meanwhile.
#[test]
fn two_slots_dirty_returns_and_upkeep() {
    explore(Config {
        name: "two_slots_dirty_returns_and_upkeep",
        max_size: 2,
        min_idle: 1,
        slow_io: true,
        dirty_returns: true,
        tasks: &[Task::Use, Task::Cancel { polls: 2 }, Task::Upkeep],
        ..BASE
    });
}

/// The first connect fails: callers in line must get an error or a connection, never
/// be left waiting behind the back-off.
#[test]
fn one_slot_connect_failure() {
    explore(Config {
        name: "one_slot_connect_failure",
        failing_connects: 1,
        tasks: &[Task::Use, Task::Use, Task::Cancel { polls: 1 }],
        ..BASE
    });
}

/// Invariant 5, queue order: with the only connection held, A and B join the line in
/// that order; the connection comes back and must serve A, then B.
#[test]
fn fifo_queue_order() {
    explore_fifo("fifo_queue_order", &['A', 'B'], None);
}

/// Invariant 5, no barging: with the only connection held, A joins the line; the
/// connection comes back while C arrives. A must be served first: the returned
/// connection goes to the first in line, and C cannot take it on the way.
#[test]
fn fifo_no_barging() {
    explore_fifo("fifo_no_barging", &['A'], Some('C'));
}

/// The main thread holds the pool's only connection while the `queued` callers join
/// the line in order, then returns it while `arriving` (if any) calls `get`. Checks
/// that callers are served in the order `queued`, then `arriving`.
fn explore_fifo(name: &'static str, queued: &'static [char], arriving: Option<char>) {
    let explored = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&explored);
    let builder = builder(BASE.preemptions);
    let bound = builder.preemption_bound;
    let started = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let config = Config { name, ..BASE };
        let ledger = Ledger::new(&config);
        let pool = build_pool(&config, &ledger);
        let held = block_on(pool.get()).expect("the first get opens a connection");
        let served = Arc::new(Mutex::new(Vec::new()));
        // Takes a connection and records `name` while holding it: with one
        // connection, the order of the records is the order of service.
        let serve = |name: char| {
            let pool = pool.clone();
            let served = Arc::clone(&served);
            async move {
                let conn = pool.get().await.expect("a connection, in turn");
                served.lock().unwrap().push(name);
                drop(conn);
            }
        };

        let mut callers = Vec::new();
        for &name in queued {
            // Polled here, so it joins the line now, in order; finished on its own
            // thread.
            let mut get = Box::pin(serve(name));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(get.as_mut().poll(&mut cx).is_pending(), "{name} waits");
            callers.push(loom::thread::spawn(move || block_on(get)));
        }
        assert_eq!(pool.status().waiting, queued.len());
        if let Some(name) = arriving {
            let get = serve(name);
            callers.push(loom::thread::spawn(move || block_on(get)));
        }
        drop(held);
        for caller in callers {
            caller.join().expect("a caller panicked");
        }
        let expected: Vec<char> = queued.iter().copied().chain(arriving).collect();
        assert_eq!(*served.lock().unwrap(), expected, "served in order");
        assert_eq!(
            ledger.created.load(Ordering::SeqCst),
            1,
            "one connection reused"
        );
    });
    println!(
        "model {name}: {} schedules explored (preemption bound {bound:?}) in {:.1?}",
        explored.load(Ordering::Relaxed),
        started.elapsed()
    );
}

/// The checks are not vacuous: a task that loses its connection (what a core that
/// forgot to give back a unit would do) is caught as a connection counted in use that
/// nobody holds.
///
/// Two slots, so the other caller is served: with one, it would wait for ever, which
/// loom reports as a deadlock too, but from inside `block_on`, where its unwinding
/// panics again and aborts the test binary (still a failure, just not one a test can
/// catch).
#[test]
fn the_checker_catches_a_lost_checkout() {
    let config = Config {
        name: "the_checker_catches_a_lost_checkout",
        max_size: 2,
        tasks: &[Task::Forget, Task::Use],
        ..BASE
    };
    let this_test = std::thread::current().name().map(str::to_owned);
    let previous_hook = Arc::new(std::panic::take_hook());
    std::panic::set_hook(Box::new({
        let previous_hook = Arc::clone(&previous_hook);
        // The expected panic is not printed; any other thread's panics are.
        move |info| {
            if std::thread::current().name().map(str::to_owned) != this_test {
                previous_hook(info);
            }
        }
    }));
    let caught = std::panic::catch_unwind(|| {
        builder(BASE.preemptions).check(move || run_once(&config));
    });
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous_hook(info)));
    let payload = caught.expect_err("the lost checkout is caught");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(
        message.contains("nothing is in use"),
        "caught for the expected reason: {message}"
    );
    println!(
        "model {}: caught: {}",
        config.name,
        message.lines().next().unwrap_or("")
    );
}

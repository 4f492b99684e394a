//! Checkout + return with no I/O: `pool-core` against deadpool, bb8, qp (one-task
//! scenarios only) and a floor made of a `tokio::sync::Semaphore` plus a
//! `Mutex<Vec<_>>`.
//!
//! Every contender gets a no-op manager (connect returns a small struct at once, checks
//! do nothing) and a pool filled to its full size before anything is timed. In each
//! scenario the contenders run interleaved, `A B C, B C A, C A B, ...`, for several
//! rounds; each run is a fixed number of operations, sized per contender before the
//! first round so a run takes about [`TARGET_RUN`]. The tables give the median ns per
//! checkout + return, the spread over the rounds (min-max), and each contender's median
//! over `pool-core`'s.
//!
//! ```text
//! cargo bench -p pool-testkit --bench checkout                  # full run, ~1 minute
//! cargo bench -p pool-testkit --bench checkout -- --quick       # smoke run (or BENCH_QUICK=1)
//! cargo bench -p pool-testkit --bench checkout -- hold --only pool-core
//! ```
//!
//! Arguments: `--quick`; `--only NAME` (repeatable) to run only some contenders; any
//! other word selects the scenarios whose name contains it. The markdown tables are
//! also written to `target/bench/checkout.md`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime as TokioRuntime;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long one timed run of one contender should take in a full run.
const TARGET_RUN: Duration = Duration::from_millis(100);
/// Rounds in a full run; every contender is timed once per round.
const ROUNDS: usize = 9;
/// Rounds and operations per run in a quick run.
const QUICK_ROUNDS: usize = 2;
const QUICK_OPS: u64 = 2_000;
/// A contender whose slowest round is this much slower than its fastest is marked
/// noisy in the summary.
const NOISY_SPREAD: f64 = 1.25;
/// A run taking longer than this is reported as hung and the contender is dropped
/// from the scenario.
const FULL_LIMIT: Duration = Duration::from_secs(10);
const QUICK_LIMIT: Duration = Duration::from_secs(3);

/// The "connection" every pool hands out.
#[derive(Debug)]
struct Conn(u64);

// ---------------------------------------------------------------------------
// Contenders
// ---------------------------------------------------------------------------

/// A pool under test: a cheap handle that can be moved into tasks.
trait Contender: Clone + Send + Sync + 'static {
    type Guard<'a>: Deref<Target = Conn> + Send
    where
        Self: 'a;
    fn get(&self) -> impl Future<Output = Result<Self::Guard<'_>, String>> + Send;
}

// pool-core ------------------------------------------------------------------

struct CoreManager;

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
struct Core(pool_core::Pool<CoreManager>);

impl Core {
    async fn new(size: usize) -> Self {
        let pool = pool_core::Pool::builder(CoreManager)
            .max_size(size)
            .wait_timeout(None)
            .build()
            .expect("pool-core builds");
        let held: Vec<_> = {
            let mut held = Vec::with_capacity(size);
            for _ in 0..size {
                held.push(pool.get().await.expect("pool-core pre-warm"));
            }
            held
        };
        drop(held);
        let status = pool.status();
        assert_eq!(
            (status.size, status.idle),
            (size, size),
            "pool-core pre-warm"
        );
        Core(pool)
    }
}

impl Contender for Core {
    type Guard<'a> = pool_core::Pooled<CoreManager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.get().await.map_err(|e| e.to_string())
    }
}

// deadpool -------------------------------------------------------------------

struct DeadManager;

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
struct Dead(deadpool::managed::Pool<DeadManager>);

impl Dead {
    async fn new(size: usize) -> Self {
        // The default has no timeouts (and so needs no runtime).
        let pool = deadpool::managed::Pool::builder(DeadManager)
            .max_size(size)
            .build()
            .expect("deadpool builds");
        let mut held = Vec::with_capacity(size);
        for _ in 0..size {
            held.push(pool.get().await.expect("deadpool pre-warm"));
        }
        drop(held);
        let status = pool.status();
        assert_eq!(
            (status.size, status.available),
            (size, size),
            "deadpool pre-warm"
        );
        Dead(pool)
    }
}

impl Contender for Dead {
    type Guard<'a> = deadpool::managed::Object<DeadManager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.get().await.map_err(|e| format!("{e:?}"))
    }
}

// bb8 ------------------------------------------------------------------------

struct Bb8Manager;

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
struct Bb8(bb8::Pool<Bb8Manager>);

impl Bb8 {
    async fn new(size: usize) -> Self {
        // bb8 always bounds a get by `connection_timeout` (30 s by default): each get
        // sets up a tokio timeout. There is no way to switch it off.
        let pool = bb8::Pool::builder()
            .max_size(size as u32)
            .test_on_check_out(false)
            .build(Bb8Manager)
            .await
            .expect("bb8 builds");
        let mut held = Vec::with_capacity(size);
        for _ in 0..size {
            held.push(pool.get().await.expect("bb8 pre-warm"));
        }
        drop(held);
        let state = pool.state();
        assert_eq!(
            (state.connections, state.idle_connections),
            (size as u32, size as u32),
            "bb8 pre-warm"
        );
        Bb8(pool)
    }
}

impl Contender for Bb8 {
    type Guard<'a> = bb8::PooledConnection<'a, Bb8Manager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.get().await.map_err(|e| format!("{e:?}"))
    }
}

// qp -------------------------------------------------------------------------

struct QpManager;

#[qp::async_trait]
impl qp::resource::Manage for QpManager {
    type Output = Conn;
    type Error = Infallible;
    async fn try_create(&self) -> Result<Conn, Infallible> {
        Ok(Conn(0))
    }
}

#[derive(Clone)]
struct Qp(qp::Pool<QpManager>);

impl Qp {
    async fn new(size: usize) -> Self {
        let pool = qp::Pool::new(QpManager, size);
        pool.reserve(size).await.expect("qp pre-warm");
        assert_eq!(pool.size(), size, "qp pre-warm");
        Qp(pool)
    }
}

impl Contender for Qp {
    type Guard<'a> = qp::Pooled<'a, QpManager>;
    async fn get(&self) -> Result<Self::Guard<'_>, String> {
        self.0.acquire().await.map_err(|e| format!("{e:?}"))
    }
}

// floor: a semaphore and a locked Vec ------------------------------------------

/// The least a fair async pool must do: a FIFO semaphore for the waiting and a
/// locked stack for the connections.
#[derive(Clone)]
struct Floor(Arc<FloorInner>);

struct FloorInner {
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

struct FloorGuard<'a> {
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
            .expect("a permit guarantees an idle connection");
        Ok(FloorGuard {
            pool: &self.0,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

/// One of the contenders, built for a scenario.
enum Pool {
    Core(Core),
    Dead(Dead),
    Bb8(Bb8),
    Qp(Qp),
    Floor(Floor),
}

const CONTENDERS: [&str; 5] = ["pool-core", "deadpool", "bb8", "qp", "floor"];

impl Pool {
    async fn build(name: &str, size: usize) -> Pool {
        match name {
            "pool-core" => Pool::Core(Core::new(size).await),
            "deadpool" => Pool::Dead(Dead::new(size).await),
            "bb8" => Pool::Bb8(Bb8::new(size).await),
            "qp" => Pool::Qp(Qp::new(size).await),
            "floor" => Pool::Floor(Floor::new(size)),
            other => unreachable!("unknown contender {other}"),
        }
    }

    fn run(&self, rt: &TokioRuntime, work: Work) -> Outcome {
        match self {
            Pool::Core(p) => run(rt, p, work),
            Pool::Dead(p) => run(rt, p, work),
            Pool::Bb8(p) => run(rt, p, work),
            Pool::Qp(p) => run(rt, p, work),
            Pool::Floor(p) => run(rt, p, work),
        }
    }
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Work {
    tasks: usize,
    per_task: u64,
    hold: bool,
    limit: Duration,
}

enum Outcome {
    Done(Duration),
    Hung,
    Failed(String),
}

/// One task's loop: check out, optionally yield while holding, return.
async fn worker<C: Contender>(pool: C, ops: u64, hold: bool) -> Result<(), String> {
    for _ in 0..ops {
        let conn = pool.get().await?;
        black_box(conn.0);
        if hold {
            tokio::task::yield_now().await;
        }
        drop(black_box(conn));
    }
    Ok(())
}

/// Spawns `work.tasks` workers and times them from the first spawn to the last join.
fn run<C: Contender>(rt: &TokioRuntime, pool: &C, work: Work) -> Outcome {
    rt.block_on(async {
        let started = Instant::now();
        let handles: Vec<_> = (0..work.tasks)
            .map(|_| tokio::spawn(worker(pool.clone(), work.per_task, work.hold)))
            .collect();
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let joined = tokio::time::timeout(work.limit, async {
            for handle in handles {
                match handle.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(format!("task failed: {e}")),
                }
            }
            Ok(())
        })
        .await;
        let elapsed = started.elapsed();
        match joined {
            Ok(Ok(())) => Outcome::Done(elapsed),
            Ok(Err(e)) => {
                aborts.iter().for_each(|a| a.abort());
                Outcome::Failed(e)
            }
            Err(_) => {
                aborts.iter().for_each(|a| a.abort());
                Outcome::Hung
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    CurrentThread,
    TwoWorkers,
}

struct Scenario {
    name: &'static str,
    flavor: Flavor,
    tasks: usize,
    size: usize,
    hold: bool,
    /// qp deadlocks when tasks hold a connection across an await, so it only runs
    /// where one task does all the work.
    with_qp: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "1. one task, size 4, current_thread",
        flavor: Flavor::CurrentThread,
        tasks: 1,
        size: 4,
        hold: false,
        with_qp: true,
    },
    Scenario {
        name: "1. one task, size 4, 2 workers",
        flavor: Flavor::TwoWorkers,
        tasks: 1,
        size: 4,
        hold: false,
        with_qp: true,
    },
    Scenario {
        name: "2. release at once, 16 tasks, size 4",
        flavor: Flavor::TwoWorkers,
        tasks: 16,
        size: 4,
        hold: false,
        with_qp: false,
    },
    Scenario {
        name: "2. release at once, 16 tasks, size 16",
        flavor: Flavor::TwoWorkers,
        tasks: 16,
        size: 16,
        hold: false,
        with_qp: false,
    },
    Scenario {
        name: "2. release at once, 256 tasks, size 4",
        flavor: Flavor::TwoWorkers,
        tasks: 256,
        size: 4,
        hold: false,
        with_qp: false,
    },
    Scenario {
        name: "2. release at once, 256 tasks, size 16",
        flavor: Flavor::TwoWorkers,
        tasks: 256,
        size: 16,
        hold: false,
        with_qp: false,
    },
    Scenario {
        name: "3. hold across an await, 16 tasks, size 4",
        flavor: Flavor::TwoWorkers,
        tasks: 16,
        size: 4,
        hold: true,
        with_qp: false,
    },
    Scenario {
        name: "3. hold across an await, 256 tasks, size 4",
        flavor: Flavor::TwoWorkers,
        tasks: 256,
        size: 4,
        hold: true,
        with_qp: false,
    },
];

struct Options {
    quick: bool,
    only: Vec<String>,
    filters: Vec<String>,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            quick: std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1"),
            only: Vec::new(),
            filters: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--only" => options.only.extend(args.next()),
                // `cargo bench` passes `--bench`; ignore it and other flags.
                flag if flag.starts_with('-') => {}
                word => options.filters.push(word.to_owned()),
            }
        }
        options
    }

    fn rounds(&self) -> usize {
        if self.quick {
            QUICK_ROUNDS
        } else {
            ROUNDS
        }
    }

    fn limit(&self) -> Duration {
        if self.quick {
            QUICK_LIMIT
        } else {
            FULL_LIMIT
        }
    }
}

/// One contender's results in one scenario.
struct Entry {
    name: &'static str,
    total_ops: u64,
    ns_per_op: Vec<f64>,
    problem: Option<String>,
}

impl Entry {
    fn stats(&self) -> Option<(f64, f64, f64)> {
        if self.ns_per_op.is_empty() {
            return None;
        }
        let mut sorted = self.ns_per_op.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some((median, sorted[0], sorted[n - 1]))
    }
}

fn runtime(flavor: Flavor) -> TokioRuntime {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::TwoWorkers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    }
    .enable_all()
    .build()
    .expect("tokio runtime")
}

/// Picks the operations per task so one run takes about [`TARGET_RUN`]; the runs made
/// on the way warm the pool, the allocator and the caches.
fn calibrate(rt: &TokioRuntime, pool: &Pool, mut work: Work) -> Result<Work, String> {
    work.per_task = (256 / work.tasks as u64).max(1);
    loop {
        let elapsed = match pool.run(rt, work) {
            Outcome::Done(elapsed) => elapsed,
            Outcome::Hung => return Err(format!("hung (no progress in {:?})", work.limit)),
            Outcome::Failed(e) => return Err(format!("error: {e}")),
        };
        if elapsed >= TARGET_RUN / 8 {
            let scale = TARGET_RUN.as_secs_f64() / elapsed.as_secs_f64();
            work.per_task = ((work.per_task as f64 * scale).round() as u64).max(1);
            return Ok(work);
        }
        work.per_task *= 8;
    }
}

fn run_scenario(scenario: &Scenario, options: &Options) -> Vec<Entry> {
    let rt = runtime(scenario.flavor);
    let names: Vec<&'static str> = CONTENDERS
        .into_iter()
        .filter(|name| *name != "qp" || scenario.with_qp)
        .filter(|name| options.only.is_empty() || options.only.iter().any(|o| o == name))
        .collect();
    let pools: Vec<Pool> = names
        .iter()
        .map(|name| rt.block_on(Pool::build(name, scenario.size)))
        .collect();
    let base = Work {
        tasks: scenario.tasks,
        per_task: 0,
        hold: scenario.hold,
        limit: options.limit(),
    };
    let mut entries: Vec<Entry> = names
        .iter()
        .map(|name| Entry {
            name,
            total_ops: 0,
            ns_per_op: Vec::new(),
            problem: None,
        })
        .collect();
    let mut works: Vec<Work> = Vec::with_capacity(pools.len());
    for (pool, entry) in pools.iter().zip(&mut entries) {
        let work = if options.quick {
            let work = Work {
                per_task: QUICK_OPS.div_ceil(scenario.tasks as u64),
                ..base
            };
            // One warm-up run.
            match pool.run(&rt, work) {
                Outcome::Done(_) => Ok(work),
                Outcome::Hung => Err(format!("hung (no progress in {:?})", work.limit)),
                Outcome::Failed(e) => Err(format!("error: {e}")),
            }
        } else {
            calibrate(&rt, pool, base)
        };
        match work {
            Ok(work) => {
                entry.total_ops = work.per_task * work.tasks as u64;
                works.push(work);
            }
            Err(problem) => {
                eprintln!("  {}: {problem}", entry.name);
                entry.problem = Some(problem);
                works.push(base);
            }
        }
    }
    for round in 0..options.rounds() {
        for i in 0..pools.len() {
            let index = (round + i) % pools.len();
            let entry = &mut entries[index];
            if entry.problem.is_some() {
                continue;
            }
            let work = works[index];
            match pools[index].run(&rt, work) {
                Outcome::Done(elapsed) => {
                    let ns = elapsed.as_nanos() as f64 / entry.total_ops as f64;
                    entry.ns_per_op.push(ns);
                }
                Outcome::Hung => {
                    let problem = format!("hung in round {} (over {:?})", round + 1, work.limit);
                    eprintln!("  {}: {problem}", entry.name);
                    entry.problem = Some(problem);
                }
                Outcome::Failed(e) => {
                    let problem = format!("error in round {}: {e}", round + 1);
                    eprintln!("  {}: {problem}", entry.name);
                    entry.problem = Some(problem);
                }
            }
        }
    }
    drop(pools);
    // Tasks aborted after a hang are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(1));
    entries
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn format_ops(ops: u64) -> String {
    if ops >= 1_000_000 {
        format!("{:.1}M", ops as f64 / 1e6)
    } else if ops >= 1_000 {
        format!("{:.0}k", ops as f64 / 1e3)
    } else {
        ops.to_string()
    }
}

fn table(scenario: &Scenario, entries: &[Entry]) -> String {
    let core = entries
        .iter()
        .find(|e| e.name == "pool-core")
        .and_then(Entry::stats)
        .map(|(median, _, _)| median);
    let mut out = String::new();
    let _ = writeln!(out, "### {}\n", scenario.name);
    let _ = writeln!(
        out,
        "| contender | median ns/op | min-max ns/op | ops/run | vs pool-core |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for entry in entries {
        match (entry.stats(), &entry.problem) {
            (Some((median, min, max)), None) => {
                let ratio = match core {
                    Some(core) if entry.name != "pool-core" => {
                        format!("{}/pool-core = {:.2}x", entry.name, median / core)
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {:.1} | {:.1}-{:.1} | {} | {} |",
                    entry.name,
                    median,
                    min,
                    max,
                    format_ops(entry.total_ops),
                    ratio
                );
            }
            (_, problem) => {
                let problem = problem.as_deref().unwrap_or("no result");
                let _ = writeln!(out, "| {} | - | - | - | {problem} |", entry.name);
            }
        }
    }
    out
}

fn summary(results: &[(&Scenario, Vec<Entry>)]) -> String {
    let names: Vec<&str> = CONTENDERS
        .into_iter()
        .filter(|name| {
            results
                .iter()
                .any(|(_, entries)| entries.iter().any(|e| e.name == *name))
        })
        .collect();
    let mut out = String::from("### Summary: median ns/op (ratio to pool-core)\n\n| scenario |");
    for name in &names {
        let _ = write!(out, " {name} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(names.len()));
    out.push('\n');
    for (scenario, entries) in results {
        let core = entries
            .iter()
            .find(|e| e.name == "pool-core")
            .and_then(Entry::stats)
            .map(|s| s.0);
        let _ = write!(out, "| {} |", scenario.name);
        for name in &names {
            let cell = match entries.iter().find(|e| e.name == *name) {
                None => String::new(),
                Some(entry) => match (entry.stats(), &entry.problem, core) {
                    (_, Some(_), _) => "fails".to_owned(),
                    (Some((median, min, max)), None, core) => {
                        let noisy = if max > min * NOISY_SPREAD { "*" } else { "" };
                        match core {
                            Some(core) if *name != "pool-core" => {
                                format!("{median:.0}{noisy} ({:.2}x)", median / core)
                            }
                            _ => format!("{median:.0}{noisy}"),
                        }
                    }
                    (None, None, _) => String::new(),
                },
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\n`*`: the slowest round was over {:.0}% slower than the fastest: the cores were \
         busy with something else, or the scheduler split the tasks differently between \
         runs. Compare such cells with care.",
        (NOISY_SPREAD - 1.0) * 100.0
    );
    out
}

/// The 1-minute load average (Linux), so a reader can tell a busy machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `target/bench/checkout.md` in the target directory this binary was built into.
fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/<profile>/deps/checkout-<hash>
            let exe = std::env::current_exe().ok()?;
            exe.ancestors().nth(3).map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("bench").join("checkout.md")
}

fn main() {
    let options = Options::parse();
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut header = String::from("## Checkout + return, no I/O\n\n");
    let _ = writeln!(
        header,
        "{} rounds, contenders interleaved (rotating order), {}; {} cores, load average \
         at start {}.\n",
        options.rounds(),
        if options.quick {
            format!("quick run: {QUICK_OPS} ops per run")
        } else {
            format!("each run sized to about {TARGET_RUN:?}")
        },
        cores,
        load_average()
    );
    header.push_str(
        "No-op managers, pools pre-warmed to full size. pool-core: `wait_timeout(None)`, \
         other settings default; deadpool: defaults (no timeouts, no-op recycle on every \
         get); bb8: `test_on_check_out(false)`, its `connection_timeout` (30 s) always \
         wraps a get; qp: one-task scenarios only; floor: `tokio::sync::Semaphore` + \
         `Mutex<Vec<_>>`. Time per op = wall time of a run / ops in it, so in the \
         many-task scenarios it is the inverse of throughput.\n\n",
    );
    print!("{header}");
    let mut report = header;
    let mut results = Vec::new();
    for scenario in SCENARIOS {
        if !options.filters.is_empty()
            && !options
                .filters
                .iter()
                .any(|f| scenario.name.contains(f.as_str()))
        {
            continue;
        }
        let entries = run_scenario(scenario, &options);
        let table = table(scenario, &entries);
        println!("{table}");
        report.push_str(&table);
        report.push('\n');
        results.push((scenario, entries));
    }
    let summary = summary(&results);
    println!("{summary}");
    report.push_str(&summary);
    let _ = writeln!(report, "\nTotal time: {:.1?}", started.elapsed());
    println!("Total time: {:.1?}", started.elapsed());
    let path = report_path();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, report));
    match written {
        Ok(()) => println!("Report written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

//! Scenario 4: 10,000 tasks waiting on 16 connections.
//!
//! Memory: all 16 connections are held, then 10,000 tasks are spawned that each ask
//! for one; once every one of them has been polled and parked, the bytes allocated
//! and still live since before the first spawn (the counting global allocator, see
//! [`crate::alloc`]), divided by 10,000, are what one waiting task costs: its tokio
//! task (which holds the `get` future) and whatever the pool allocated for it. A
//! baseline row shows a tokio task parked on a `tokio::sync::Notify`, the least any
//! waiting task costs.
//!
//! The pool's own cost per waiter is that less the tokio task's allocation (measured by
//! spawning one such task, unpolled, on a runtime that never runs it): what the pool
//! allocated for the waiter, plus its `get` future, which lives inside the task.
//!
//! Fairness: then the 16 connections are released and every task loops, check out,
//! yield while holding, return, a few times. Each checkout's wait is recorded, the
//! first one from the moment the task started waiting. In steady state, by Little's
//! law, the mean wait is the same for any order of service: (tasks − connections) /
//! throughput, each task's fair share. A pool that serves in turn keeps every wait
//! near that; one that lets a returning task barge ahead of the queue serves some
//! tasks again and again while others wait for most of the run: its p99 is many times
//! the fair share.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::alloc::{Usage, Window};
use crate::contenders::{self, Contender, Pool, Visit};
use crate::measure::{self, Measurement, Outcome, Problem};
use crate::report::{self, Report, Table};
use crate::svg::{Axis, Figure, Legend, Panel, Series};
use crate::targets::{Target, Targets};
use crate::Options;

const WAITERS: usize = 10_000;
const SIZE: usize = 16;
const LOOPS: usize = 12;
const QUICK_LOOPS: usize = 3;
const ROUNDS: usize = 3;
const QUICK_ROUNDS: usize = 1;
const LIMIT: Duration = Duration::from_secs(20);
const QUICK_LIMIT: Duration = Duration::from_secs(5);
const BASELINE: &str = "tokio task on a Notify (no pool)";

/// Polls `future`, counting in `parked` the first time it is pending (its waker is
/// then registered with whatever it waits on).
async fn count_first_pending<F: Future>(future: F, parked: &AtomicUsize) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut counted = false;
    std::future::poll_fn(|cx| {
        let poll = future.as_mut().poll(cx);
        if poll.is_pending() && !counted {
            counted = true;
            parked.fetch_add(1, Ordering::SeqCst);
        }
        poll
    })
    .await
}

/// One waiting task's loop; its waits go to `waits[index * loops + k]`, in ns. The
/// first checkout waits from before the connections are released, so it records when
/// it got one, in ns since `base`: the caller subtracts the release.
async fn waiter<C: Contender>(
    pool: C,
    index: usize,
    loops: usize,
    base: Instant,
    parked: Arc<AtomicUsize>,
    waits: Arc<Vec<AtomicU64>>,
) -> Result<(), String> {
    for k in 0..loops {
        let asked = Instant::now();
        let conn = if k == 0 {
            count_first_pending(pool.get(), &parked).await?
        } else {
            pool.get().await?
        };
        let wait = if k == 0 {
            base.elapsed()
        } else {
            asked.elapsed()
        };
        waits[index * loops + k].store(wait.as_nanos() as u64, Ordering::Relaxed);
        tokio::task::yield_now().await;
        drop(conn);
    }
    Ok(())
}

/// Bytes tokio allocates to spawn a task running `future` (its task cell), measured
/// on a runtime that never runs it, so nothing the future would allocate is counted.
fn task_bytes<F>(future: impl Fn() -> F) -> usize
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let idle = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut bytes = 0;
    // The second spawn is counted: the first may set up the runtime's lists.
    for _ in 0..2 {
        let future = future();
        let window = Window::open();
        let handle = idle.spawn(future);
        bytes = window.close().allocated as usize;
        drop(handle);
    }
    bytes
}

/// What one round measured.
struct Round {
    parked: Usage,
    /// The tokio task of one waiter.
    task: usize,
    /// The `get` future's size (it lives inside the task).
    get_future: usize,
    /// Waits in ns of the counted checkouts.
    waits: Vec<f64>,
    /// (tasks − connections) / throughput, in ns.
    fair_share: f64,
}

/// Spawns the waiters inside an allocation window and waits until all are parked.
async fn park(
    waiters: usize,
    limit: Duration,
    parked: &Arc<AtomicUsize>,
    mut spawn: impl FnMut(usize) -> JoinHandle<Result<(), String>>,
) -> Result<(Usage, Vec<JoinHandle<Result<(), String>>>), Problem> {
    // Made before the window, so only the tasks and what they allocate are counted.
    let mut handles = Vec::with_capacity(waiters);
    let window = Window::open();
    for index in 0..waiters {
        handles.push(spawn(index));
    }
    let all_parked = measure::wait_until(limit, || parked.load(Ordering::SeqCst) == waiters).await;
    let usage = window.close();
    if all_parked {
        Ok((usage, handles))
    } else {
        let _ = measure::join_all(handles, Duration::ZERO).await;
        Err(Problem::Failed(format!(
            "only {} of {waiters} tasks parked within {limit:?}",
            parked.load(Ordering::SeqCst)
        )))
    }
}

struct ScaleRun<'a> {
    rt: &'a Runtime,
    loops: usize,
    limit: Duration,
}

impl Visit for ScaleRun<'_> {
    type Output = Outcome<Round>;
    fn visit<C: Contender>(self, pool: &C) -> Outcome<Round> {
        let (loops, limit) = (self.loops, self.limit);
        let task = {
            let parked = Arc::new(AtomicUsize::new(0));
            let waits = Arc::new(Vec::new());
            task_bytes(|| {
                let (parked, waits) = (Arc::clone(&parked), Arc::clone(&waits));
                waiter(pool.clone(), 0, loops, Instant::now(), parked, waits)
            })
        };
        let result = self.rt.block_on(async {
            let mut held = Vec::with_capacity(SIZE);
            for _ in 0..SIZE {
                held.push(pool.get().await.map_err(Problem::Failed)?);
            }
            let get_future = std::mem::size_of_val(&pool.get());
            let parked = Arc::new(AtomicUsize::new(0));
            let waits: Arc<Vec<AtomicU64>> =
                Arc::new((0..WAITERS * loops).map(|_| AtomicU64::new(0)).collect());
            let base = Instant::now();
            let (usage, handles) = park(WAITERS, limit, &parked, |index| {
                tokio::spawn(waiter(
                    pool.clone(),
                    index,
                    loops,
                    base,
                    Arc::clone(&parked),
                    Arc::clone(&waits),
                ))
            })
            .await?;
            let started = Instant::now();
            let released = started.duration_since(base).as_nanos() as u64;
            drop(held);
            measure::join_all(handles, limit).await.into_result()?;
            let elapsed = started.elapsed();
            let throughput = (WAITERS * loops) as f64 / elapsed.as_secs_f64();
            let waits: Vec<f64> = waits
                .iter()
                .enumerate()
                .map(|(slot, wait)| {
                    let wait = wait.load(Ordering::Relaxed);
                    let wait = if slot % loops == 0 {
                        wait.saturating_sub(released)
                    } else {
                        wait
                    };
                    wait as f64
                })
                .collect();
            Ok(Round {
                parked: usage,
                task,
                get_future,
                waits,
                fair_share: (WAITERS - SIZE) as f64 / throughput * 1e9,
            })
        });
        match result {
            Ok(round) => Outcome::Done(round),
            Err(Problem::TimedOut { limit }) => Outcome::TimedOut(limit),
            Err(problem) => Outcome::Failed(problem.cell()),
        }
    }
}

/// A baseline task: waits on a `Notify`, the least any waiting task costs.
async fn parked_on(notify: Arc<Notify>, parked: Arc<AtomicUsize>) -> Result<(), String> {
    count_first_pending(notify.notified(), &parked).await;
    Ok(())
}

/// The baseline: waiting tasks without a pool. Returns what they allocated and one
/// task's allocation.
fn baseline(rt: &Runtime, limit: Duration) -> Result<(Usage, usize), Problem> {
    let notify = Arc::new(Notify::new());
    let parked = Arc::new(AtomicUsize::new(0));
    let task = task_bytes(|| parked_on(Arc::clone(&notify), Arc::clone(&parked)));
    let usage = rt.block_on(async {
        let (usage, handles) = park(WAITERS, limit, &parked, |_| {
            tokio::spawn(parked_on(Arc::clone(&notify), Arc::clone(&parked)))
        })
        .await?;
        notify.notify_waiters();
        measure::join_all(handles, limit).await.into_result()?;
        Ok::<Usage, Problem>(usage)
    })?;
    Ok((usage, task))
}

struct Entry {
    name: &'static str,
    /// Live bytes per waiting task, one sample per round.
    result: Measurement,
    last: Option<Round>,
    /// Every counted wait of every round, in ns (sorted once all rounds ran).
    waits: Vec<f64>,
    /// Every counted wait over its own round's fair share (sorted once all rounds
    /// ran). The machine can run a round at twice the throughput of the next, and a
    /// wait is fair or not against the throughput it was measured at. A round without
    /// a fair share (no throughput measured) adds none.
    relative_waits: Vec<f64>,
    /// Per round, in ns.
    fair_share: Vec<f64>,
}

impl Entry {
    fn new(name: &'static str) -> Entry {
        Entry {
            name,
            result: Measurement::default(),
            last: None,
            waits: Vec::new(),
            relative_waits: Vec::new(),
            fair_share: Vec::new(),
        }
    }

    fn fair_share(&self) -> Option<f64> {
        measure::quantile(&measure::sorted(&self.fair_share), 0.5)
    }

    /// The quantile `q` of the waits, each over its round's fair share.
    fn wait_over_fair(&self, q: f64) -> Option<f64> {
        measure::quantile(&self.relative_waits, q)
    }

    /// Adds a round's waits.
    fn record(&mut self, round: &Round) {
        self.waits.extend(&round.waits);
        if round.fair_share > 0.0 {
            self.relative_waits
                .extend(round.waits.iter().map(|wait| wait / round.fair_share));
        }
        self.fair_share.push(round.fair_share);
    }
}

pub fn run(options: &Options, report: &mut Report, targets: &mut Targets) {
    let (loops, rounds, limit) = if options.quick {
        (QUICK_LOOPS, QUICK_ROUNDS, QUICK_LIMIT)
    } else {
        (LOOPS, ROUNDS, LIMIT)
    };
    report.heading(2, "4. Scale: 10,000 tasks waiting on 16 connections");
    let rt = measure::runtime(false);
    let names: Vec<&'static str> = contenders::NAMES
        .into_iter()
        .filter(|n| options.selects(n))
        .collect();
    let mut entries: Vec<Entry> = names.iter().map(|&n| Entry::new(n)).collect();
    let mut baseline_result = None;
    for round in 0..rounds {
        eprintln!("scale: round {}", round + 1);
        for index in measure::rotation(round, entries.len()) {
            let entry = &mut entries[index];
            if entry.result.is_stopped() {
                continue;
            }
            let pool = match rt.block_on(Pool::build(entry.name, SIZE)) {
                Ok(pool) => pool,
                Err(e) => {
                    entry.result.problem = Some(Problem::Failed(e));
                    continue;
                }
            };
            match pool
                .visit(ScaleRun {
                    rt: &rt,
                    loops,
                    limit,
                })
                .into_result()
            {
                Ok(round) => {
                    entry
                        .result
                        .samples
                        .push(round.parked.live as f64 / WAITERS as f64);
                    eprintln!(
                        "scale: {}: fair share {:.0} µs, p99 wait {:.0} µs",
                        entry.name,
                        round.fair_share / 1e3,
                        measure::quantile(&measure::sorted(&round.waits), 0.99).unwrap_or(0.0)
                            / 1e3,
                    );
                    entry.record(&round);
                    entry.last = Some(round);
                }
                Err(problem) => entry.result.problem = Some(problem),
            }
        }
        if baseline_result.is_none() {
            match baseline(&rt, limit) {
                Ok(result) => baseline_result = Some(result),
                Err(problem) => report.problem(format!("scale: baseline: {}", problem.cell())),
            }
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    for entry in &mut entries {
        entry.waits.sort_by(f64::total_cmp);
        entry.relative_waits.sort_by(f64::total_cmp);
        report.check("scale", entry.name, &entry.result);
    }

    report.text(&format!(
        "Memory: bytes allocated and still live once all {WAITERS} tasks wait for one of \
         the {SIZE} connections (all held elsewhere), per waiting task, median over \
         {rounds} round(s). That includes the tokio task, whose size is measured on its \
         own (it holds the `get` future and the benchmark loop's state); `pool heap` is \
         the rest, what the pool allocated per waiter; `pool's cost` adds the `get` \
         future, which lives inside the task. The baseline is a tokio task parked on a \
         `tokio::sync::Notify`, the least any waiting task costs. No-I/O contenders as \
         in scenario 1.\n\n"
    ));
    let mut table = Table::new(&[
        "contender",
        ">live B/waiter",
        ">tokio task B",
        ">get future B",
        ">pool heap B/waiter",
        ">pool's cost B/waiter",
        ">allocs/waiter",
        ">live vs pool-core",
    ]);
    let core_live = entries
        .iter()
        .find(|e| e.name == "pool-core")
        .and_then(|e| e.result.median());
    let per_waiter = |v: f64| v / WAITERS as f64;
    for entry in &entries {
        let (Some(live), Some(round)) = (entry.result.median(), &entry.last) else {
            let problem = entry.result.problem.as_ref();
            let mut row = vec![
                entry.name.to_owned(),
                problem.map_or_else(|| "no result".to_owned(), Problem::cell),
            ];
            row.resize(8, String::new());
            table.row(row);
            continue;
        };
        let heap = live - round.task as f64;
        // Not "-0" where the pool allocates nothing.
        let heap = if heap.abs() < 0.5 { 0.0 } else { heap };
        table.row(vec![
            entry.name.to_owned(),
            format!("{live:.0}"),
            round.task.to_string(),
            round.get_future.to_string(),
            format!("{heap:.0}"),
            format!("{:.0}", heap + round.get_future as f64),
            format!("{:.2}", per_waiter(round.parked.allocations as f64)),
            match core_live {
                Some(core) if entry.name != "pool-core" && core > 0.0 => report::ratio(live / core),
                _ => String::new(),
            },
        ]);
    }
    if let Some((usage, task)) = baseline_result {
        let live = per_waiter(usage.live as f64);
        let mut row = vec![
            BASELINE.to_owned(),
            format!("{live:.0}"),
            task.to_string(),
            String::new(),
            format!("{:.0}", (live - task as f64).max(0.0)),
            String::new(),
            format!("{:.2}", per_waiter(usage.allocations as f64)),
        ];
        row.resize(8, String::new());
        table.row(row);
    }
    report.table(&table);

    report.text(&format!(
        "Fairness: then every task loops {loops} times (check out, `yield_now` while \
         holding, return), recording each checkout's wait (the first from when the task \
         began waiting). Fair share = (tasks − connections) / throughput, the mean wait \
         under any order of service; percentiles over every checkout of every round. \
         `fair share` is the median of the rounds'; the `÷ fair` columns and the chart \
         divide each wait by its own round's fair share, since the machine may run one \
         round at twice the throughput of another.\n\n"
    ));
    let mut table = Table::new(&[
        "contender",
        ">fair share µs",
        ">p50 wait µs",
        ">p99 wait µs",
        ">max wait µs",
        ">p99 ÷ fair",
        ">max ÷ fair",
    ]);
    let us = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{:.0}", v / 1e3));
    let times = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.2}"));
    for entry in &entries {
        if let Some(problem) = &entry.result.problem {
            let mut row = vec![entry.name.to_owned(), problem.cell()];
            row.resize(7, String::new());
            table.row(row);
            continue;
        }
        table.row(vec![
            entry.name.to_owned(),
            us(entry.fair_share()),
            us(measure::quantile(&entry.waits, 0.5)),
            us(measure::quantile(&entry.waits, 0.99)),
            us(entry.waits.last().copied()),
            times(entry.wait_over_fair(0.99)),
            times(entry.wait_over_fair(1.0)),
        ]);
    }
    report.table(&table);

    let series = entries
        .iter()
        .filter(|e| e.result.problem.is_none() && !e.waits.is_empty())
        .map(|e| Series {
            name: e.name.to_owned(),
            points: (0..=100)
                .map(|p| (f64::from(p), e.wait_over_fair(f64::from(p) / 100.0)))
                .collect(),
            bold: e.name == "pool-core",
            dashed: e.name == "floor",
        })
        .collect();
    let figure = Figure {
        title: format!(
            "4. Scale: how evenly {WAITERS} tasks waiting on {SIZE} connections are served"
        ),
        note: "Each checkout's wait divided by its round's fair share ((tasks − \
               connections) / throughput), by percentile of all checkouts. A pool that serves in turn \
               stays near 1 (its first checkouts, while the queue forms, lie below); one \
               that lets returning tasks barge ahead sits near 0 for most checkouts and \
               climbs far above 1 at the end. Lower at the right end is fairer."
            .to_owned(),
        columns: 1,
        legend: Legend::Shared,
        panels: vec![Panel {
            title: format!("{WAITERS} tasks, {SIZE} connections, {loops} checkouts each"),
            x_label: "percentile of checkouts".to_owned(),
            y_label: "wait ÷ fair share".to_owned(),
            x_axis: Axis::Linear,
            x_ticks: Some((0..=10).map(|t| f64::from(t) * 10.0).collect()),
            y_axis: Axis::Linear,
            series,
            reference: Some((2.0, "2× fair share".to_owned())),
        }],
    };
    report.chart(
        "scale.svg",
        "wait over fair share by percentile",
        figure.to_svg(),
    );

    if let Some(entry) = entries.iter().find(|e| e.name == "pool-core") {
        let cost = entry
            .result
            .median()
            .zip(entry.last.as_ref())
            .map(|(live, round)| (live, live - round.task as f64 + round.get_future as f64));
        targets.push(Target::new(
            "scale",
            "pool-core < 200 bytes per waiting task (the pool's cost: heap + get future)",
            cost.map_or_else(
                || "no result".to_owned(),
                |(live, cost)| format!("{cost:.0} B ({live:.0} B with the tokio task)"),
            ),
            cost.map(|(_, cost)| cost < 200.0),
        ));
        let ratio = entry.wait_over_fair(0.99);
        targets.push(Target::new(
            "scale",
            "pool-core p99 wait within 2× the fair share",
            ratio.map_or_else(
                || "no result".to_owned(),
                |r| format!("{r:.2}× the fair share"),
            ),
            ratio.map(|r| r <= 2.0),
        ));
    }
}

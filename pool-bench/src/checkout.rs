//! Scenario 1: checkout + return with no I/O, for pool sizes 4, 16 and 64 and 1, 16,
//! 256 and 1024 concurrent tasks on a tokio multi-thread runtime, in two modes:
//!
//! - release at once: no await while holding, so at most one checkout per worker
//!   thread is out at a time: the fast path and cross-core contention;
//! - hold across an await (`yield_now` while holding): the pool runs dry, so the
//!   waiter path and the hand-off are measured.
//!
//! Plus one task on a current-thread runtime, where qp's lock-free single poll shows
//! what a fast path can reach.
//!
//! In each configuration the contenders run interleaved in rotating order for several
//! rounds; each run is a fixed number of operations, sized per contender before the
//! first round so that a run takes about [`TARGET_RUN`]. A run that makes no progress
//! within the limit is reported as deadlocked/timed out (qp, in hold mode) and that
//! contender is dropped from the configuration.

use std::hint::black_box;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::contenders::{self, Contender, Pool, Visit};
use crate::measure::{self, Measurement, Outcome, Problem, Ratio};
use crate::report::{self, Report, Table};
use crate::svg::{Axis, Figure, Legend, Panel, Series};
use crate::targets::{Met, Target, Targets};
use crate::Options;

/// How long one timed run of one contender takes in a full run.
const TARGET_RUN: Duration = Duration::from_millis(80);
const ROUNDS: usize = 7;
/// Rounds on a current-thread runtime: runs there are one configuration each, cheap
/// enough to run more rounds, and the one-task comparison with qp is judged on the
/// rounds' ratios, whose interval narrows with more rounds (15 leave out the three
/// lowest and highest ratios, 7 none).
const CURRENT_THREAD_ROUNDS: usize = 15;
const QUICK_ROUNDS: usize = 2;

/// Rounds per configuration, on a current-thread runtime or not.
fn rounds(options: &Options, current_thread: bool) -> usize {
    match (options.quick, current_thread) {
        (true, _) => QUICK_ROUNDS,
        (false, true) => CURRENT_THREAD_ROUNDS,
        (false, false) => ROUNDS,
    }
}
/// Operations per run in a quick run.
const QUICK_OPS: u64 = 2_000;
/// A run taking longer than this has deadlocked (a full run lasts [`TARGET_RUN`]).
const LIMIT: Duration = Duration::from_secs(3);
const QUICK_LIMIT: Duration = Duration::from_secs(2);

const SIZES: [usize; 3] = [4, 16, 64];
const TASKS: [usize; 4] = [1, 16, 256, 1024];
const QUICK_SIZES: [usize; 2] = [4, 64];
const QUICK_TASKS: [usize; 3] = [1, 16, 256];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    ReleaseAtOnce,
    Hold,
}

impl Mode {
    fn title(self) -> &'static str {
        match self {
            Mode::ReleaseAtOnce => "release at once",
            Mode::Hold => "hold across an await",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    mode: Mode,
    size: usize,
    tasks: usize,
    current_thread: bool,
}

struct Entry {
    name: &'static str,
    ops_per_run: u64,
    result: Measurement,
}

#[derive(Clone, Copy)]
struct Work {
    tasks: usize,
    per_task: u64,
    hold: bool,
    limit: Duration,
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

/// Times `work` on a contender.
struct TimedRun<'a> {
    rt: &'a Runtime,
    work: Work,
}

impl Visit for TimedRun<'_> {
    type Output = Outcome<Duration>;
    fn visit<C: Contender>(self, pool: &C) -> Outcome<Duration> {
        let work = self.work;
        self.rt.block_on(async {
            let run = measure::run_tasks(work.tasks, work.limit, |_| {
                worker(pool.clone(), work.per_task, work.hold)
            });
            match run.await {
                Outcome::Done((elapsed, _)) => Outcome::Done(elapsed),
                Outcome::TimedOut(limit) => Outcome::TimedOut(limit),
                Outcome::Failed(e) => Outcome::Failed(e),
            }
        })
    }
}

/// Picks the operations per task so one run takes about [`TARGET_RUN`]; the runs made
/// on the way warm the pool, the allocator and the caches.
fn calibrate(rt: &Runtime, pool: &Pool, mut work: Work) -> Result<Work, Problem> {
    work.per_task = (256 / work.tasks as u64).max(1);
    loop {
        let elapsed = pool.visit(TimedRun { rt, work }).into_result()?;
        if elapsed >= TARGET_RUN / 8 {
            let scale = TARGET_RUN.as_secs_f64() / elapsed.as_secs_f64();
            work.per_task = ((work.per_task as f64 * scale).round() as u64).max(1);
            return Ok(work);
        }
        work.per_task *= 8;
    }
}

fn run_config(config: Config, options: &Options) -> Vec<Entry> {
    let rt = measure::runtime(config.current_thread);
    let names: Vec<&'static str> = contenders::NAMES
        .into_iter()
        .filter(|name| options.selects(name))
        .collect();
    let base = Work {
        tasks: config.tasks,
        per_task: 0,
        hold: config.mode == Mode::Hold,
        limit: if options.quick { QUICK_LIMIT } else { LIMIT },
    };
    let mut pools: Vec<Option<Pool>> = Vec::new();
    let mut works: Vec<Work> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for name in names {
        let mut entry = Entry {
            name,
            ops_per_run: 0,
            result: Measurement::default(),
        };
        let pool = match rt.block_on(Pool::build(name, config.size)) {
            Ok(pool) => Some(pool),
            Err(e) => {
                entry.result.problem = Some(Problem::Failed(e));
                None
            }
        };
        let work = match &pool {
            None => base,
            Some(pool) if options.quick => {
                let work = Work {
                    per_task: QUICK_OPS.div_ceil(config.tasks as u64),
                    ..base
                };
                // One warm-up run.
                match pool.visit(TimedRun { rt: &rt, work }).into_result() {
                    Ok(_) => work,
                    Err(problem) => {
                        entry.result.problem = Some(problem);
                        work
                    }
                }
            }
            Some(pool) => calibrate(&rt, pool, base).unwrap_or_else(|problem| {
                entry.result.problem = Some(problem);
                base
            }),
        };
        entry.ops_per_run = work.per_task * work.tasks as u64;
        pools.push(pool);
        works.push(work);
        entries.push(entry);
    }
    for round in 0..rounds(options, config.current_thread) {
        for index in measure::rotation(round, entries.len()) {
            let entry = &mut entries[index];
            let Some(pool) = &pools[index] else { continue };
            if entry.result.is_stopped() {
                continue;
            }
            let work = works[index];
            match pool.visit(TimedRun { rt: &rt, work }).into_result() {
                Ok(elapsed) => entry
                    .result
                    .samples
                    .push(elapsed.as_nanos() as f64 / entry.ops_per_run as f64),
                Err(problem) => entry.result.problem = Some(problem),
            }
        }
    }
    drop(pools);
    // Tasks aborted after a time-out go with the runtime.
    rt.shutdown_timeout(Duration::from_secs(1));
    entries
}

fn cell(entry: &Entry, core: Option<f64>) -> String {
    match (&entry.result.problem, entry.result.samples.median()) {
        (Some(problem), _) => problem.cell(),
        (None, None) => "no result".to_owned(),
        (None, Some(median)) => {
            let spread = report::spread(entry.result.samples.spread());
            match core {
                Some(core) if entry.name != "pool-core" => {
                    format!(
                        "{} {spread} ({})",
                        report::ns(median),
                        report::ratio(median / core)
                    )
                }
                _ => format!("{} {spread}", report::ns(median)),
            }
        }
    }
}

fn core_median(entries: &[Entry]) -> Option<f64> {
    entries
        .iter()
        .find(|e| e.name == "pool-core")
        .and_then(|e| e.result.median())
}

fn median_of(entries: &[Entry], name: &str) -> Option<f64> {
    entries
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.result.median())
}

/// Runs the scenario and adds its tables, chart and targets to the report.
pub fn run(options: &Options, report: &mut Report, targets: &mut Targets) {
    let (sizes, tasks): (&[usize], &[usize]) = if options.quick {
        (&QUICK_SIZES, &QUICK_TASKS)
    } else {
        (&SIZES, &TASKS)
    };
    report.heading(2, "1. Checkout + return, no I/O");
    report.text(&format!(
        "Median ns per checkout + return over {} rounds (contenders interleaved in \
         rotating order, each run sized to about {:?}{}), `±` half the interquartile \
         range of the rounds in % of the median, and in brackets the contender's median \
         divided by pool-core's (above 1× pool-core is faster). Tokio multi-thread \
         runtime with {} workers unless said otherwise. Time per op = wall time of a \
         run / ops in it, so with many tasks it is the inverse of throughput. A run \
         without progress within {:?} counts as deadlocked. On a current-thread \
         runtime (1.3, 1.4), {} rounds.\n\n{}\n\n",
        rounds(options, false),
        TARGET_RUN,
        if options.quick {
            format!("; quick run: {QUICK_OPS} ops per run")
        } else {
            String::new()
        },
        measure::worker_threads(),
        if options.quick { QUICK_LIMIT } else { LIMIT },
        rounds(options, true),
        contenders::SETTINGS,
    ));

    let mut results: Vec<(Config, Vec<Entry>)> = Vec::new();
    for mode in [Mode::ReleaseAtOnce, Mode::Hold] {
        for &size in sizes {
            for &tasks in tasks {
                let config = Config {
                    mode,
                    size,
                    tasks,
                    current_thread: false,
                };
                eprintln!("checkout: {}, size {size}, {tasks} tasks", mode.title());
                results.push((config, run_config(config, options)));
            }
        }
    }
    let one_thread = Config {
        mode: Mode::ReleaseAtOnce,
        size: 4,
        tasks: 1,
        current_thread: true,
    };
    eprintln!("checkout: one task on a current-thread runtime");
    let one_thread_entries = run_config(one_thread, options);
    let hold_one_thread = Config {
        mode: Mode::Hold,
        size: 4,
        tasks: 16,
        current_thread: true,
    };
    eprintln!(
        "checkout: {}, size {}, {} tasks on a current-thread runtime",
        hold_one_thread.mode.title(),
        hold_one_thread.size,
        hold_one_thread.tasks
    );
    let hold_one_thread_entries = run_config(hold_one_thread, options);

    for (config, entries) in &results {
        for entry in entries {
            let scenario = format!(
                "checkout, {}, size {}, {} tasks",
                config.mode.title(),
                config.size,
                config.tasks
            );
            report.check(&scenario, entry.name, &entry.result);
        }
    }
    for entry in &one_thread_entries {
        report.check(
            "checkout, one task, current thread",
            entry.name,
            &entry.result,
        );
    }
    for entry in &hold_one_thread_entries {
        report.check(
            "checkout, hold across an await, size 4, 16 tasks, current thread",
            entry.name,
            &entry.result,
        );
    }
    let names: Vec<&'static str> = results
        .first()
        .map(|(_, entries)| entries.iter().map(|e| e.name).collect())
        .unwrap_or_default();
    for mode in [Mode::ReleaseAtOnce, Mode::Hold] {
        report.heading(3, &format!("1.{} {}", mode as usize + 1, mode.title()));
        let mut headers = vec![">pool size".to_owned(), ">tasks".to_owned()];
        headers.extend(names.iter().map(|n| format!(">{n}")));
        let mut table = Table::new(&headers);
        for (config, entries) in results.iter().filter(|(c, _)| c.mode == mode) {
            let core = core_median(entries);
            let mut row = vec![config.size.to_string(), config.tasks.to_string()];
            row.extend(entries.iter().map(|e| cell(e, core)));
            table.row(row);
        }
        report.table(&table);
    }

    report.heading(3, "1.3 one task, current-thread runtime, pool size 4");
    one_thread_table(report, &one_thread_entries);
    report.heading(
        3,
        "1.4 hold across an await on a current-thread runtime, pool size 4, 16 tasks",
    );
    report.text(
        "The pool running dry as in 1.2, on one thread: no cache line moves between \
         cores, so this table shows what each contender's waiting path costs in work \
         alone, and its difference from 1.2 what two cores sharing the pool's state \
         cost.\n\n",
    );
    one_thread_table(report, &hold_one_thread_entries);

    chart(report, &results, sizes, tasks);
    check_targets(targets, &results, &one_thread_entries);
}

/// The table of a configuration on a current-thread runtime: one row per contender.
fn one_thread_table(report: &mut Report, entries: &[Entry]) {
    let mut table = Table::new(&[
        "contender",
        ">median ns/op",
        ">min-max",
        ">ops/run",
        ">vs pool-core",
    ]);
    let core = core_median(entries);
    for entry in entries {
        let samples = &entry.result.samples;
        match (
            &entry.result.problem,
            samples.median(),
            samples.min(),
            samples.max(),
        ) {
            (None, Some(median), Some(min), Some(max)) => table.row(vec![
                entry.name.to_owned(),
                report::ns(median),
                format!("{}-{}", report::ns(min), report::ns(max)),
                report::count(entry.ops_per_run as f64),
                core.map_or_else(String::new, |core| report::ratio(median / core)),
            ]),
            (problem, ..) => table.row(vec![
                entry.name.to_owned(),
                problem
                    .as_ref()
                    .map_or("no result".to_owned(), Problem::cell),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
    }
    report.table(&table);
}

fn chart(report: &mut Report, results: &[(Config, Vec<Entry>)], sizes: &[usize], tasks: &[usize]) {
    let mut panels = Vec::new();
    for mode in [Mode::ReleaseAtOnce, Mode::Hold] {
        for &size in sizes {
            let configs: Vec<&(Config, Vec<Entry>)> = results
                .iter()
                .filter(|(c, _)| c.mode == mode && c.size == size)
                .collect();
            let names: Vec<&str> = configs
                .first()
                .map(|(_, e)| e.iter().map(|e| e.name).collect())
                .unwrap_or_default();
            let series = names
                .iter()
                .map(|&name| Series {
                    name: name.to_owned(),
                    points: configs
                        .iter()
                        .map(|(config, entries)| (config.tasks as f64, median_of(entries, name)))
                        .collect(),
                    bold: name == "pool-core",
                    dashed: name == "floor",
                })
                .collect();
            panels.push(Panel {
                title: format!("{}, pool size {size}", mode.title()),
                x_label: "concurrent tasks".to_owned(),
                y_label: "ns per checkout + return".to_owned(),
                x_axis: Axis::Log2,
                x_ticks: Some(tasks.iter().map(|&t| t as f64).collect()),
                y_axis: Axis::Log10,
                series,
                reference: None,
            });
        }
    }
    let figure = Figure {
        title: "1. Checkout + return, no I/O (lower is better)".to_owned(),
        note: format!(
            "Median ns per operation against concurrent tasks, tokio multi-thread runtime \
             with {} workers. Top row: release at once; bottom row: hold across an await. \
             × on the top edge: no result there (deadlocked or timed out).",
            measure::worker_threads()
        ),
        columns: sizes.len(),
        legend: Legend::Shared,
        panels,
    };
    report.chart(
        "checkout.svg",
        "ns per checkout + return against concurrent tasks",
        figure.to_svg(),
    );
}

fn check_targets(targets: &mut Targets, results: &[(Config, Vec<Entry>)], one_thread: &[Entry]) {
    // Worst ratio over the configurations `select` picks: pool-core over the faster of
    // deadpool and bb8, and pool-core over the floor (or qp).
    let worst = |select: &dyn Fn(&Config) -> bool, other: &dyn Fn(&[Entry]) -> Option<f64>| {
        results
            .iter()
            .filter(|(c, _)| select(c))
            .filter_map(|(c, entries)| {
                let core = core_median(entries)?;
                Some((core / other(entries)?, *c))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let peers = |entries: &[Entry]| {
        let dead = median_of(entries, "deadpool");
        let bb8 = median_of(entries, "bb8");
        match (dead, bb8) {
            (Some(d), Some(b)) => Some(d.min(b)),
            (d, b) => d.or(b),
        }
    };
    let floor = |entries: &[Entry]| median_of(entries, "floor");
    let describe = |found: Option<(f64, Config)>, goal: f64, strict: bool| match found {
        None => ("no result".to_owned(), None),
        Some((ratio, c)) => (
            format!(
                "{} at worst (size {}, {} tasks)",
                report::ratio(ratio),
                c.size,
                c.tasks
            ),
            Some(if strict { ratio < goal } else { ratio <= goal }),
        ),
    };

    // The checkout itself: with one task holding across an await, each operation is
    // mostly the `yield_now` (about 500 ns here for every contender), which no pool can
    // halve. The one-task figures (deadpool ≈ 230, bb8 ≈ 220) are these.
    let one_task = |c: &Config| c.tasks == 1 && c.mode == Mode::ReleaseAtOnce;
    let (measured, met) = describe(worst(&one_task, &peers), 0.5, false);
    targets.push(Target::new(
        "checkout, one task",
        "pool-core ≤ 0.5× the faster of deadpool and bb8",
        measured,
        met,
    ));
    // Both near 50 ns, where a round's noise is larger than their difference: judged
    // on the rounds' ratios and their interval.
    let result_of = |name: &str| {
        one_thread
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.result)
    };
    let compared = result_of("pool-core")
        .zip(result_of("qp"))
        .and_then(|(core, qp)| Some((Ratio::paired(core, qp)?, core.median()?, qp.median()?)));
    let (measured, met): (String, Met) = match compared {
        Some((ratio, core, qp)) => (
            format!(
                "{} ({} vs {} ns, current-thread runtime)",
                ratio.describe(),
                report::ns(core),
                report::ns(qp)
            ),
            ratio.against(1.0, true).into(),
        ),
        None => ("no result".to_owned(), Met::Unknown),
    };
    targets.push(Target::new(
        "checkout, one task",
        "pool-core no slower than qp",
        measured,
        met,
    ));

    let release_many = |c: &Config| c.mode == Mode::ReleaseAtOnce && c.tasks >= 16;
    let (measured, met) = describe(worst(&release_many, &peers), 0.75, false);
    targets.push(Target::new(
        "checkout, release at once, many tasks",
        "pool-core ≤ 0.75× the faster peer",
        measured,
        met,
    ));
    let (measured, met) = describe(worst(&release_many, &floor), 1.0, true);
    targets.push(Target::new(
        "checkout, release at once, many tasks",
        "pool-core below the floor",
        measured,
        met,
    ));

    let hold_dry = |c: &Config| c.mode == Mode::Hold && c.size == 4 && c.tasks > 4;
    let (measured, met) = describe(worst(&hold_dry, &peers), 0.75, false);
    targets.push(Target::new(
        "checkout, hold across an await, pool 4 running dry",
        "pool-core ≤ 0.75× the faster peer",
        measured,
        met,
    ));
    let (measured, met) = describe(worst(&hold_dry, &floor), 1.0, true);
    targets.push(Target::new(
        "checkout, hold across an await, pool 4 running dry",
        "pool-core below the floor",
        measured,
        met,
    ));
}

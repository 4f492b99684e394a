//! Scenario 2: end to end, per backend: a trivial query through the pool (`SELECT 1`
//! by simple query on PostgreSQL, `SELECT 1` on MySQL/MariaDB, `PING` on Redis) at
//! concurrency 1, 16 and 64 with pool size 16, on the local servers
//! (`pool_testkit::servers`: the URL from the environment, else the default local port,
//! else a throwaway server).
//!
//! Contenders per backend: our driver with its default config, the pools a user would
//! pick instead (each with its defaults, and where a default costs a round trip per
//! checkout, also without it), and a floor without a pool: at concurrency N ≤ 16, N
//! tasks each owning one direct connection.
//!
//! Each run builds the pool, opens all 16 connections, runs a short warm-up, then
//! counts the queries all tasks complete in a fixed time, and closes the pool; so at
//! most one contender's connections are open at a time (the servers are shared). The
//! contenders run interleaved in rotating order for several rounds.

mod mysql;
mod postgres;
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::measure::{self, Measurement, Problem, Ratio, Verdict};
use crate::report::{self, Report, Table};
use crate::svg::{Axis, Legend, Panel, Series};
use crate::targets::{Target, Targets};
use crate::Options;

pub use mysql::BACKEND as MYSQL;
pub use postgres::BACKEND as POSTGRES;
pub use redis::BACKEND as REDIS;

/// Connections in every pool.
pub const POOL_SIZE: usize = 16;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
const RUN: Duration = Duration::from_millis(300);
const QUICK_RUN: Duration = Duration::from_millis(40);
const ROUNDS: usize = 11;
const QUICK_ROUNDS: usize = 1;
/// Bound on building a pool and opening its connections, and on closing it.
const SETUP_LIMIT: Duration = Duration::from_secs(30);
/// How long past its end a run may take before it counts as hung.
const RUN_GRACE: Duration = Duration::from_secs(10);

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One task's handle on a contender: a clone of the pool, or its own connection.
#[async_trait::async_trait]
pub trait Worker: Send + 'static {
    /// Checks out a connection, runs the query, returns the connection.
    async fn query(&mut self) -> Result<(), String>;
}

/// A contender ready to run: one worker per task, and how to close it afterwards.
pub struct Setup {
    pub workers: Vec<Box<dyn Worker>>,
    pub close: BoxFuture<()>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Ours,
    /// Ours with a setting other than the default, shown beside it; held to no target.
    OursVariant,
    Pool,
    /// No pool: one direct connection per task.
    Floor,
}

pub struct Contender {
    pub name: &'static str,
    /// How it is configured, for the report.
    pub settings: &'static str,
    pub kind: Kind,
    /// Builds it for `tasks` tasks against the server at the URL.
    pub setup: fn(url: String, tasks: usize) -> BoxFuture<Result<Setup, String>>,
}

pub struct Backend {
    /// The word that selects it on the command line.
    pub key: &'static str,
    pub title: &'static str,
    pub query: &'static str,
    /// Said under the heading: which peers are missing and why.
    pub note: &'static str,
    pub server: fn() -> Result<pool_testkit::servers::Server, pool_testkit::servers::ServerError>,
    /// The URL the contenders use, from the server's (names the application).
    pub url: fn(&str) -> String,
    pub contenders: fn() -> Vec<Contender>,
}

/// Opens `count` connections at once by holding `count` checkouts, then returns them.
pub async fn fill<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    count: usize,
    mut get: impl FnMut() -> F,
) -> Result<(), String> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(
            get()
                .await
                .map_err(|e| format!("opening the pool's connections: {e}"))?,
        );
    }
    Ok(())
}

/// Runs every worker in its own task until `duration` has passed; returns the time
/// until the last one stopped, the queries done and the workers.
async fn drive(
    workers: Vec<Box<dyn Worker>>,
    duration: Duration,
) -> Result<(Duration, u64, Vec<Box<dyn Worker>>), Problem> {
    let deadline = Instant::now() + duration;
    let mut workers: Vec<Option<Box<dyn Worker>>> = workers.into_iter().map(Some).collect();
    let run = measure::run_tasks(workers.len(), duration + RUN_GRACE, |i| {
        let mut worker = workers[i].take().expect("one task per worker");
        async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                worker.query().await?;
                done += 1;
            }
            Ok((done, worker))
        }
    });
    let (elapsed, results) = run.await.into_result()?;
    let queries = results.iter().map(|(done, _)| done).sum();
    Ok((
        elapsed,
        queries,
        results.into_iter().map(|(_, w)| w).collect(),
    ))
}

/// One timed run of one contender: queries per second.
async fn one_run(
    contender: &Contender,
    url: &str,
    tasks: usize,
    duration: Duration,
) -> Result<f64, Problem> {
    let setup =
        match tokio::time::timeout(SETUP_LIMIT, (contender.setup)(url.to_owned(), tasks)).await {
            Ok(Ok(setup)) => setup,
            Ok(Err(e)) => return Err(Problem::Failed(e)),
            Err(_) => return Err(Problem::TimedOut { limit: SETUP_LIMIT }),
        };
    let (_, _, workers) = drive(setup.workers, duration / 5).await?;
    let (elapsed, queries, workers) = drive(workers, duration).await?;
    drop(workers);
    if tokio::time::timeout(SETUP_LIMIT, setup.close)
        .await
        .is_err()
    {
        return Err(Problem::TimedOut { limit: SETUP_LIMIT });
    }
    if queries == 0 {
        return Err(Problem::Failed("no query completed".to_owned()));
    }
    Ok(queries as f64 / elapsed.as_secs_f64())
}

/// One backend's results: per concurrency, per contender.
struct BackendResults {
    contenders: Vec<Contender>,
    /// `[concurrency][contender]`.
    results: Vec<Vec<Measurement>>,
}

fn run_backend(backend: &Backend, url: &str, options: &Options) -> BackendResults {
    let contenders: Vec<Contender> = (backend.contenders)()
        .into_iter()
        .filter(|c| options.selects(c.name))
        .collect();
    let mut results: Vec<Vec<Measurement>> = CONCURRENCY
        .iter()
        .map(|&tasks| {
            contenders
                .iter()
                .map(|c| {
                    if c.kind == Kind::Floor && tasks > POOL_SIZE {
                        Measurement::not_run("more tasks than connections")
                    } else {
                        Measurement::default()
                    }
                })
                .collect()
        })
        .collect();
    let rt = measure::runtime(false);
    let (rounds, duration) = if options.quick {
        (QUICK_ROUNDS, QUICK_RUN)
    } else {
        (ROUNDS, RUN)
    };
    for round in 0..rounds {
        for (c, &tasks) in CONCURRENCY.iter().enumerate() {
            eprintln!(
                "end to end: {}, round {}, {tasks} tasks",
                backend.title,
                round + 1
            );
            for index in measure::rotation(round, contenders.len()) {
                let result = &mut results[c][index];
                if result.is_stopped() {
                    continue;
                }
                match rt.block_on(one_run(&contenders[index], url, tasks, duration)) {
                    Ok(qps) => result.samples.push(qps),
                    Err(problem) => result.problem = Some(problem),
                }
            }
        }
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    BackendResults {
        contenders,
        results,
    }
}

impl BackendResults {
    fn median(&self, c: usize, index: usize) -> Option<f64> {
        self.results[c][index].median()
    }

    fn ours(&self) -> Option<usize> {
        self.contenders.iter().position(|c| c.kind == Kind::Ours)
    }

    /// The floor's measurement for concurrency index `c`: at the same concurrency, or
    /// above the pool size at the pool size (its 16 connections are the ceiling).
    fn floor(&self, c: usize) -> Option<&Measurement> {
        let floor = self.contenders.iter().position(|c| c.kind == Kind::Floor)?;
        let c = if CONCURRENCY[c] > POOL_SIZE {
            CONCURRENCY.iter().position(|&t| t == POOL_SIZE)?
        } else {
            c
        };
        Some(&self.results[c][floor])
    }

    /// Contender `index`'s throughput over the floor's at concurrency index `c`, round
    /// by round.
    fn over_floor(&self, c: usize, index: usize) -> Option<Ratio> {
        Ratio::paired(&self.results[c][index], self.floor(c)?)
    }

    /// Contender `index`'s throughput over contender `other`'s at concurrency index
    /// `c`, round by round.
    fn ratio(&self, c: usize, index: usize, other: usize) -> Option<Ratio> {
        Ratio::paired(&self.results[c][index], &self.results[c][other])
    }
}

/// Runs the scenario for the selected backends; adds tables, one chart with a panel
/// per backend, and the targets.
pub fn run(backends: &[&Backend], options: &Options, report: &mut Report, targets: &mut Targets) {
    report.heading(2, "2. End to end");
    report.text(&format!(
        "Queries per second through the pool, pool size {POOL_SIZE}, median of {} rounds \
         of {:?} each (contenders interleaved in rotating order; `±` half the \
         interquartile range in % of the median). `vs floor`: this contender's throughput over the \
         no-pool floor's at the same concurrency (at 64 tasks, over the floor's at 16: \
         16 connections are the ceiling). `ours ÷ this`: our driver's throughput over \
         this contender's (above 1× ours is faster). Both ratios are the median of the \
         rounds' ratios, each between two runs seconds apart, so that a slow stretch of \
         the machine weighs on both sides of a ratio.\n\n",
        if options.quick { QUICK_ROUNDS } else { ROUNDS },
        if options.quick { QUICK_RUN } else { RUN },
    ));
    let mut panels = Vec::new();
    for backend in backends {
        report.heading(
            3,
            &format!(
                "2.{} {}: {}",
                backend.key_index(),
                backend.title,
                backend.query
            ),
        );
        let server = match (backend.server)() {
            Ok(server) => server,
            Err(e) => {
                report.text(&format!(
                    "Not measured: no {} server: {e}\n\n",
                    backend.title
                ));
                report.problem(format!("end to end: no {} server: {e}", backend.title));
                continue;
            }
        };
        if !backend.note.is_empty() {
            report.text(&format!("{}\n\n", backend.note));
        }
        let url = (backend.url)(server.url());
        let results = run_backend(backend, &url, options);
        drop(server);
        table(report, &results);
        panels.push(panel(backend, &results));
        check_targets(targets, backend, &results);
        for (c, &tasks) in CONCURRENCY.iter().enumerate() {
            for (index, contender) in results.contenders.iter().enumerate() {
                report.check(
                    &format!("end to end, {}, {tasks} tasks", backend.title),
                    contender.name,
                    &results.results[c][index],
                );
            }
        }
    }
    if !panels.is_empty() {
        let figure = crate::svg::Figure {
            title: "2. End to end: wall time per query through the pool (lower is better)"
                .to_owned(),
            note: format!(
                "ns per query = 1 / throughput, against concurrent tasks; pool size \
                 {POOL_SIZE}. The no-pool floor (dashed) runs only up to {POOL_SIZE} tasks. \
                 × on the top edge: no result there."
            ),
            columns: panels.len().min(3),
            legend: Legend::PerPanel,
            panels,
        };
        report.chart(
            "end_to_end.svg",
            "ns per query against concurrent tasks, per backend",
            figure.to_svg(),
        );
    }
}

impl Backend {
    fn key_index(&self) -> usize {
        match self.key {
            "postgres" => 1,
            "mysql" => 2,
            _ => 3,
        }
    }
}

fn table(report: &mut Report, results: &BackendResults) {
    let mut settings = String::new();
    for contender in &results.contenders {
        settings.push_str(&format!("- {}: {}\n", contender.name, contender.settings));
    }
    report.text(&format!("{settings}\n"));
    let mut table = Table::new(&[
        ">tasks",
        "contender",
        ">queries/s",
        ">spread",
        ">µs/query",
        ">vs floor",
        ">ours ÷ this",
    ]);
    let ours = results.ours();
    for (c, &tasks) in CONCURRENCY.iter().enumerate() {
        for (index, contender) in results.contenders.iter().enumerate() {
            let measurement = &results.results[c][index];
            let row = match (measurement.median(), &measurement.problem) {
                (Some(qps), _) => vec![
                    tasks.to_string(),
                    contender.name.to_owned(),
                    report::count(qps),
                    report::spread(measurement.samples.spread()),
                    format!("{:.1}", 1e6 / qps),
                    results
                        .over_floor(c, index)
                        .map_or_else(String::new, |r| report::ratio(r.median)),
                    match ours {
                        Some(ours) if contender.kind != Kind::Ours => results
                            .ratio(c, ours, index)
                            .map_or_else(String::new, |r| report::ratio(r.median)),
                        _ => String::new(),
                    },
                ],
                (None, problem) => vec![
                    tasks.to_string(),
                    contender.name.to_owned(),
                    problem
                        .as_ref()
                        .map_or_else(|| "no result".to_owned(), Problem::cell),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            };
            table.row(row);
        }
    }
    report.table(&table);
}

fn panel(backend: &Backend, results: &BackendResults) -> Panel {
    let series = results
        .contenders
        .iter()
        .enumerate()
        .map(|(index, contender)| Series {
            name: contender.name.to_owned(),
            points: CONCURRENCY
                .iter()
                .enumerate()
                .filter(|(c, _)| {
                    !matches!(results.results[*c][index].problem, Some(Problem::NotRun(_)))
                })
                .map(|(c, &tasks)| (tasks as f64, results.median(c, index).map(|qps| 1e9 / qps)))
                .collect(),
            bold: contender.kind == Kind::Ours,
            dashed: contender.kind == Kind::Floor,
        })
        .collect();
    Panel {
        title: format!("{}: {}", backend.title, backend.query.replace('`', "")),
        x_label: "concurrent tasks".to_owned(),
        y_label: "ns per query".to_owned(),
        x_axis: Axis::Log2,
        x_ticks: Some(CONCURRENCY.iter().map(|&t| t as f64).collect()),
        y_axis: Axis::Log10,
        series,
        reference: None,
    }
}

fn check_targets(targets: &mut Targets, backend: &Backend, results: &BackendResults) {
    let Some(ours) = results.ours() else { return };
    let name = results.contenders[ours].name;
    let scenario = format!("end to end, {}", backend.title);
    // At concurrency ≤ pool size: ≥ 0.97 × the floor.
    let over_floor: Vec<(Ratio, usize)> = CONCURRENCY
        .iter()
        .enumerate()
        .filter(|(_, &tasks)| tasks <= POOL_SIZE)
        .filter_map(|(c, &tasks)| Some((results.over_floor(c, ours)?, tasks)))
        .collect();
    targets.push(judge(
        &scenario,
        format!("{name} ≥ 0.97× the no-pool floor at ≤ {POOL_SIZE} tasks"),
        &over_floor,
        0.97,
        |tasks| format!("{tasks} tasks"),
    ));
    // At every concurrency: ≥ every other pool.
    let over_pools: Vec<(Ratio, (usize, &str))> = CONCURRENCY
        .iter()
        .enumerate()
        .flat_map(|(c, &tasks)| {
            results
                .contenders
                .iter()
                .enumerate()
                .filter(|(_, k)| k.kind == Kind::Pool)
                .filter_map(move |(index, k)| {
                    Some((results.ratio(c, ours, index)?, (tasks, k.name)))
                })
        })
        .collect();
    targets.push(judge(
        &scenario,
        format!("{name} ≥ every other pool at every concurrency"),
        &over_pools,
        1.0,
        |(tasks, other)| format!("vs {other}, {tasks} tasks"),
    ));
}

/// A target that every one of `ratios` must be at least `bound`: met if every
/// interval is above it, missed if any is below. The ratio shown is one that decides
/// the verdict: the lowest median of those missed, else the lowest median.
fn judge<W: Copy>(
    scenario: &str,
    goal: String,
    ratios: &[(Ratio, W)],
    bound: f64,
    describe_at: impl Fn(W) -> String,
) -> Target {
    let missed = |r: &Ratio| r.against(bound, false) == Verdict::Missed;
    let worst = ratios.iter().min_by(|a, b| {
        (!missed(&a.0), a.0.median)
            .partial_cmp(&(!missed(&b.0), b.0.median))
            .expect("ratios are numbers")
    });
    match worst {
        Some(&(ratio, at)) => Target::new(
            scenario,
            goal,
            format!("{} at worst ({})", ratio.describe(), describe_at(at)),
            Verdict::all(ratios.iter().map(|(r, _)| r.against(bound, false))),
        ),
        None => Target::new(scenario, goal, "no result", None),
    }
}

/// Our driver's pool around `manager`: `POOL_SIZE` connections opened before timing,
/// one worker per task made by `worker` from a clone of the pool, closed afterwards.
pub async fn ours_setup<M: pool_core::Manager>(
    name: &'static str,
    manager: M,
    tasks: usize,
    reuse: pool_core::Reuse,
    worker: fn(pool_core::Pool<M>) -> Box<dyn Worker>,
) -> Result<Setup, String> {
    let pool = pool_core::Pool::builder(manager)
        .max_size(POOL_SIZE)
        .reuse(reuse)
        .build()
        .map_err(failed(name))?;
    fill(POOL_SIZE, || pool.get()).await?;
    let workers = (0..tasks).map(|_| worker(pool.clone())).collect();
    Ok(Setup {
        workers,
        close: Box::pin(async move {
            let _ = pool.close(Duration::from_secs(5)).await;
        }),
    })
}

/// Turns a setup step's error into the message naming the step.
pub fn failed<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

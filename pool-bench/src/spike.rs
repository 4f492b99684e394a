//! Scenario 3: a spike on an idle pool. 50 tasks arrive at once at a pool with
//! `max_size` 50 and 5 idle connections (`min_idle` 5 where the pool has it, else 5
//! opened beforehand); opening a connection takes 150 ms, each task's work 2 ms.
//!
//! The 5 idle connections serve all 50 tasks in 10 turns of 2 ms, long before one new
//! connection could open, so every connection opened for the spike is one the
//! database keeps in memory for nothing. Reported: the connects started while the spike
//! was being served, the connections open once it settled, and the time until the
//! last task was served. pool-core runs with the testkit's mock manager and its
//! connect delay; deadpool, bb8 and qp with a manager that sleeps as long.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_testkit::mock::{MockControl, MockManager};

use crate::measure::{self, Measurement, Problem, Samples};
use crate::report::{self, Report, Table};
use crate::svg::{Axis, Figure, Legend, Panel, Series};
use crate::targets::{Target, Targets};
use crate::Options;

const TASKS: usize = 50;
const MAX_SIZE: usize = 50;
const MIN_IDLE: usize = 5;
const CONNECT: Duration = Duration::from_millis(150);
const WORK: Duration = Duration::from_millis(2);
/// How often the connections opened or opening are counted for the chart.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);
/// How long after the last task the connects still landing are waited for.
const SETTLE: Duration = Duration::from_millis(200);
const ROUNDS: usize = 3;
const QUICK_ROUNDS: usize = 1;
const LIMIT: Duration = Duration::from_secs(10);
const NAMES: [&str; 4] = ["pool-core", "deadpool", "bb8", "qp"];

/// A pool under the spike.
#[async_trait::async_trait]
trait SpikePool: Send + Sync + 'static {
    /// One task: check out, work while holding, return.
    async fn serve(&self) -> Result<(), String>;
    /// Connects started so far.
    fn connects(&self) -> usize;
    /// Connections open now.
    fn open(&self) -> usize;
}

// The sleeping manager of deadpool, bb8 and qp -----------------------------------------

#[derive(Default)]
struct Counters {
    connects: AtomicUsize,
    open: AtomicUsize,
}

/// A connection of the sleeping managers: counted while it lives.
struct SleepyConn(Arc<Counters>);

impl Drop for SleepyConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn sleepy_connect(counters: &Arc<Counters>) -> SleepyConn {
    counters.connects.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(CONNECT).await;
    counters.open.fetch_add(1, Ordering::SeqCst);
    SleepyConn(Arc::clone(counters))
}

struct Sleepy(Arc<Counters>);

impl deadpool::managed::Manager for Sleepy {
    type Type = SleepyConn;
    type Error = std::convert::Infallible;
    async fn create(&self) -> Result<SleepyConn, Self::Error> {
        Ok(sleepy_connect(&self.0).await)
    }
    async fn recycle(
        &self,
        _conn: &mut SleepyConn,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        Ok(())
    }
}

impl bb8::ManageConnection for Sleepy {
    type Connection = SleepyConn;
    type Error = std::convert::Infallible;
    async fn connect(&self) -> Result<SleepyConn, Self::Error> {
        Ok(sleepy_connect(&self.0).await)
    }
    async fn is_valid(&self, _conn: &mut SleepyConn) -> Result<(), Self::Error> {
        Ok(())
    }
    fn has_broken(&self, _conn: &mut SleepyConn) -> bool {
        false
    }
}

#[qp::async_trait]
impl qp::resource::Manage for Sleepy {
    type Output = SleepyConn;
    type Error = std::convert::Infallible;
    async fn try_create(&self) -> Result<SleepyConn, Self::Error> {
        Ok(sleepy_connect(&self.0).await)
    }
}

// The contenders ------------------------------------------------------------------------

struct Core {
    pool: pool_core::Pool<MockManager>,
    control: MockControl,
    upkeep: tokio::task::JoinHandle<()>,
}

impl Drop for Core {
    fn drop(&mut self) {
        self.upkeep.abort();
    }
}

#[async_trait::async_trait]
impl SpikePool for Core {
    async fn serve(&self) -> Result<(), String> {
        let conn = self.pool.get().await.map_err(|e| e.to_string())?;
        tokio::time::sleep(WORK).await;
        drop(conn);
        Ok(())
    }
    fn connects(&self) -> usize {
        self.control.connects_started()
    }
    fn open(&self) -> usize {
        self.control.live()
    }
}

struct Dead(deadpool::managed::Pool<Sleepy>, Arc<Counters>);

#[async_trait::async_trait]
impl SpikePool for Dead {
    async fn serve(&self) -> Result<(), String> {
        let conn = self.0.get().await.map_err(|e| format!("{e:?}"))?;
        tokio::time::sleep(WORK).await;
        drop(conn);
        Ok(())
    }
    fn connects(&self) -> usize {
        self.1.connects.load(Ordering::SeqCst)
    }
    fn open(&self) -> usize {
        self.1.open.load(Ordering::SeqCst)
    }
}

struct Bb8(bb8::Pool<Sleepy>, Arc<Counters>);

#[async_trait::async_trait]
impl SpikePool for Bb8 {
    async fn serve(&self) -> Result<(), String> {
        let conn = self.0.get().await.map_err(|e| format!("{e:?}"))?;
        tokio::time::sleep(WORK).await;
        drop(conn);
        Ok(())
    }
    fn connects(&self) -> usize {
        self.1.connects.load(Ordering::SeqCst)
    }
    fn open(&self) -> usize {
        self.1.open.load(Ordering::SeqCst)
    }
}

struct Qp(qp::Pool<Sleepy>, Arc<Counters>);

#[async_trait::async_trait]
impl SpikePool for Qp {
    async fn serve(&self) -> Result<(), String> {
        let conn = self.0.acquire().await.map_err(|e| format!("{e:?}"))?;
        tokio::time::sleep(WORK).await;
        drop(conn);
        Ok(())
    }
    fn connects(&self) -> usize {
        self.1.connects.load(Ordering::SeqCst)
    }
    fn open(&self) -> usize {
        self.1.open.load(Ordering::SeqCst)
    }
}

/// Builds the contender `name` and waits until it holds [`MIN_IDLE`] idle connections.
async fn build(name: &str) -> Result<Arc<dyn SpikePool>, String> {
    let counters = Arc::new(Counters::default());
    let pool: Arc<dyn SpikePool> = match name {
        "pool-core" => {
            let manager = MockManager::new();
            let control = manager.control();
            control.connect_delay(CONNECT);
            let pool = pool_core::Pool::builder(manager)
                .max_size(MAX_SIZE)
                .min_idle(MIN_IDLE)
                .build()
                .map_err(|e| e.to_string())?;
            let upkeep = pool.spawn_upkeep();
            let warm = measure::wait_until(LIMIT, || pool.status().idle >= MIN_IDLE).await;
            if !warm {
                return Err(format!("min_idle not reached: {}", pool.status()));
            }
            Arc::new(Core {
                pool,
                control,
                upkeep,
            })
        }
        "deadpool" => {
            let pool = deadpool::managed::Pool::builder(Sleepy(Arc::clone(&counters)))
                .max_size(MAX_SIZE)
                .build()
                .map_err(|e| e.to_string())?;
            // deadpool has no min_idle: open 5 at once beforehand.
            let (a, b, c, d, e) =
                tokio::join!(pool.get(), pool.get(), pool.get(), pool.get(), pool.get());
            for conn in [a, b, c, d, e] {
                drop(conn.map_err(|e| format!("{e:?}"))?);
            }
            Arc::new(Dead(pool, counters))
        }
        "bb8" => {
            let pool = bb8::Pool::builder()
                .max_size(MAX_SIZE as u32)
                .min_idle(MIN_IDLE as u32)
                .build(Sleepy(Arc::clone(&counters)))
                .await
                .map_err(|e| format!("{e:?}"))?;
            let warm =
                measure::wait_until(LIMIT, || pool.state().idle_connections as usize >= MIN_IDLE)
                    .await;
            if !warm {
                return Err(format!("min_idle not reached: {:?}", pool.state()));
            }
            Arc::new(Bb8(pool, counters))
        }
        "qp" => {
            let pool = qp::Pool::new(Sleepy(Arc::clone(&counters)), MAX_SIZE);
            pool.reserve(MIN_IDLE).await.map_err(|e| format!("{e:?}"))?;
            Arc::new(Qp(pool, counters))
        }
        other => return Err(format!("unknown contender {other}")),
    };
    Ok(pool)
}

/// One spike on one contender.
struct Spike {
    /// Connects started from the spike's start until the last task was served.
    opened: usize,
    /// Connections open [`SETTLE`] after the last task was served.
    open_after: usize,
    /// From the spike's start until the last task was served.
    total: Duration,
    /// Each task's time from arrival to its connection's return, in ms.
    latencies_ms: Vec<f64>,
    /// (ms since the start, connects started in all): nothing closes during a spike,
    /// so these are the connections open or being opened.
    timeline: Vec<(f64, usize)>,
}

async fn spike(name: &str) -> Result<Spike, Problem> {
    let pool = tokio::time::timeout(LIMIT, build(name))
        .await
        .map_err(|_| Problem::TimedOut { limit: LIMIT })?
        .map_err(Problem::Failed)?;
    let before = pool.connects();
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampler = {
        let (pool, timeline, stop) = (Arc::clone(&pool), Arc::clone(&timeline), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let point = (started.elapsed().as_secs_f64() * 1e3, pool.connects());
                timeline
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(point);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let run = measure::run_tasks(TASKS, LIMIT, |_| {
        let pool = Arc::clone(&pool);
        async move {
            let arrived = Instant::now();
            pool.serve().await?;
            Ok(arrived.elapsed().as_secs_f64() * 1e3)
        }
    })
    .await;
    let outcome = run.into_result();
    let total = started.elapsed();
    let opened = pool.connects() - before;
    tokio::time::sleep(SETTLE).await;
    let open_after = pool.open();
    stop.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    let (_, latencies_ms) = outcome?;
    let timeline = std::mem::take(&mut *timeline.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Spike {
        opened,
        open_after,
        total,
        latencies_ms,
        timeline,
    })
}

struct Entry {
    name: &'static str,
    total_ms: Measurement,
    opened: Samples,
    open_after: Samples,
    latencies_ms: Vec<f64>,
    /// The last round's, for the chart.
    last: Option<Spike>,
}

pub fn run(options: &Options, report: &mut Report, targets: &mut Targets) {
    report.heading(2, "3. Spike on an idle pool");
    report.text(&format!(
        "{TASKS} tasks arrive at once at a pool with `max_size` {MAX_SIZE} and {MIN_IDLE} \
         idle connections (`min_idle` {MIN_IDLE}; deadpool has none, so 5 are opened \
         beforehand; qp: `reserve(5)`); a connect takes {CONNECT:?}, each task holds its \
         connection for {WORK:?} of work. The {MIN_IDLE} idle connections alone serve \
         all {TASKS} tasks in about {} ms, before one new connection could open. Median \
         over {} rounds; `opened`: connects started while the spike was served (median, \
         max); `open after`: connections open {SETTLE:?} after the last task was served. \
         pool-core: the testkit's mock manager with a connect delay, other settings \
         default (`max_connecting` 2), upkeep spawned; the others: a manager that sleeps \
         as long, defaults otherwise.\n\n",
        (TASKS / MIN_IDLE) as u128 * WORK.as_millis(),
        if options.quick { QUICK_ROUNDS } else { ROUNDS },
    ));
    let names: Vec<&'static str> = NAMES.into_iter().filter(|n| options.selects(n)).collect();
    let mut entries: Vec<Entry> = names
        .iter()
        .map(|&name| Entry {
            name,
            total_ms: Measurement::default(),
            opened: Samples::default(),
            open_after: Samples::default(),
            latencies_ms: Vec::new(),
            last: None,
        })
        .collect();
    let rt = measure::runtime(false);
    let rounds = if options.quick { QUICK_ROUNDS } else { ROUNDS };
    for round in 0..rounds {
        eprintln!("spike: round {}", round + 1);
        for index in measure::rotation(round, entries.len()) {
            let entry = &mut entries[index];
            if entry.total_ms.is_stopped() {
                continue;
            }
            match rt.block_on(spike(entry.name)) {
                Ok(spike) => {
                    entry.total_ms.samples.push(spike.total.as_secs_f64() * 1e3);
                    entry.opened.push(spike.opened as f64);
                    entry.open_after.push(spike.open_after as f64);
                    entry.latencies_ms.extend(&spike.latencies_ms);
                    entry.last = Some(spike);
                }
                Err(problem) => entry.total_ms.problem = Some(problem),
            }
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));

    let core_total = entries
        .iter()
        .find(|e| e.name == "pool-core")
        .and_then(|e| e.total_ms.median());
    let mut table = Table::new(&[
        "contender",
        ">opened (median, max)",
        ">open after",
        ">total ms",
        ">spread",
        ">task p50 ms",
        ">task p99 ms",
        ">total vs pool-core",
    ]);
    for entry in &entries {
        report.check("spike", entry.name, &entry.total_ms);
        let Some(total) = entry.total_ms.median() else {
            let problem = entry.total_ms.problem.as_ref();
            let mut row = vec![
                entry.name.to_owned(),
                problem.map_or_else(|| "no result".to_owned(), Problem::cell),
            ];
            row.resize(8, String::new());
            table.row(row);
            continue;
        };
        let mut latencies = entry.latencies_ms.clone();
        latencies.sort_by(f64::total_cmp);
        let ms = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.1}"));
        table.row(vec![
            entry.name.to_owned(),
            format!(
                "{:.0}, {:.0}",
                entry.opened.median().unwrap_or(0.0),
                entry.opened.max().unwrap_or(0.0)
            ),
            format!("{:.0}", entry.open_after.median().unwrap_or(0.0)),
            format!("{total:.1}"),
            report::spread(entry.total_ms.samples.spread()),
            ms(measure::quantile(&latencies, 0.5)),
            ms(measure::quantile(&latencies, 0.99)),
            core_total.map_or_else(String::new, |core| report::ratio(total / core)),
        ]);
    }
    report.table(&table);

    let opened = entries
        .iter()
        .filter_map(|e| Some((e, e.last.as_ref()?)))
        .map(|(e, last)| Series {
            name: e.name.to_owned(),
            points: last
                .timeline
                .iter()
                .map(|&(ms, opened)| (ms, Some(opened as f64)))
                .collect(),
            bold: e.name == "pool-core",
            dashed: false,
        })
        .collect();
    let served = entries
        .iter()
        .filter_map(|e| Some((e, e.last.as_ref()?)))
        .map(|(e, last)| {
            let mut done = last.latencies_ms.clone();
            done.sort_by(f64::total_cmp);
            let mut points = vec![(0.0, Some(0.0))];
            points.extend(
                done.iter()
                    .enumerate()
                    .map(|(i, &ms)| (ms, Some((i + 1) as f64))),
            );
            Series {
                name: e.name.to_owned(),
                points,
                bold: e.name == "pool-core",
                dashed: false,
            }
        })
        .collect();
    let figure = Figure {
        title: "3. Spike: 50 tasks arrive at once at an idle pool".to_owned(),
        note: format!(
            "Last round. Left: connections open or being opened (connects started; none \
             close during a spike), {MIN_IDLE} idle at the start; fewer is better. Right: \
             tasks served; further left is better. A connect takes {} ms, each task works \
             {} ms, so the {MIN_IDLE} idle connections could serve all {TASKS} tasks in \
             about {} ms.",
            CONNECT.as_millis(),
            WORK.as_millis(),
            (TASKS / MIN_IDLE) as u128 * WORK.as_millis(),
        ),
        columns: 2,
        legend: Legend::Shared,
        panels: vec![
            Panel {
                title: format!("connections, max_size {MAX_SIZE}, min_idle {MIN_IDLE}"),
                x_label: "ms since the spike began".to_owned(),
                y_label: "connections opened or opening".to_owned(),
                x_axis: Axis::Linear,
                x_ticks: None,
                y_axis: Axis::Linear,
                series: opened,
                reference: None,
            },
            Panel {
                title: format!("{TASKS} tasks, each {} ms of work", WORK.as_millis()),
                x_label: "ms since the spike began".to_owned(),
                y_label: "tasks served".to_owned(),
                x_axis: Axis::Linear,
                x_ticks: None,
                y_axis: Axis::Linear,
                series: served,
                reference: None,
            },
        ],
    };
    report.chart(
        "spike.svg",
        "connections opened and tasks served against time during the spike",
        figure.to_svg(),
    );

    if let Some(core) = entries.iter().find(|e| e.name == "pool-core") {
        let opened = core.opened.max();
        targets.push(Target::new(
            "spike",
            "pool-core opens fewer than 10 connections",
            opened.map_or_else(|| "no result".to_owned(), |o| format!("{o:.0} at most")),
            opened.map(|o| o < 10.0),
        ));
    }
}

//! Measuring: the samples of one contender and their median and spread, what a
//! measurement ended with, the rotating order of interleaved rounds, and runs of tasks
//! bounded by a time limit.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// One value per round.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    pub fn median(&self) -> Option<f64> {
        let sorted = self.sorted();
        let n = sorted.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(sorted[n / 2]),
            _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
        }
    }

    pub fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }

    /// The interquartile range over the median: how far apart the middle half of the
    /// rounds were. Robust to one round disturbed by the machine's other work, unlike
    /// the full range.
    pub fn spread(&self) -> Option<f64> {
        let median = self.median()?;
        let sorted = self.sorted();
        let range = quantile(&sorted, 0.75)? - quantile(&sorted, 0.25)?;
        (median > 0.0).then(|| range / median)
    }
}

/// Why a contender has no value in some configuration.
#[derive(Clone, Debug)]
pub enum Problem {
    /// A run made no progress within the limit: deadlocked, or far too slow.
    TimedOut { limit: Duration },
    /// A run failed with this error.
    Failed(String),
    /// Not run here, for this reason.
    NotRun(&'static str),
}

impl Problem {
    /// The text of a table cell.
    pub fn cell(&self) -> String {
        match self {
            Problem::TimedOut { limit } => format!("deadlocked/timed out (> {limit:?})"),
            Problem::Failed(e) => format!("failed: {e}"),
            Problem::NotRun(why) => format!("not run: {why}"),
        }
    }
}

/// One contender's result in one configuration: its samples, or what stopped it. A
/// contender that fails once is not run again in that configuration.
#[derive(Clone, Debug, Default)]
pub struct Measurement {
    pub samples: Samples,
    pub problem: Option<Problem>,
}

impl Measurement {
    pub fn not_run(why: &'static str) -> Self {
        Measurement {
            samples: Samples::default(),
            problem: Some(Problem::NotRun(why)),
        }
    }

    /// The median, if it ran without a problem.
    pub fn median(&self) -> Option<f64> {
        match self.problem {
            None => self.samples.median(),
            Some(_) => None,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.problem.is_some()
    }
}

/// What one run ended with.
pub enum Outcome<T> {
    Done(T),
    TimedOut(Duration),
    Failed(String),
}

impl<T> Outcome<T> {
    /// The value, or the problem to record.
    pub fn into_result(self) -> Result<T, Problem> {
        match self {
            Outcome::Done(value) => Ok(value),
            Outcome::TimedOut(limit) => Err(Problem::TimedOut { limit }),
            Outcome::Failed(e) => Err(Problem::Failed(e)),
        }
    }
}

/// The order of the contenders in round `round`: `A B C`, then `B C A`, `C A B`, ... so
/// that none always runs first (on a cold cache) or right after the same neighbour.
pub fn rotation(round: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |i| (round + i) % count)
}

/// Spawns `tasks` tasks made by `make(index)` on the current tokio runtime and waits for
/// all of them, up to `limit`. Returns the time from the first spawn to the last join
/// and the tasks' results.
pub async fn run_tasks<F, T>(
    tasks: usize,
    limit: Duration,
    mut make: impl FnMut(usize) -> F,
) -> Outcome<(Duration, Vec<T>)>
where
    F: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|i| tokio::spawn(make(i))).collect();
    match join_all(handles, limit).await {
        Outcome::Done(results) => Outcome::Done((started.elapsed(), results)),
        Outcome::TimedOut(limit) => Outcome::TimedOut(limit),
        Outcome::Failed(e) => Outcome::Failed(e),
    }
}

/// How long aborted tasks are given to finish, so the memory of a deadlocked
/// contender's tasks is freed before the next measurement.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Waits for every task, up to `limit` in all. On an error or a time-out the rest are
/// aborted, and waited for until they are gone.
pub async fn join_all<T: Send + 'static>(
    mut handles: Vec<JoinHandle<Result<T, String>>>,
    limit: Duration,
) -> Outcome<Vec<T>> {
    let mut results = Vec::with_capacity(handles.len());
    // Handles before `next` have completed (and must not be polled again).
    let mut next = 0;
    let joined = tokio::time::timeout(limit, async {
        while next < handles.len() {
            let result = (&mut handles[next]).await;
            next += 1;
            match result {
                Ok(Ok(value)) => results.push(value),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("task failed: {e}")),
            }
        }
        Ok(())
    })
    .await;
    let outcome = match joined {
        Ok(Ok(())) => return Outcome::Done(results),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::TimedOut(limit),
    };
    let rest = &mut handles[next..];
    rest.iter().for_each(JoinHandle::abort);
    let _ = tokio::time::timeout(ABORT_GRACE, async {
        for handle in rest {
            let _ = handle.await;
        }
    })
    .await;
    outcome
}

/// A tokio multi-thread runtime with one worker per core (at least two, so cross-core
/// hand-offs are always measured), or a current-thread one.
pub fn runtime(current_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads());
        builder
    };
    builder.enable_all().build().expect("tokio runtime")
}

/// Worker threads of the multi-thread runtimes.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
}

/// Waits, polling every millisecond, until `done()` holds or `limit` passes; `true` if
/// it held. For states that come about by themselves (connections opened in the
/// background, tasks parking).
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

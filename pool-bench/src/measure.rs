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
        sorted(&self.values)
    }

    pub fn median(&self) -> Option<f64> {
        median_of_sorted(&self.sorted())
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

/// `values`, sorted.
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
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

/// How two contenders compare when the machine's speed drifts: the ratio of their
/// values round by round (each round runs both within seconds of each other), and the
/// median of those ratios with a distribution-free confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratio {
    pub median: f64,
    /// The interval holds the true median ratio with probability at least `coverage`
    /// (order statistics of the rounds' ratios; no assumption on their distribution).
    pub low: f64,
    pub high: f64,
    pub coverage: f64,
    pub rounds: usize,
}

/// Where a ratio stands against a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval is on the right side of the bound.
    Met,
    /// The whole interval is on the wrong side.
    Missed,
    /// The interval straddles the bound: this run cannot tell.
    WithinNoise,
}

impl Verdict {
    /// The verdict on several ratios that must all meet a bound: missed if any missed,
    /// met if all met.
    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts
            .into_iter()
            .fold(Verdict::Met, |all, one| match (all, one) {
                (Verdict::Missed, _) | (_, Verdict::Missed) => Verdict::Missed,
                (Verdict::WithinNoise, _) | (_, Verdict::WithinNoise) => Verdict::WithinNoise,
                _ => Verdict::Met,
            })
    }
}

impl Ratio {
    /// The ratio of `numerator`'s samples to `denominator`'s, round by round. `None`
    /// if either stopped with a problem or has no samples. A measurement that has not
    /// stopped has one sample per round so far, in round order (one that misses a
    /// round stops), so the two line up by index.
    pub fn paired(numerator: &Measurement, denominator: &Measurement) -> Option<Ratio> {
        if numerator.is_stopped() || denominator.is_stopped() {
            return None;
        }
        debug_assert_eq!(
            numerator.samples.values.len(),
            denominator.samples.values.len(),
            "one sample per round"
        );
        Ratio::of_rounds(
            numerator
                .samples
                .values
                .iter()
                .zip(&denominator.samples.values)
                .filter(|(_, &d)| d > 0.0)
                .map(|(n, d)| n / d)
                .collect(),
        )
    }

    /// The median of `ratios` and the narrowest order-statistic interval around it
    /// whose coverage is at least 95% (or, with fewer than 6 rounds, the full range,
    /// whose coverage is less).
    pub fn of_rounds(mut ratios: Vec<f64>) -> Option<Ratio> {
        ratios.sort_by(f64::total_cmp);
        let median = median_of_sorted(&ratios)?;
        let n = ratios.len();
        // P(the k-th smallest of n ratios lies above the true median) is
        // P(Binomial(n, ½) ≤ k − 1); the interval [k-th, (n+1−k)-th] misses the median
        // with twice that probability.
        let below = |k: usize| binomial_half_cdf(n, k - 1);
        let k = (1..=n.div_ceil(2))
            .take_while(|&k| 2.0 * below(k) <= 0.05)
            .last()
            .unwrap_or(1);
        Some(Ratio {
            median,
            low: ratios[k - 1],
            high: ratios[n - k],
            coverage: 1.0 - 2.0 * below(k),
            rounds: n,
        })
    }

    /// Whether the ratio is at least `bound` (or, with `at_most`, at most `bound`).
    /// Too few rounds for 95% confidence (a quick run's one or two) cannot tell.
    pub fn against(&self, bound: f64, at_most: bool) -> Verdict {
        if self.coverage < 0.95 {
            return Verdict::WithinNoise;
        }
        let (good, bad) = if at_most {
            (self.high <= bound, self.low > bound)
        } else {
            (self.low >= bound, self.high < bound)
        };
        match (good, bad) {
            (true, _) => Verdict::Met,
            (_, true) => Verdict::Missed,
            _ => Verdict::WithinNoise,
        }
    }

    /// As `0.96× (0.91–1.02)`: the median and the interval.
    pub fn describe(&self) -> String {
        format!("{:.2}× ({:.2}–{:.2})", self.median, self.low, self.high)
    }
}

/// P(X ≤ k) for X ~ Binomial(n, ½).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        sum += term;
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(values: &[f64]) -> Measurement {
        let mut m = Measurement::default();
        values.iter().for_each(|&v| m.samples.push(v));
        m
    }

    #[test]
    fn the_binomial_tail_matches_counted_outcomes() {
        // Of the 2048 outcomes of 11 fair coins, 1 has no heads, 11 one, 55 two.
        assert!((binomial_half_cdf(11, 0) - 1.0 / 2048.0).abs() < 1e-12);
        assert!((binomial_half_cdf(11, 2) - 67.0 / 2048.0).abs() < 1e-12);
        assert!((binomial_half_cdf(11, 11) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn eleven_rounds_give_the_second_and_tenth_ratios_as_the_interval() {
        let ratio = Ratio::of_rounds((1..=11).rev().map(f64::from).collect()).unwrap();
        assert_eq!((ratio.median, ratio.low, ratio.high), (6.0, 2.0, 10.0));
        // [2nd, 10th] misses with 2 × 12/2048; [3rd, 9th] would miss with 2 × 67/2048.
        assert!((ratio.coverage - (1.0 - 24.0 / 2048.0)).abs() < 1e-12);
        assert_eq!(ratio.rounds, 11);
    }

    #[test]
    fn few_rounds_give_the_full_range() {
        let ratio = Ratio::of_rounds(vec![1.0, 3.0, 2.0]).unwrap();
        assert_eq!((ratio.low, ratio.median, ratio.high), (1.0, 2.0, 3.0));
        assert!(Ratio::of_rounds(Vec::new()).is_none());
    }

    /// A machine that runs both contenders up to twice as fast in some rounds: each
    /// round's ratio is the same 0.95, and so is their median and interval.
    #[test]
    fn pairing_rounds_cancels_a_drift_common_to_both_contenders() {
        let speeds = [1.0, 2.0, 1.3, 1.9, 1.1, 1.6, 2.0];
        let ours = measured(&speeds.map(|s| 95.0 * s));
        let theirs = measured(&speeds.map(|s| 100.0 * s));
        let ratio = Ratio::paired(&ours, &theirs).unwrap();
        assert!((ratio.high - ratio.low).abs() < 1e-12);
        assert!((ratio.median - 0.95).abs() < 1e-12);
        assert_eq!(ratio.against(0.97, false), Verdict::Missed);
        assert_eq!(ratio.against(0.9, false), Verdict::Met);
    }

    #[test]
    fn too_few_rounds_cannot_tell() {
        let ratio = Ratio::of_rounds(vec![0.5, 0.6]).unwrap();
        assert!(ratio.coverage < 0.95);
        assert_eq!(ratio.against(0.97, false), Verdict::WithinNoise);
        let twelve = Ratio::of_rounds((1..=12).map(f64::from).collect()).unwrap();
        assert_eq!((twelve.low, twelve.median, twelve.high), (3.0, 6.5, 10.0));
    }

    #[test]
    fn all_verdicts_miss_if_one_does_and_meet_only_if_all_do() {
        use Verdict::*;
        assert_eq!(Verdict::all([Met, WithinNoise, Missed]), Missed);
        assert_eq!(Verdict::all([Met, WithinNoise, Met]), WithinNoise);
        assert_eq!(Verdict::all([Met, Met]), Met);
    }

    #[test]
    fn an_interval_across_the_bound_is_within_noise() {
        let ratio = Ratio::of_rounds(vec![0.9, 0.95, 0.96, 0.98, 1.0, 1.02, 1.05]).unwrap();
        assert_eq!(ratio.against(0.97, false), Verdict::WithinNoise);
        assert_eq!(ratio.against(0.85, false), Verdict::Met);
        assert_eq!(ratio.against(1.1, true), Verdict::Met);
        assert_eq!(ratio.against(0.8, true), Verdict::Missed);
        let stopped = Measurement::not_run("test");
        assert!(Ratio::paired(&stopped, &measured(&[1.0])).is_none());
    }
}

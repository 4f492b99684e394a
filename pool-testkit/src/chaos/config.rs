//! What a chaos run does: how long, how hard, how the pool is set up, how often faults
//! come; and the command line that sets the first two.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The settings of one chaos run. [`Default`] is the run `cargo xtask chaos` makes;
/// the command line changes only [`duration`](Self::duration) and [`seed`](Self::seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaosConfig {
    /// How long the load runs (faults stop [`calm`](Self::calm) before the end).
    pub duration: Duration,
    /// Seeds every random choice (which fault, how long, which connection, which task
    /// dirties its session). Timing still varies from run to run: the seed fixes the
    /// plan, not the interleaving.
    pub seed: u64,
    /// Tasks running transactions at once.
    pub tasks: usize,
    /// The pool's `max_size`; the server must never see more connections than this.
    pub max_size: usize,
    /// The pool's `min_idle`, so upkeep refills the pool while faults empty it.
    pub min_idle: usize,
    /// The pool's `wait_timeout`: no `get` may wait longer than this plus
    /// [`scheduling_margin`](Self::scheduling_margin) (its connect or checks, bounded
    /// by their own timeouts, not counted).
    pub wait_timeout: Duration,
    /// The pool's `connect_timeout`.
    pub connect_timeout: Duration,
    /// The pool's `recycle_timeout`.
    pub recycle_timeout: Duration,
    /// The pool's `check_interval`.
    pub check_interval: Duration,
    /// The pool's `max_lifetime`, short so connections also rotate under the load.
    pub max_lifetime: Duration,
    /// The pool's `connect_backoff_max`, short so recovery after a heal is quick.
    pub connect_backoff_max: Duration,
    /// How far a `get`'s waiting may run past `wait_timeout` before it counts as a
    /// wait longer than the wait timeout: the time for a timer to fire and a task to
    /// be polled on a loaded machine.
    pub scheduling_margin: Duration,
    /// One transaction in this many leaves its session dirty before returning the
    /// connection.
    pub dirty_one_in: u32,
    /// The longest one transaction (clean check, write, dirtying) may take before it
    /// counts as hung and is abandoned.
    pub operation_limit: Duration,
    /// Faults stop this long before the end, so the pool shows it recovers from the
    /// last one.
    pub calm: Duration,
    /// Whether faults are also injected through a fault proxy in front of the server
    /// ([`Backend::server_address`](crate::conformance::Backend::server_address)).
    /// Without it only server-side kills are injected (for a backend with no TCP
    /// address, such as the mock).
    pub network_faults: bool,
    /// How long after stopping the load the tasks, the pool's close and the server's
    /// last connections may take to finish.
    pub settle: Duration,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            duration: Duration::from_secs(30),
            seed: seed_from_clock(),
            tasks: 32,
            max_size: 8,
            min_idle: 2,
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            recycle_timeout: Duration::from_millis(500),
            check_interval: Duration::from_millis(500),
            max_lifetime: Duration::from_secs(10),
            connect_backoff_max: Duration::from_millis(500),
            scheduling_margin: Duration::from_millis(500),
            dirty_one_in: 8,
            operation_limit: Duration::from_secs(20),
            calm: Duration::from_secs(4),
            network_faults: true,
            settle: Duration::from_secs(20),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run with these settings.
    Run(Box<ChaosConfig>),
    /// Only list the test (`--list`, as `cargo test -- --list` asks every target).
    List,
}

/// Flags the test harness passes that are not ours and carry no value.
const HARNESS_SWITCHES: &[&str] = &[
    "--nocapture",
    "--show-output",
    "--quiet",
    "-q",
    "--ignored",
    "--include-ignored",
    "--exact",
];

/// Flags the test harness passes that are not ours and carry a value.
const HARNESS_FLAGS_WITH_VALUE: &[&str] = &["--test-threads", "--color", "--format", "-Z"];

impl ChaosConfig {
    /// Reads `--seconds N` (default 30) and `--seed S` (default: from the clock), also
    /// as `--seconds=N`; test-harness flags are ignored and `--list` lists the one
    /// test. Anything else is an error that names it.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
        let mut config = ChaosConfig::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
                _ => (arg.clone(), None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                match inline {
                    Some(value) => Ok(value.to_owned()),
                    None => args.next().ok_or_else(|| format!("{flag} needs {what}")),
                }
            };
            match flag.as_str() {
                "--seconds" => {
                    let text = value("a number of seconds")?;
                    let seconds: u64 = text.parse().map_err(|_| {
                        format!("--seconds takes a whole number of seconds, not `{text}`")
                    })?;
                    if seconds == 0 {
                        return Err("--seconds must be at least 1".into());
                    }
                    config.duration = Duration::from_secs(seconds);
                    config.calm = config.calm.min(config.duration / 4);
                }
                "--seed" => {
                    let text = value("a number")?;
                    config.seed = text
                        .parse()
                        .map_err(|_| format!("--seed takes a whole number, not `{text}`"))?;
                }
                "--list" => return Ok(Command::List),
                f if HARNESS_SWITCHES.contains(&f) => {}
                f if HARNESS_FLAGS_WITH_VALUE.contains(&f) => {
                    if inline.is_none() {
                        args.next();
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown argument `{arg}` (the chaos run takes --seconds N and --seed S)"
                    ))
                }
            }
        }
        Ok(Command::Run(Box::new(config)))
    }
}

/// A seed from the clock, for runs that give none (the run prints it, so any run can
/// be repeated).
fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        ChaosConfig::from_args(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> ChaosConfig {
        match parse(args) {
            Ok(Command::Run(config)) => *config,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn seconds_and_seed_in_both_spellings() {
        let config = run(&["--seconds", "12", "--seed=7"]);
        assert_eq!(config.duration, Duration::from_secs(12));
        assert_eq!(config.seed, 7);
        let config = run(&["--seconds=3", "--seed", "99"]);
        assert_eq!(config.duration, Duration::from_secs(3));
        assert_eq!(config.seed, 99);
    }

    #[test]
    fn defaults_to_thirty_seconds_and_a_short_run_keeps_most_of_it_for_faults() {
        assert_eq!(run(&[]).duration, Duration::from_secs(30));
        let short = run(&["--seconds", "4"]);
        assert_eq!(short.calm, Duration::from_secs(1));
    }

    #[test]
    fn harness_flags_are_ignored_and_list_lists() {
        assert_eq!(
            run(&["--nocapture", "--test-threads", "1", "--seconds", "5"]).duration,
            Duration::from_secs(5)
        );
        assert_eq!(parse(&["--list", "--format", "terse"]), Ok(Command::List));
    }

    #[test]
    fn bad_input_names_its_cause() {
        assert_eq!(
            parse(&["--seconds", "ten"]).unwrap_err(),
            "--seconds takes a whole number of seconds, not `ten`"
        );
        assert_eq!(
            parse(&["--seconds", "0"]).unwrap_err(),
            "--seconds must be at least 1"
        );
        assert_eq!(parse(&["--seed"]).unwrap_err(), "--seed needs a number");
        assert!(parse(&["--fast"])
            .unwrap_err()
            .contains("unknown argument `--fast`"));
    }
}

//! The benchmark behind `cargo xtask bench`: pool-core and the driver crates side by
//! side with deadpool, bb8, qp, mysql_async's pool and floors without a pool, in one
//! process, contenders interleaved.
//!
//! 1. checkout + return with no I/O ([`checkout`]);
//! 2. end to end per backend, on the local servers ([`end_to_end`]);
//! 3. a spike on an idle pool ([`spike`]);
//! 4. 10,000 tasks waiting on 16 connections: memory and fairness ([`scale`]).
//!
//! Every table is printed as it is made and written, with an SVG chart per scenario,
//! to `target/bench/` (`report.md`, `checkout.svg`, `end_to_end.svg`, `spike.svg`,
//! `scale.svg`). Ratios are against ours: pool-core, or the driver crate end to end.
//! The run fails (exit status 1, after the report is written) when a contender fails
//! or hangs where it should not, or a database server cannot be had; qp's deadlocks
//! are results.
//!
//! ```text
//! cargo xtask bench                       # everything, about 5 minutes on 2 cores
//! cargo xtask bench --quick               # every scenario with tiny parameters (CI smoke)
//! cargo xtask bench checkout spike        # only these scenarios
//! cargo xtask bench postgres --only pool  # one backend, contenders whose name has "pool"
//! ```
//!
//! xtask runs this binary with `cargo run --release -p pool-bench -- --out target/bench`
//! (the smoke run of `cargo xtask test`: `cargo run -p pool-bench -- --quick --out
//! target/bench-smoke`). It is a package of its own rather than a bench target of
//! pool-testkit because a bench target is built with its package's dev-dependencies,
//! and pool-testkit's turn on tokio's `test-util`, which slows every clock read of the
//! pool it measures and is in no user's build; nothing this package depends on turns
//! it on.

mod alloc;
mod checkout;
mod contenders;
mod end_to_end;
mod measure;
mod report;
mod scale;
mod spike;
mod svg;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use report::Report;
use targets::Targets;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const USAGE: &str = "\
usage: pool-bench [--quick] [--only NAME]... [--out DIR] [SCENARIO]...

  --quick        every scenario with tiny parameters, in seconds (also BENCH_QUICK=1)
  --only NAME    run only contenders whose name contains NAME (repeatable)
  --out DIR      where report.md and the charts go (default: target/bench)
  SCENARIO       checkout, e2e (= postgres mysql redis), postgres, mysql, redis,
                 spike, scale; default: all";

/// The scenarios, in the order they run.
const SCENARIOS: [&str; 6] = ["checkout", "postgres", "mysql", "redis", "spike", "scale"];

/// The command line.
pub struct Options {
    /// Tiny parameters: a smoke run.
    pub quick: bool,
    only: Vec<String>,
    scenarios: Vec<&'static str>,
    out: Option<PathBuf>,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            quick: std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1"),
            only: Vec::new(),
            scenarios: Vec::new(),
            out: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--only" => options
                    .only
                    .push(args.next().ok_or("--only needs a contender name")?),
                "--out" => options.out = Some(args.next().ok_or("--out needs a directory")?.into()),
                "e2e" => options.scenarios.extend(["postgres", "mysql", "redis"]),
                flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
                word => match SCENARIOS.iter().find(|s| **s == word) {
                    Some(scenario) => options.scenarios.push(scenario),
                    None => {
                        return Err(format!(
                            "unknown scenario `{word}` (known: checkout, e2e, {})",
                            SCENARIOS[1..].join(", ")
                        ))
                    }
                },
            }
        }
        if options.scenarios.is_empty() {
            options.scenarios = SCENARIOS.to_vec();
        }
        Ok(options)
    }

    /// Whether the contender `name` is to run.
    pub fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| name.contains(o.as_str()))
    }

    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// `target/bench` in the target directory this binary was built into.
    fn out_dir(&self) -> PathBuf {
        if let Some(out) = &self.out {
            return out.clone();
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                // target/<profile>/pool-bench
                let exe = std::env::current_exe().ok()?;
                exe.ancestors().nth(2).map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("target"));
        target.join("bench")
    }
}

/// The 1-minute load average (Linux), so a reader can tell a busy machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("pool-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut report = Report::new(options.out_dir());
    let mut targets = Targets::default();
    report.heading(1, "Benchmarks: pool-core and the drivers side by side");
    report.text(&format!(
        "{} run{}; {} cores, tokio multi-thread runtimes with {} workers; load average \
         at start {}; {} build. Ratios are against ours (pool-core, or our driver end to \
         end).\n\n",
        if options.quick {
            "Quick (smoke) run with tiny parameters: the numbers mean little"
        } else {
            "Full"
        },
        std::env::var("POOL_BENCH_REVISION")
            .map(|r| format!(" of {r}"))
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        measure::worker_threads(),
        load_average(),
        if cfg!(debug_assertions) {
            "debug (unoptimised)"
        } else {
            "optimised"
        },
    ));

    if options.runs("checkout") {
        checkout::run(&options, &mut report, &mut targets);
    }
    let backends: Vec<&end_to_end::Backend> = [
        &end_to_end::POSTGRES,
        &end_to_end::MYSQL,
        &end_to_end::REDIS,
    ]
    .into_iter()
    .filter(|b| options.runs(b.key))
    .collect();
    if !backends.is_empty() {
        end_to_end::run(&backends, &options, &mut report, &mut targets);
    }
    if options.runs("spike") {
        spike::run(&options, &mut report, &mut targets);
    }
    if options.runs("scale") {
        scale::run(&options, &mut report, &mut targets);
    }
    targets.write(&mut report);
    report.text(&format!(
        "Total time {:.1?}; load average at the end {}.\n\n",
        started.elapsed(),
        load_average()
    ));

    let written = report.write();
    match &written {
        Ok(path) => println!("report written to {}", path.display()),
        Err(e) => eprintln!("pool-bench: {e}"),
    }
    if !report.problems().is_empty() {
        eprintln!("pool-bench: failed:");
        for problem in report.problems() {
            eprintln!("  {problem}");
        }
        return ExitCode::FAILURE;
    }
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

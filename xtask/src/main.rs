//! Project automation, run as `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! - `test` / `ci`: everything CI runs (fmt, clippy, tests, the model check of
//!   pool-core, a smoke run of the benchmark, conformance, a short chaos run per
//!   backend), stopping at the first failure.
//! - `conformance [--backend NAME]... [FILTER]`: runs each backend's conformance test
//!   target and prints a backend x case matrix.
//! - `model`: the model check of pool-core's bookkeeping alone.
//! - `bench [--quick] [SCENARIO]...`: the benchmarks side by side with deadpool, bb8,
//!   qp and mysql_async's pool; tables on stdout, `target/bench/report.md` and an SVG
//!   chart per scenario beside it.
//! - `chaos [--backend NAME]... [--seconds N] [--seed S]`: runs each backend's chaos
//!   run (load and faults, then a report of what the pool got wrong).
//! - `services`: which database servers the tests can reach.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test                                  fmt check, clippy, all tests, model check,
                                        benchmark smoke run, conformance, a 30 s chaos
                                        run per backend (what CI runs)
  ci                                    same as test
  conformance [--backend NAME]... [FILTER]
                                        run the conformance suites and print the matrix;
                                        FILTER selects cases whose name contains it
  model                                 model-check pool-core's bookkeeping (loom)
  chaos [--backend NAME|all]... [--seconds N] [--seed S]
                                        load and random faults against each backend
                                        (postgres, mysql, redis; default all, 30 s each),
                                        then what the pool got wrong, if anything
  bench [--quick] [--only NAME]... [SCENARIO]...
                                        benchmarks side by side with deadpool, bb8, qp and
                                        mysql_async's pool; writes target/bench/report.md and
                                        an SVG chart per scenario (checkout, e2e, postgres,
                                        mysql, redis, spike, scale; default all). --quick:
                                        tiny parameters, seconds (the smoke `test` runs)
  services                              show which database servers the tests can reach
";

/// A backend's conformance suite: a `harness = false` test target of some package.
struct Backend {
    /// Column name in the matrix, and the value of `--backend`.
    name: &'static str,
    /// The package whose test target runs the suite.
    package: &'static str,
    /// The test target's name.
    test: &'static str,
}

/// Every backend the conformance matrix knows; a new driver adds one line here.
const BACKENDS: &[Backend] = &[
    Backend {
        name: "mock",
        package: "pool-testkit",
        test: "conformance",
    },
    Backend {
        name: "postgres",
        package: "pool-postgres",
        test: "conformance",
    },
    Backend {
        name: "postgres-pgbouncer",
        package: "pool-postgres",
        test: "conformance_pgbouncer",
    },
    Backend {
        name: "redis",
        package: "pool-redis",
        test: "conformance",
    },
    Backend {
        name: "redis-cluster",
        package: "pool-redis",
        test: "conformance_cluster",
    },
    Backend {
        name: "mysql",
        package: "pool-mysql",
        test: "conformance",
    },
];

/// A database server the tests use: its name, default local port and URL variable.
const SERVICES: &[(&str, u16, &str)] = &[
    ("postgres", 5432, "POOL_TEST_POSTGRES_URL"),
    ("mysql", 3306, "POOL_TEST_MYSQL_URL"),
    ("redis", 6379, "POOL_TEST_REDIS_URL"),
];

/// The environment variable the conformance binaries append their JSON lines to.
const REPORT_ENV: &str = "POOL_CONFORMANCE_REPORT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "test" | "ci" => test(),
        "conformance" => conformance(rest),
        "model" => model_check(),
        "chaos" => chaos(rest),
        "bench" => bench(rest),
        "services" => {
            services();
            Ok(())
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs us (cargo sets `CARGO`), else the one on `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The build directory the workspace uses.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// A `cargo` command run from the workspace root, printed before it runs.
fn cargo_command(args: &[&str]) -> Command {
    println!("$ cargo {}", args.join(" "));
    let mut command = Command::new(cargo());
    command.args(args).current_dir(root());
    command
}

/// Runs `cargo <args>` from the root; an error names the step if it fails.
fn run_cargo(args: &[&str]) -> Result<(), String> {
    let status = cargo_command(args)
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("step failed ({status}): cargo {}", args.join(" ")))
    }
}

fn test() -> Result<(), String> {
    check_rust_versions()?;
    run_cargo(&["fmt", "--all", "--", "--check"])?;
    run_cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ])?;
    // The chaos targets are `test = false` (a plain `cargo test` would spend 30 s on
    // each), which also keeps them out of `--all-targets`: lint them by name.
    let mut lint_chaos = vec!["clippy"];
    for (_, package) in CHAOS_BACKENDS {
        lint_chaos.extend(["-p", package]);
    }
    lint_chaos.extend(["--test", "chaos", "--all-features", "--", "-D", "warnings"]);
    run_cargo(&lint_chaos)?;
    // `--all-features` turns on pool-core's `test-util` and `metrics`, under which the
    // pool reads only the precise clock: lint and test the coarse clock of a normal
    // build too.
    run_cargo(&[
        "clippy",
        "-p",
        "pool-core",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    run_cargo(&["test", "--workspace", "--all-features"])?;
    run_cargo(&["test", "-p", "pool-core", "--lib"])?;
    model_check()?;
    bench_smoke()?;
    conformance(&[])?;
    chaos(&["--seconds".to_owned(), CHAOS_TEST_SECONDS.to_owned()])?;
    println!("xtask test: all steps passed");
    Ok(())
}

/// Fails if a locked dependency declares a `rust-version` above the workspace's, so
/// the promised minimum Rust (1.88, which redis 1.8 needs) is not raised by an update.
fn check_rust_versions() -> Result<(), String> {
    check_rust_versions_with(&[])
}

/// [`check_rust_versions`] for a build with these environment variables (`RUSTFLAGS`
/// with a `--cfg` selects dependencies of their own).
fn check_rust_versions_with(env: &[(&str, &str)]) -> Result<(), String> {
    let host = host_triple()?;
    let output = cargo_command(&[
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--all-features",
        "--filter-platform",
        &host,
    ])
    .envs(env.iter().copied())
    .stderr(std::process::Stdio::inherit())
    .output()
    .map_err(|e| format!("could not run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err("cargo metadata failed (is Cargo.lock up to date?)".into());
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed something unreadable: {e}"))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let version_of = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["rust_version"].as_str())
            .map(str::to_owned)
    };
    let ours = version_of("pool-core").ok_or("pool-core declares no rust-version")?;
    let too_new: Vec<String> = rust_versions_above(&packages, &ours);
    if too_new.is_empty() {
        println!("rust-version: every dependency builds on Rust {ours}");
        Ok(())
    } else {
        Err(format!(
            "dependencies need a newer Rust than the workspace's {ours}: {}; pin older \
             versions with `cargo update -p NAME --precise VERSION`",
            too_new.join(", ")
        ))
    }
}

/// The platform rustc builds for by default (metadata for others would download crates
/// this machine never builds).
fn host_triple() -> Result<String, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("could not run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV named no host".to_owned())
}

/// The packages whose `rust_version` is above `limit`, as `name version (rust X)`.
fn rust_versions_above(packages: &[serde_json::Value], limit: &str) -> Vec<String> {
    // `1.88` and `1.88.0` are the same version: compare three numbers.
    let parse = |v: &str| -> [u64; 3] {
        let mut parts = v.split('.').map(|n| n.parse().unwrap_or(0));
        [(); 3].map(|()| parts.next().unwrap_or(0))
    };
    let limit = parse(limit);
    packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (parse(needs) > limit).then(|| {
                format!(
                    "{} {} (rust {needs})",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                )
            })
        })
        .collect()
}

/// The model check of pool-core's bookkeeping (pool-core/tests/model.rs): loom runs
/// every interleaving of a few tasks, up to a preemption bound, and prints how many.
///
/// `--cfg pool_model` swaps the core's mutex and atomics for loom's, so it is a `cfg`
/// (a feature would reach the `--all-features` build) in a target directory of its own
/// (the flag changes every crate's build), and builds only pool-core's `model` test.
/// Release for speed, with overflow checks and debug assertions kept: a count that
/// goes below zero must fail, not wrap.
fn model_check() -> Result<(), String> {
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} --cfg pool_model"),
        _ => "--cfg pool_model".to_owned(),
    };
    check_rust_versions_with(&[("RUSTFLAGS", &rustflags)])?;
    let target = target_dir().join("model");
    let args = [
        "test",
        "-p",
        "pool-core",
        "--release",
        "--locked",
        "--test",
        "model",
        "--",
        "--nocapture",
        "--test-threads",
        "1",
    ];
    println!(
        "(RUSTFLAGS=\"{rustflags}\", CARGO_TARGET_DIR={})",
        target.display()
    );
    let status = cargo_command(&args)
        .env("RUSTFLAGS", &rustflags)
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS", "true")
        .env("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "true")
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "model check failed ({status}): cargo {}",
            args.join(" ")
        ))
    }
}

/// The benchmark: the binary of its own package, so its build has none of
/// pool-testkit's dev-dependencies (tokio's `test-util` among them, which slows the
/// clock reads of the pool it measures and is in no user's build).
const BENCH_PACKAGE: &str = "pool-bench";

/// `cargo run --release` of the benchmark, writing to `target/bench/`.
fn bench(rest: &[String]) -> Result<(), String> {
    let out = target_dir().join("bench");
    let out = out.to_string_lossy();
    let mut args = vec!["run", "--release", "-p", BENCH_PACKAGE, "--", "--out", &out];
    args.extend(rest.iter().map(String::as_str));
    let mut command = cargo_command(&args);
    if let Some(revision) = git_revision() {
        command.env("POOL_BENCH_REVISION", revision);
    }
    let status = command
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("bench failed ({status})"))
    }
}

/// Every benchmark scenario once with tiny parameters, in a debug build (not
/// optimised: this checks that the benchmark runs and its contenders work, in about
/// half a minute; its numbers mean nothing). Writes to `target/bench-smoke/`, so a
/// full report in `target/bench/` stays.
fn bench_smoke() -> Result<(), String> {
    let out = target_dir().join("bench-smoke");
    let out = out.to_string_lossy();
    run_cargo(&["run", "-p", BENCH_PACKAGE, "--", "--quick", "--out", &out])
}

/// The commit checked out, `-dirty` when the work tree has changes, for the report.
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

fn services() {
    for &(name, port, var) in SERVICES {
        let env = if std::env::var_os(var).is_some() {
            "set"
        } else {
            "not set"
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let reach = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => "accepting connections".to_string(),
            Err(e) => format!("nothing reachable ({e})"),
        };
        println!("{name:<9} {var:<22} {env:<8} {addr}: {reach}");
    }
}

/// Every backend with a chaos run: its `--backend` name and the package whose
/// `harness = false` test target `chaos` runs it.
const CHAOS_BACKENDS: &[(&str, &str)] = &[
    ("postgres", "pool-postgres"),
    ("mysql", "pool-mysql"),
    ("redis", "pool-redis"),
];

/// How long `cargo xtask test` runs the chaos run for, per backend.
const CHAOS_TEST_SECONDS: &str = "30";

/// `chaos [--backend NAME|all]... [--seconds N] [--seed S]`: runs the selected
/// backends' chaos targets one after another (all of them, even after a failure) and
/// fails if any run failed.
fn chaos(args: &[String]) -> Result<(), String> {
    let mut selected: Vec<(&str, &str)> = Vec::new();
    let mut seconds: Option<String> = None;
    let mut seed: Option<String> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| format!("chaos: {flag} needs a value"))
        };
        match flag {
            "--backend" => {
                let name = value()?;
                let chosen: Vec<(&str, &str)> = if name == "all" {
                    CHAOS_BACKENDS.to_vec()
                } else {
                    let backend = CHAOS_BACKENDS
                        .iter()
                        .find(|(known, _)| *known == name)
                        .ok_or_else(|| {
                            let known: Vec<&str> = CHAOS_BACKENDS.iter().map(|b| b.0).collect();
                            format!(
                                "chaos: unknown backend `{name}` (known: {}, or all)",
                                known.join(", ")
                            )
                        })?;
                    vec![*backend]
                };
                for backend in chosen {
                    if !selected.contains(&backend) {
                        selected.push(backend);
                    }
                }
            }
            "--seconds" => {
                let text = value()?;
                match text.parse::<u64>() {
                    Ok(n) if n > 0 => seconds = Some(text),
                    _ => {
                        return Err(format!(
                            "chaos: --seconds takes a whole number of seconds above 0, not `{text}`"
                        ))
                    }
                }
            }
            "--seed" => {
                let text = value()?;
                text.parse::<u64>()
                    .map_err(|_| format!("chaos: --seed takes a whole number, not `{text}`"))?;
                seed = Some(text);
            }
            _ => return Err(format!("chaos: unknown argument `{arg}`\n\n{USAGE}")),
        }
    }
    if selected.is_empty() {
        selected = CHAOS_BACKENDS.to_vec();
    }

    let mut outcomes: Vec<(&str, Result<(), String>)> = Vec::new();
    for (name, package) in &selected {
        let mut cargo_args = vec!["test", "-p", package, "--test", "chaos", "--"];
        if let Some(seconds) = &seconds {
            cargo_args.extend(["--seconds", seconds]);
        }
        if let Some(seed) = &seed {
            cargo_args.extend(["--seed", seed]);
        }
        let outcome = match cargo_command(&cargo_args).status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("exited with {status}")),
            Err(e) => Err(format!("could not run cargo: {e}")),
        };
        outcomes.push((name, outcome));
    }
    println!();
    for (name, outcome) in &outcomes {
        match outcome {
            Ok(()) => println!("chaos {name}: passed"),
            Err(why) => println!("chaos {name}: FAILED ({why})"),
        }
    }
    if outcomes.iter().all(|(_, outcome)| outcome.is_ok()) {
        Ok(())
    } else {
        Err("chaos failed".to_owned())
    }
}

/// One line of a conformance report.
struct CaseResult {
    backend: String,
    case: String,
    passed: bool,
    millis: u64,
    error: Option<String>,
    /// Why the backend cannot hold this case (the case did not run).
    not_applicable: Option<String>,
}

fn parse_line(line: &str) -> Option<CaseResult> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(CaseResult {
        backend: value.get("backend")?.as_str()?.to_string(),
        case: value.get("case")?.as_str()?.to_string(),
        passed: value.get("passed")?.as_bool()?,
        millis: value.get("millis").and_then(|m| m.as_u64()).unwrap_or(0),
        error: value
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string),
        not_applicable: value
            .get("not_applicable")
            .and_then(|e| e.as_str())
            .map(str::to_string),
    })
}

fn conformance(args: &[String]) -> Result<(), String> {
    let mut selected: Vec<&Backend> = Vec::new();
    let mut filter: Option<&str> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let name = if arg == "--backend" {
            iter.next()
                .ok_or_else(|| "--backend needs a name".to_string())?
        } else if let Some(name) = arg.strip_prefix("--backend=") {
            name
        } else if arg.starts_with('-') {
            return Err(format!("conformance: unknown option `{arg}`\n\n{USAGE}"));
        } else {
            filter = Some(arg);
            continue;
        };
        let backend = BACKENDS.iter().find(|b| b.name == name).ok_or_else(|| {
            let known: Vec<_> = BACKENDS.iter().map(|b| b.name).collect();
            format!("unknown backend `{name}` (known: {})", known.join(", "))
        })?;
        if !selected.iter().any(|b| b.name == backend.name) {
            selected.push(backend);
        }
    }
    if selected.is_empty() {
        selected = BACKENDS.iter().collect();
    }

    let dir = target_dir().join("conformance");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let report = dir.join("report.jsonl");
    match std::fs::remove_file(&report) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", report.display())),
    }

    // Run every selected backend, even after one fails, so the matrix is complete.
    let mut run_failures: Vec<(&str, String)> = Vec::new();
    for backend in &selected {
        let mut cargo_args = vec!["test", "-p", backend.package, "--test", backend.test];
        if let Some(filter) = filter {
            cargo_args.extend(["--", filter]);
        }
        let status = cargo_command(&cargo_args).env(REPORT_ENV, &report).status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => run_failures.push((backend.name, format!("exited with {status}"))),
            Err(e) => run_failures.push((backend.name, format!("could not run cargo: {e}"))),
        }
    }

    let text = match std::fs::read_to_string(&report) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", report.display())),
    };
    let mut results = Vec::new();
    let mut problems = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_line(line) {
            Some(result) => results.push(result),
            None => problems.push(format!("unreadable report line: {line}")),
        }
    }
    for backend in &selected {
        let ran = results.iter().filter(|r| r.backend == backend.name);
        let (count, failed) = ran.fold((0, 0), |(n, f), r| (n + 1, f + usize::from(!r.passed)));
        let run_failure = run_failures.iter().find(|(name, _)| *name == backend.name);
        if count == 0 {
            let why = run_failure.map_or(String::new(), |(_, why)| format!(" (test {why})"));
            problems.push(format!("{}: wrote no results{why}", backend.name));
        } else if let (Some((_, why)), 0) = (run_failure, failed) {
            problems.push(format!("{}: test binary failed ({why})", backend.name));
        }
    }

    print!("\n{}", matrix(&selected, &results));
    let not_applicable: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.not_applicable.is_some())
        .collect();
    if !not_applicable.is_empty() {
        println!("\nnot applicable:");
        for r in &not_applicable {
            let why = r.not_applicable.as_deref().unwrap_or_default();
            println!("  {} / {}: {why}", r.backend, r.case);
        }
    }
    let failures: Vec<&CaseResult> = results.iter().filter(|r| !r.passed).collect();
    if !failures.is_empty() {
        println!("\nfailures:");
        for failure in &failures {
            let error = failure.error.as_deref().unwrap_or("(no message)");
            println!("  {} / {}: {error}", failure.backend, failure.case);
        }
    }
    if !problems.is_empty() {
        println!("\nproblems:");
        for problem in &problems {
            println!("  {problem}");
        }
    }
    println!("report: {}", report.display());
    let passed = results.len() - failures.len() - not_applicable.len();
    println!(
        "conformance: {passed} passed, {} failed, {} not applicable",
        failures.len(),
        not_applicable.len()
    );
    if failures.is_empty() && problems.is_empty() {
        Ok(())
    } else {
        Err("conformance failed".to_string())
    }
}

/// The backend x case table: one row per case, one column per backend.
fn matrix(backends: &[&Backend], results: &[CaseResult]) -> String {
    let mut cases: Vec<&str> = Vec::new();
    let mut cells: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for r in results {
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
        let cell = if r.not_applicable.is_some() {
            "n/a".to_string()
        } else if r.passed {
            format!("pass {}ms", r.millis)
        } else {
            "FAIL".to_string()
        };
        cells.insert((r.case.as_str(), r.backend.as_str()), cell);
    }
    let case_width = cases.iter().map(|c| c.len()).max().unwrap_or(0).max(4);
    let widths: Vec<usize> = backends
        .iter()
        .map(|b| {
            cells
                .iter()
                .filter(|((_, backend), _)| *backend == b.name)
                .map(|(_, cell)| cell.len())
                .max()
                .unwrap_or(0)
                .max(b.name.len())
        })
        .collect();

    let mut out = String::new();
    let mut row = format!("{:<case_width$}", "case");
    for (backend, width) in backends.iter().zip(&widths) {
        let _ = write!(row, "  {:<width$}", backend.name);
    }
    out.push_str(row.trim_end());
    out.push('\n');
    for case in &cases {
        let mut row = format!("{case:<case_width$}");
        for (backend, width) in backends.iter().zip(&widths) {
            let cell = cells
                .get(&(*case, backend.name))
                .map_or("-", String::as_str);
            let _ = write!(row, "  {cell:<width$}");
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rust_versions_above_compares_numbers_not_text() {
        let packages: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"name":"a","version":"1.0.0","rust_version":"1.88.0"},
                {"name":"b","version":"2.0.0","rust_version":"1.90"},
                {"name":"c","version":"3.0.0","rust_version":"1.9"},
                {"name":"d","version":"4.0.0","rust_version":null}]"#,
        )
        .unwrap();
        assert_eq!(
            super::rust_versions_above(&packages, "1.88"),
            vec!["b 2.0.0 (rust 1.90)".to_owned()]
        );
    }

    use super::*;

    #[test]
    fn report_lines_parse() {
        let ok = parse_line(
            r#"{"backend":"mock","case":"reuses","passed":true,"millis":12,"error":null}"#,
        )
        .unwrap();
        assert!(ok.passed && ok.error.is_none() && ok.millis == 12);
        let failed =
            parse_line(r#"{"backend":"pg","case":"c","passed":false,"millis":3,"error":"boom"}"#)
                .unwrap();
        assert_eq!(failed.error.as_deref(), Some("boom"));
        assert!(parse_line("not json").is_none());
        assert!(parse_line(r#"{"backend":"mock"}"#).is_none());
    }

    #[test]
    fn matrix_shows_pass_fail_and_missing() {
        let backends = [
            &Backend {
                name: "mock",
                package: "pool-testkit",
                test: "conformance",
            },
            &Backend {
                name: "postgres",
                package: "pool-postgres",
                test: "conformance",
            },
        ];
        let result = |backend: &str, case: &str, passed: bool| CaseResult {
            backend: backend.into(),
            case: case.into(),
            passed,
            millis: 7,
            error: None,
            not_applicable: None,
        };
        let mut skipped = result("postgres", "third", true);
        skipped.not_applicable = Some("session state".into());
        let results = [
            result("mock", "first_case", true),
            result("mock", "second", true),
            result("postgres", "first_case", false),
            skipped,
        ];
        let text = matrix(&backends, &results);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "case        mock      postgres");
        assert_eq!(lines[1], "first_case  pass 7ms  FAIL");
        assert_eq!(lines[2], "second      pass 7ms  -");
        assert_eq!(lines[3], "third       -         n/a");
    }
}

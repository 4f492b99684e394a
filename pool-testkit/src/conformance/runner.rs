//! Runs the cases: one fresh tokio runtime and an overall time limit per case, a line
//! per case on stdout, and a JSON line per case in the report file.

use std::any::Any;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cases::{self, Case};
use super::Backend;

/// The environment variable naming the file each case's JSON line is appended to.
pub const REPORT_ENV: &str = "POOL_CONFORMANCE_REPORT";

/// How long one case may take before it counts as hung.
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// Test-harness flags that take a value, so the value is not taken for a filter.
const FLAGS_WITH_VALUE: &[&str] = &[
    "--test-threads",
    "--skip",
    "--color",
    "--format",
    "--logfile",
    "-Z",
];

/// Runs every case against `backend` and exits with code 1 if any failed: the whole
/// `main` of a `harness = false` test target.
///
/// The first command-line argument that does not start with `-` is a filter: only
/// cases whose name contains it run. `--list` lists the cases. Each case prints
/// `name ... ok (12ms)` or `name ... FAILED: reason`, and if `POOL_CONFORMANCE_REPORT`
/// names a file, a JSON line `{"backend", "case", "passed", "millis", "error"}` is
/// appended to it. A case the backend declares [not
/// applicable](Backend::not_applicable) is not run: it prints `name ... n/a: reason`
/// and its JSON line carries `"not_applicable": reason`. The last line reads
/// `conformance <backend>: N passed, N failed, N not applicable`.
pub fn run_suite<B: Backend>(backend: B) {
    let (filter, list) = parse_args(std::env::args().skip(1));
    let name = backend.name();
    let backend = Arc::new(backend);
    let selected: Vec<Case<B>> = cases::all::<B>()
        .into_iter()
        .filter(|case| filter.as_deref().is_none_or(|f| case.name.contains(f)))
        .collect();

    if list {
        for case in &selected {
            println!("{}: test", case.name);
        }
        return;
    }

    let report = std::env::var_os(REPORT_ENV);
    println!("\nrunning {} conformance cases on {name}", selected.len());
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut report_failed = false;
    let mut not_applicable = 0usize;
    for case in &selected {
        if let Some(reason) = backend.not_applicable(case.name) {
            not_applicable += 1;
            println!("{} ... n/a: {reason}", case.name);
            if let Some(path) = &report {
                let line = serde_json::json!({
                    "backend": name,
                    "case": case.name,
                    "passed": true,
                    "millis": 0,
                    "not_applicable": reason,
                });
                if let Err(e) = append_line(path, &line) {
                    eprintln!("conformance: cannot append to {}: {e}", path.display());
                    report_failed = true;
                }
            }
            continue;
        }
        let started = Instant::now();
        let outcome = run_case(case, &backend);
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Ok(()) => {
                passed += 1;
                println!("{} ... ok ({millis}ms)", case.name);
            }
            Err(reason) => {
                failed += 1;
                println!("{} ... FAILED: {reason}", case.name);
            }
        }
        if let Some(path) = &report {
            let line = serde_json::json!({
                "backend": name,
                "case": case.name,
                "passed": outcome.is_ok(),
                "millis": millis,
                "error": outcome.as_ref().err(),
            });
            if let Err(e) = append_line(path, &line) {
                eprintln!("conformance: cannot append to {}: {e}", path.display());
                report_failed = true;
            }
        }
    }
    println!(
        "\nconformance {name}: {passed} passed, {failed} failed, {not_applicable} not applicable"
    );
    if failed > 0 || report_failed {
        std::process::exit(1);
    }
}

/// Appends one JSON line to the report file.
fn append_line(path: &std::ffi::OsStr, line: &serde_json::Value) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()))
}

/// The filter (first argument not starting with `-`) and whether `--list` was given.
fn parse_args(args: impl Iterator<Item = String>) -> (Option<String>, bool) {
    let mut filter = None;
    let mut list = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "--list" {
            list = true;
        } else if FLAGS_WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') && filter.is_none() {
            filter = Some(arg);
        }
    }
    (filter, list)
}

/// Runs one case on its own runtime, so nothing it spawned outlives it.
fn run_case<B: Backend>(case: &Case<B>, backend: &Arc<B>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
    let future = (case.run)(Arc::clone(backend));
    let outcome = runtime.block_on(async move {
        let mut task = tokio::spawn(future);
        match tokio::time::timeout(CASE_LIMIT, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => {
                Err(format!("panicked: {}", panic_message(join.into_panic())))
            }
            Ok(Err(join)) => Err(format!("case task failed: {join}")),
            Err(_) => {
                task.abort();
                Err(format!("did not finish within {CASE_LIMIT:?} (hung?)"))
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn parse(args: &[&str]) -> (Option<String>, bool) {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn filter_is_the_first_free_argument() {
        assert_eq!(parse(&[]), (None, false));
        assert_eq!(
            parse(&["--nocapture", "idle"]),
            (Some("idle".into()), false)
        );
        assert_eq!(
            parse(&["--test-threads", "1", "close", "x"]),
            (Some("close".into()), false)
        );
        assert_eq!(parse(&["--list", "--format", "terse"]), (None, true));
    }
}

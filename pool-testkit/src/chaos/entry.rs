//! The whole `main` of a driver's `tests/chaos.rs`.

use std::sync::Arc;

use super::{run, ChaosBackend, ChaosConfig, Command};

/// Parses the command line (`--seconds N`, default 30; `--seed S`), makes the backend
/// with `backend`, runs the chaos run on a runtime of its own, prints the report, and
/// exits with code 1 if the run failed or could not be made (2 for bad arguments).
///
/// `backend` is called outside any runtime, so it may block (start a server, probe
/// it on a runtime of its own). `name` names the backend before it exists.
pub fn main<B: ChaosBackend>(name: &str, backend: impl FnOnce() -> Result<B, String>) {
    let config = match ChaosConfig::from_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::List) => {
            println!("chaos: test");
            return;
        }
        Err(e) => {
            eprintln!("chaos {name}: {e}");
            std::process::exit(2);
        }
    };
    match backend().and_then(|backend| run_on_own_runtime(backend, &config)) {
        Ok(report) => {
            println!("{report}");
            if !report.failures().is_empty() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            println!("chaos {name}: could not run (seed {}): {e}", config.seed);
            std::process::exit(1);
        }
    }
}

fn run_on_own_runtime<B: ChaosBackend>(
    backend: B,
    config: &ChaosConfig,
) -> Result<super::Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a tokio runtime: {e}"))?;
    println!(
        "chaos {}: {:?} of load with faults, seed {}",
        backend.name(),
        config.duration,
        config.seed
    );
    let report = runtime.block_on(run(Arc::new(backend), config));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    report
}

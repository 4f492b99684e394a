//! The conformance suite on a real PostgreSQL server (`harness = false`; see
//! `pool_testkit::conformance::run_suite`).
//!
//! The server comes from `pool_testkit::servers::postgres()`: the one in
//! `POOL_TEST_POSTGRES_URL`, else the one on 127.0.0.1:5432, else a throwaway server
//! started from the installed binaries for this run. Each run gives its pools a unique
//! `application_name`, and counts the server's connections by it, so runs at the same
//! time (or other clients) are not counted. Kills and counts go through a separate
//! admin connection, opened per call: each case runs on its own tokio runtime, and a
//! client's connection task lives on the runtime that spawned it.
//!
//! The restart case gets a throwaway server of its own
//! (`servers::Restartable`), started when that case first asks for it and kept
//! until the run ends; it is never the shared server. A `Server` is plain blocking code
//! holding no runtime resources, so one made under one case's runtime serves the next.

mod backend;

use backend::Postgres;
use pool_testkit::conformance::run_suite;
use pool_testkit::servers;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // Listing the cases needs no server.
        run_suite(Postgres::for_listing());
        return;
    }
    match servers::postgres()
        .map_err(|e| format!("no PostgreSQL server to test against: {e}"))
        .and_then(Postgres::new)
    {
        Ok(backend) => run_suite(backend),
        Err(reason) => {
            eprintln!("conformance postgres: {reason}");
            println!("\nconformance postgres: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}

//! The conformance suite through PgBouncer in `pool_mode = transaction`
//! (`harness = false`; see `pool_testkit::conformance::run_suite`): the
//! `postgres-pgbouncer` column of the matrix.
//!
//! A throwaway PgBouncer (`pool_testkit::servers::pgbouncer`) is started in front of
//! the server from `pool_testkit::servers::postgres()` (the one in
//! `POOL_TEST_POSTGRES_URL`, else the one on 127.0.0.1:5432, else a throwaway one), and
//! the suite's pools connect to it with `StatementMode::Unnamed`. What "server side"
//! means behind a transaction pooler, and the case it cannot serve, are in
//! `backend/pgbouncer.rs`.

mod backend;

use backend::pgbouncer::PgBouncerBackend;
use pool_testkit::conformance::run_suite;
use pool_testkit::servers;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // Listing the cases needs no server.
        run_suite(PgBouncerBackend::for_listing());
        return;
    }
    match servers::postgres()
        .map_err(|e| format!("no PostgreSQL server to put PgBouncer in front of: {e}"))
        .and_then(PgBouncerBackend::new)
    {
        Ok(backend) => run_suite(backend),
        Err(reason) => {
            eprintln!("conformance postgres-pgbouncer: {reason}");
            println!("\nconformance postgres-pgbouncer: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}

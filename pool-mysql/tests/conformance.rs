//! The conformance suite on a real MySQL or MariaDB server (`harness = false`; see
//! `pool_testkit::conformance::run_suite`).
//!
//! The server comes from `pool_testkit::servers::mysql()`: the one in
//! `POOL_TEST_MYSQL_URL`, else the one on 127.0.0.1:3306, else a throwaway `mariadbd`
//! started from the installed binaries for this run.
//!
//! Counting: the server's process list cannot tell this run's connections from other
//! clients', so every manager the suite gets records the `CONNECTION_ID()` of each
//! connection it opens (an `after_connect` callback of mysql_async), and a count is
//! the number of recorded ids still in `information_schema.PROCESSLIST`. Ids are never
//! reused while the server runs. Kills and counts go through an admin connection of
//! their own, opened per call and not recorded.
//!
//! The restart case gets a throwaway server of its own (`servers::Restartable`),
//! started when that case first asks for it and kept until the run ends; it is never
//! the shared server. A `Server` is plain blocking code holding no runtime resources,
//! so one made under one case's runtime serves the next.

mod backend;

use backend::Mysql;
use pool_testkit::conformance::run_suite;
use pool_testkit::servers;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // Listing the cases needs no server.
        run_suite(Mysql::for_listing());
        return;
    }
    match servers::mysql()
        .map_err(|e| format!("no MySQL/MariaDB server to test against: {e}"))
        .and_then(Mysql::new)
    {
        Ok(backend) => run_suite(backend),
        Err(reason) => {
            eprintln!("conformance mysql: {reason}");
            println!("\nconformance mysql: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}

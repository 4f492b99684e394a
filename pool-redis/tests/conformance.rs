//! The conformance suite on a real Redis server (`harness = false`; see
//! `pool_testkit::conformance::run_suite`).
//!
//! The server comes from `pool_testkit::servers::redis()`: the one in
//! `POOL_TEST_REDIS_URL`, else the one on 127.0.0.1:6379, else a throwaway
//! `redis-server` started for this run. Every connection the suite's pools open is named
//! (`CLIENT SETNAME`) with a name unique to the run, and the server's connections are
//! counted by that name in `CLIENT LIST`, so other clients and other runs are not
//! counted. Kills (`CLIENT KILL ID`) and counts go through an admin connection opened
//! per call, on the runtime of the case that asks.
//!
//! The restart case gets a throwaway server of its own (`servers::Restartable`),
//! started when that case first asks for it and kept until the run ends; it is never
//! the shared server. A `Server` is blocking code holding no runtime resources, so one
//! started under one case's runtime serves the next; it is stopped and started on a
//! blocking thread.

mod backend;

use backend::Redis;
use pool_testkit::conformance::run_suite;
use pool_testkit::servers;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // Listing the cases needs no server.
        run_suite(Redis::for_listing());
        return;
    }
    match servers::redis()
        .map_err(|e| format!("no Redis server to test against: {e}"))
        .and_then(Redis::new)
    {
        Ok(backend) => run_suite(backend),
        Err(reason) => {
            eprintln!("conformance redis: {reason}");
            println!("\nconformance redis: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}

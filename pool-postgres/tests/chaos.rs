//! The chaos run on a real PostgreSQL server (`harness = false`; see
//! `pool_testkit::chaos`): `cargo test -p pool-postgres --test chaos -- --seconds N
//! --seed S`, or `cargo xtask chaos --backend postgres`.
//!
//! The server is the conformance suite's (`pool_testkit::servers::postgres()`), reached
//! through a fault proxy; the run's pools carry an `application_name` of their own, by
//! which the server's connections are counted and kills are limited.

// `tests/backend` serves several targets; what only the conformance suite uses is
// unused here.
#[allow(dead_code)]
mod backend;

use backend::Postgres;
use pool_testkit::servers;

fn main() {
    pool_testkit::chaos::main("postgres", || {
        servers::postgres()
            .map_err(|e| format!("no PostgreSQL server to test against: {e}"))
            .and_then(Postgres::new)
    });
}

//! The chaos run on a real MariaDB server (`harness = false`; see
//! `pool_testkit::chaos`): `cargo test -p pool-mysql --test chaos -- --seconds N
//! --seed S`, or `cargo xtask chaos --backend mysql`.
//!
//! The server is the conformance suite's (`pool_testkit::servers::mysql()`), reached
//! through a fault proxy; the server's connections are counted by the ids the run's
//! managers opened.

// `tests/backend` serves several targets; what only the conformance suite uses is
// unused here.
#[allow(dead_code)]
mod backend;

use backend::Mysql;
use pool_testkit::servers;

fn main() {
    pool_testkit::chaos::main("mysql", || {
        servers::mysql()
            .map_err(|e| format!("no MariaDB server to test against: {e}"))
            .and_then(Mysql::new)
    });
}

//! The chaos run on a real Redis server (`harness = false`; see
//! `pool_testkit::chaos`): `cargo test -p pool-redis --test chaos -- --seconds N
//! --seed S`, or `cargo xtask chaos --backend redis`.
//!
//! The server is the conformance suite's (`pool_testkit::servers::redis()`), reached
//! through a fault proxy; the run's connections carry a `CLIENT SETNAME` of their own,
//! by which the server's connections are counted. The run's ids go into a set under a
//! key of the run's own, deleted at the end.

// `tests/backend` serves several targets; what only the conformance suite uses is
// unused here.
#[allow(dead_code)]
mod backend;

use backend::Redis;
use pool_testkit::servers;

fn main() {
    pool_testkit::chaos::main("redis", || {
        servers::redis()
            .map_err(|e| format!("no Redis server to test against: {e}"))
            .and_then(Redis::new)
    });
}

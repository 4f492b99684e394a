//! The conformance suite on a Redis Cluster (`harness = false`; see
//! `pool_testkit::conformance::run_suite`): the `redis-cluster` column of the matrix.
//!
//! The cluster is a throwaway one of three masters started for this run
//! (`pool_testkit::servers::redis_cluster`), never a shared server; the restart case gets
//! a second one of its own, which it stops and starts whole. What a server-side id,
//! a kill and a connection count mean for a cluster connection, and which cases cannot
//! hold on a cluster and why, is in `backend/cluster.rs`.

// The single-server backend in `backend` is the `conformance` target's.
#[allow(dead_code)]
mod backend;

use backend::cluster::RedisCluster;
use pool_testkit::conformance::run_suite;
use pool_testkit::servers;

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // Listing the cases needs no cluster.
        run_suite(RedisCluster::for_listing());
        return;
    }
    match servers::redis_cluster()
        .map_err(|e| format!("no Redis Cluster to test against: {e}"))
        .and_then(RedisCluster::new)
    {
        Ok(backend) => run_suite(backend),
        Err(reason) => {
            eprintln!("conformance redis-cluster: {reason}");
            println!("\nconformance redis-cluster: 0 passed, 1 failed");
            std::process::exit(1);
        }
    }
}
